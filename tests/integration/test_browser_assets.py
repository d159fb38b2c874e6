"""The browser client is always served; the demo page only when S3GATE_DEMO is on; the docs
pages load nothing from another origin."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest

from app.config import Settings
from tests.support import Api, new_sub, running_app


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_demo_is_off_by_default_and_the_client_is_always_served(settings: Settings) -> None:
    assert settings.demo is False
    async with running_app(settings) as client:
        demo = await client.get("/demo/")
        module = await client.get("/client/s3gate.js")
        types = await client.get("/client/s3gate.d.ts")
    assert demo.status_code == 404
    assert demo.headers["content-type"] == "application/problem+json"
    assert module.status_code == 200
    assert module.headers["content-type"] == "text/javascript; charset=utf-8"
    assert module.headers["x-content-type-options"] == "nosniff"
    assert types.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_demo_page_has_a_strict_content_security_policy(settings: Settings) -> None:
    demo_settings = settings.model_copy(update={"demo": True})
    async with running_app(demo_settings) as client:
        page = await client.get("/demo/")
        script = await client.get("/demo/demo.js")
    assert page.status_code == 200
    assert '<script type="module" src="demo.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert f"connect-src 'self' {settings.s3_endpoint_url.rstrip('/')};" in policy  # type: ignore[union-attr]
    assert "frame-ancestors 'none'" in policy
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("style", "region", "store"),
    [
        ("virtual", "eu-west-3", "https://s3gate-csp.s3.eu-west-3.amazonaws.com"),
        ("auto", "eu-west-3", "https://s3gate-csp.s3.amazonaws.com"),  # botocore's choice
        ("path", "eu-west-3", "https://s3.eu-west-3.amazonaws.com"),
        ("auto", "us-east-1", "https://s3gate-csp.s3.amazonaws.com"),
    ],
)
async def test_demo_policy_names_the_exact_aws_origin_the_urls_use_never_a_wildcard(
    settings: Settings, style: str, region: str, store: str
) -> None:
    # No endpoint configured: AWS itself. Nothing here reaches AWS; signing is pure CPU.
    aws = settings.model_copy(
        update={
            "demo": True,
            "s3_endpoint_url": None,
            "s3_bucket": "s3gate-csp",
            "s3_region": region,
            "s3_addressing_style": style,
        }
    )
    async with running_app(aws) as client:
        page = await client.get("/demo/")
        created = await client.post(
            "/uploads",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 1},
            headers=Api.auth(new_sub()),
        )
    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' {store};" in policy
    assert "*" not in policy
    assert created.json()["upload"]["url"].startswith(f"{store}/")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_frontend_origin_may_import_the_client_module(settings: Settings) -> None:
    # <script type="module"> from another origin needs CORS on the module itself.
    origin = "https://app.example.com"
    cors_settings = settings.model_copy(update={"cors_origins": [origin]})
    async with running_app(cors_settings) as client:
        module = await client.get("/client/s3gate.js", headers={"Origin": origin})
    assert module.headers["access-control-allow-origin"] == origin


class _References(HTMLParser):
    """Every URL a page loads: src/href attributes, ReDoc's spec-url, Swagger UI's `url:`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v is not None]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


DOCS_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("root_path", ["", "/s3gate"])
async def test_docs_pages_load_only_this_services_own_assets(
    settings: Settings, root_path: str
) -> None:
    prefixed = settings.model_copy(update={"root_path": root_path})
    async with running_app(prefixed) as client:
        for page in ("/docs", "/redoc"):
            answer = await client.get(root_path + page)
            assert answer.status_code == 200, page
            assert answer.headers["content-type"] == "text/html; charset=utf-8"
            policy = dict(
                directive.strip().split(" ", 1)
                for directive in answer.headers["content-security-policy"].split(";")
            )
            assert policy["default-src"] == "'none'"
            assert policy["script-src"].startswith("'self'")  # then the inline script's hash
            assert "unsafe" not in policy["script-src"]
            assert (policy["connect-src"], policy["frame-ancestors"]) == ("'self'", "'none'")
            references = _References()
            references.feed(answer.text)
            assert len(references.urls) >= 3, references.urls  # script, favicon, the document
            for url in references.urls:
                parts = urlsplit(url)
                assert not parts.scheme, url  # no CDN
                assert not parts.netloc, url
                assert url.startswith(f"{root_path}/"), url
                asset = await client.get(url)
                assert asset.status_code == 200, url
                suffix = PurePosixPath(parts.path).suffix
                assert asset.headers["content-type"] == DOCS_TYPES[suffix], url
