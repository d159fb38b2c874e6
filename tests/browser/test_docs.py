"""The API docs pages in real Chromium: they render from this service's own assets alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import DemoServer


@pytest.fixture
def watched_page(browser: Any) -> Iterator[tuple[Any, list[Any], list[str]]]:
    """A page, every request it makes (documents, scripts, styles, images, fetches) and every
    console error it logs."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    requests: list[Any] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("console", lambda message: message.type == "error" and console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
    yield page, requests, console
    context.close()


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .info .title"),  # Swagger UI read the document and drew it
        ("/redoc", ".redoc-wrap .api-content h1"),
    ],
)
def test_docs_page_renders_and_nothing_leaves_for_another_origin(
    demo: DemoServer, watched_page: tuple[Any, list[Any], list[str]], path: str, rendered: str
) -> None:
    page, requests, console = watched_page
    page.goto(demo.api + path)
    title = page.locator(rendered).first
    title.wait_for()
    assert "s3gate" in title.inner_text()
    page.wait_for_load_state("networkidle")

    urls = [request.url for request in requests]
    assert f"{demo.api}/openapi.json" in urls
    # ReDoc's sidebar shows a logo from its CDN: the page's policy stops it in the browser.
    elsewhere = [r for r in requests if not r.url.startswith((f"{demo.api}/", "data:", "blob:"))]
    sent = [(r.url, r.failure) for r in elsewhere if "csp" not in (r.failure or "").lower()]
    assert not sent, sent
    # The policy refused nothing else: the pages' own scripts, styles and fetches all ran.
    refused = [m for m in console if not any(r.url in m for r in elsewhere)]
    assert not refused, refused
