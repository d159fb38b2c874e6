"""The demo page and the browser client in real Chromium, bytes through real CORS to SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from app.usecases.plans import object_key
from tests.browser.conftest import DemoServer, MiB, throttle

# Records every value a <progress> takes, per file name: the demo sets the `value` attribute,
# so an observer sees each step without any hook in the page.
PROGRESS_OBSERVER = """
window.__progress = {};
new MutationObserver((mutations) => {
  for (const m of mutations) {
    const row = m.target.closest && m.target.closest("li.upload");
    if (!row) continue;
    (window.__progress[row.dataset.filename] ??= []).push(Number(m.target.getAttribute("value")));
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""


def _random_file(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(PROGRESS_OBSERVER)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _upload_row(page: Any, name: str) -> Any:
    return page.locator(f'li.upload[data-filename="{name}"]')


def _wait_done(page: Any, name: str, timeout: float = 60_000) -> str:
    row = _upload_row(page, name)
    row.and_(page.locator("[data-state=done], [data-state=failed]")).wait_for(timeout=timeout)
    assert row.get_attribute("data-state") == "done", row.locator(".state").inner_text()
    file_id: str = row.get_attribute("data-file-id")
    return file_id


def _requests(page: Any, method: str, origin: str) -> list[str]:
    """The URLs of every `method` request the page sends to `origin`, as they happen."""
    seen: list[str] = []

    def record(request: Any) -> None:
        if request.method == method and request.url.startswith(origin):
            seen.append(request.url)

    page.on("request", record)
    return seen


def _part_numbers(urls: list[str]) -> list[int]:
    numbers = (parse_qs(urlsplit(url).query).get("partNumber") for url in urls)
    return sorted(int(n[0]) for n in numbers if n)


def _sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def test_small_and_multipart_uploads_progress_list_and_download_identical_bytes(
    demo: DemoServer, page: Any, sub: str, tmp_path: Path, artifacts: Path
) -> None:
    small = _random_file(tmp_path, "small.bin", 700 * 1024)
    large = _random_file(tmp_path, "large.bin", 12 * MiB + 12345)  # 3 parts of 5 MiB
    s3_puts = _requests(page, "PUT", demo.s3.endpoint_url)

    page.goto(demo.demo_url(sub))
    assert page.locator("#token-state").inner_text() == "token set"
    assert "#token" not in page.url  # the fragment is dropped once read
    page.set_input_files("#files", [str(small), str(large)])
    ids = {name: _wait_done(page, name) for name in ("small.bin", "large.bin")}

    # Progress only ever went up, and reached 100%.
    progress: dict[str, list[float]] = page.evaluate("window.__progress")
    for name in ids:
        values = progress[name]
        assert values == sorted(values), (name, values)
        assert values[-1] == 1
    assert len(progress["large.bin"]) >= 3, progress["large.bin"]

    # One PUT for the small file, one per part for the large one, straight to the store.
    assert _part_numbers(s3_puts) == [1, 2, 3]
    assert len(s3_puts) == 4

    # Listed as available, by the page and by the API.
    for name, file_id in ids.items():
        row = page.locator(f'#file-rows tr[data-file-id="{file_id}"]')
        row.locator("td.status-available").wait_for()
        assert demo.file(sub, file_id)["status"] == "available", name
    page.screenshot(path=str(artifacts / "demo-after-upload.png"), full_page=True)

    # Download through the page: the browser saves the attachment; same bytes as uploaded.
    for name, source in (("small.bin", small), ("large.bin", large)):
        row = page.locator(f'#file-rows tr[data-file-id="{ids[name]}"]')
        with page.expect_download() as download_info:
            row.get_by_role("button", name="Download").click()
        download = download_info.value
        assert download.suggested_filename == name
        assert _sha256(Path(download.path())) == _sha256(source)


def test_delete_from_the_page_removes_the_file(
    demo: DemoServer, page: Any, sub: str, tmp_path: Path
) -> None:
    doomed = _random_file(tmp_path, "doomed.bin", 4096)
    page.goto(demo.demo_url(sub))
    page.set_input_files("#files", str(doomed))
    file_id = _wait_done(page, "doomed.bin")
    row = page.locator(f'#file-rows tr[data-file-id="{file_id}"]')
    row.get_by_role("button", name="Delete").click()
    row.wait_for(state="detached")
    assert demo.files(sub) == []


def test_a_page_from_an_origin_the_bucket_does_not_allow_is_refused(
    demo: DemoServer, page: Any, sub: str, tmp_path: Path
) -> None:
    # Same service, other origin: `localhost` is not in the bucket's CORS rules.
    refused = _random_file(tmp_path, "refused.bin", 2048)
    failures: list[str] = []
    page.on(
        "requestfailed",
        lambda r: failures.append(r.url) if r.url.startswith(demo.s3.endpoint_url) else None,
    )
    objects_before = _object_count(demo)
    page.goto(demo.demo_url(sub, host="localhost"))
    page.set_input_files("#files", str(refused))
    row = _upload_row(page, "refused.bin")
    row.and_(page.locator("[data-state=failed]")).wait_for(timeout=60_000)
    assert row.locator(".state").inner_text().startswith("network_error")
    assert failures, "the browser should have refused the cross-origin PUT"
    # The file stays pending and no object reached the store.
    (pending,) = demo.files(sub)
    assert pending["status"] == "pending"
    assert _object_count(demo) == objects_before


def _object_count(demo: DemoServer) -> int:
    count: int = demo.s3.client().list_objects_v2(Bucket=demo.bucket).get("KeyCount", 0)
    return count


def test_multipart_upload_interrupted_by_a_reload_resumes_and_completes(
    demo: DemoServer, page: Any, sub: str, tmp_path: Path
) -> None:
    big = _random_file(tmp_path, "resume.bin", 17 * MiB)  # 4 parts
    s3_puts = _requests(page, "PUT", demo.s3.endpoint_url)
    api_calls = _requests(page, "GET", demo.api)
    page.goto(demo.demo_url(sub))
    throttle(page, 8 * MiB)
    page.fill("#concurrency", "1")
    with page.expect_response(
        lambda r: "partNumber=1&" in r.url or r.url.endswith("partNumber=1")
    ) as first_part:
        page.set_input_files("#files", str(big))
    assert first_part.value.status == 200
    page.reload()  # mid-upload: part 2 is on the wire
    s3_puts.clear()

    page.fill("#concurrency", "1")
    page.set_input_files("#files", str(big))
    file_id = _wait_done(page, "resume.bin", timeout=90_000)
    sent_after_reload = _part_numbers(s3_puts)
    assert 1 not in sent_after_reload  # the store had part 1: not sent again
    assert sent_after_reload[-1] == 4
    assert any(url.endswith(f"/uploads/{file_id}/parts") for url in api_calls)
    # One file, not two: the reload replayed the create with its saved Idempotency-Key.
    (only,) = demo.files(sub)
    assert (only["id"], only["status"]) == (file_id, "available")
    assert _downloaded(demo, sub, file_id) == _sha256(big)
    assert _resume_records(page) == 0  # done: the record is gone


def test_expired_part_urls_are_asked_for_again(
    start_demo: Callable[..., DemoServer], page: Any, sub: str, tmp_path: Path
) -> None:
    # Part URLs live 2 s; at 4 MiB/s one part takes longer than that.
    short = start_demo(S3GATE_UPLOAD_URL_TTL_SECONDS="2")
    big = _random_file(tmp_path, "slow.bin", 15 * MiB)  # 3 parts
    sign_calls = _requests(page, "POST", short.api)
    page.goto(short.demo_url(sub))
    throttle(page, 4 * MiB)
    page.fill("#concurrency", "1")
    page.set_input_files("#files", str(big))
    file_id = _wait_done(page, "slow.bin", timeout=90_000)
    part_url_calls = [url for url in sign_calls if url.endswith(f"/uploads/{file_id}/parts")]
    assert len(part_url_calls) >= 2, part_url_calls
    assert _downloaded(short, sub, file_id) == _sha256(big)


def test_client_module_and_types_are_served(demo: DemoServer) -> None:
    module = httpx.get(f"{demo.api}/client/s3gate.js", timeout=10)
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export class S3gateClient" in module.text
    types = httpx.get(f"{demo.api}/client/s3gate.d.ts", timeout=10)
    assert types.status_code == 200
    assert types.headers["content-type"].startswith("text/plain")
    page = httpx.get(f"{demo.api}/demo/", timeout=10)
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert demo.s3.endpoint_url.rstrip("/") in policy


def _downloaded(demo: DemoServer, sub: str, file_id: str) -> bytes:
    link = httpx.get(
        f"{demo.api}/downloads/{file_id}",
        headers={"Authorization": f"Bearer {demo.token(sub)}"},
        timeout=10,
    ).json()
    return hashlib.sha256(httpx.get(link["url"], timeout=30).content).digest()


def test_api_refusals_surface_their_problem_code(
    start_demo: Callable[..., DemoServer], page: Any, sub: str, tmp_path: Path
) -> None:
    images_only = start_demo(S3GATE_ALLOWED_CONTENT_TYPES="image/*")
    document = _random_file(tmp_path, "notes.bin", 1024)
    page.goto(images_only.demo_url(sub))
    page.set_input_files("#files", str(document))
    row = _upload_row(page, "notes.bin")
    row.and_(page.locator("[data-state=failed]")).wait_for()
    assert row.locator(".state").inner_text().startswith("content_type_not_allowed: ")
    assert images_only.files(sub) == []
    assert _resume_records(page) == 0  # a refused create leaves nothing to resume


def _resume_records(page: Any) -> int:
    count: int = page.evaluate(
        "Object.keys(localStorage).filter((k) => k.startsWith('s3gate.upload.v1:')).length"
    )
    return count


def test_a_put_refused_with_403_is_retried_with_a_fresh_url(
    demo: DemoServer, page: Any, sub: str, tmp_path: Path
) -> None:
    # S3 answers 403 to a URL that expired (or to a clock that ran past it): the client asks
    # for a fresh URL by replaying its create with the same Idempotency-Key, and sends again.
    small = _random_file(tmp_path, "refused-once.bin", 3000)
    creates = _requests(page, "POST", f"{demo.api}/uploads")
    origin = demo.api

    refused: list[str] = []

    def refuse_first(route: Any) -> None:
        if route.request.method != "PUT" or refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=403,
            headers={"Access-Control-Allow-Origin": origin, "Content-Type": "application/xml"},
            body="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )

    page.goto(demo.demo_url(sub))
    page.route(f"{demo.s3.endpoint_url}/**", refuse_first)
    page.set_input_files("#files", str(small))
    file_id = _wait_done(page, "refused-once.bin")
    assert len(refused) == 1
    assert [url for url in creates if url.endswith("/uploads")] == [f"{demo.api}/uploads"] * 2
    assert _downloaded(demo, sub, file_id) == _sha256(small)
    (only,) = demo.files(sub)
    assert only["id"] == file_id


# --- stored XSS: what a hostile uploader's HTML does at the bucket's origin ----------------------

SNIFFED_TYPES = ["unknown/unknown", "application/unknown", "application/x-unknown-content-type"]
# Chromium sniffs these two into HTML; it saves application/x-unknown-content-type unsniffed
# (other browsers sniff it), so that type's control serves the payload as text/html instead.
CHROMIUM_SNIFFS = {"unknown/unknown", "application/unknown"}
# Calls back into the test when (and only when) the browser runs it as a page.
HTML_PAYLOAD = (
    b"<!doctype html><html><head><title>payload</title></head><body>"
    b"<script>window.s3gateScriptRan(location.origin)</script></body></html>"
)


def _navigate(browser: Any, url: str) -> tuple[list[str], Any]:
    """Open `url` in a fresh context; (origins the payload's script reported, the download)."""
    context = browser.new_context(accept_downloads=True)
    ran: list[str] = []
    context.expose_binding("s3gateScriptRan", lambda _source, origin: ran.append(origin))
    page = context.new_page()
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    aborted = ""
    try:
        page.goto(url, wait_until="load")
    except PlaywrightError as exc:  # a navigation that turns into a download is aborted
        aborted = str(exc)
    # The binding's call crosses a process boundary: give a script that ran time to report.
    page.wait_for_timeout(500)
    download = downloads[0] if downloads else None
    assert not aborted or download is not None, aborted
    if download is not None:
        download.path()  # wait for it to finish before the context goes
    context.close()
    return ran, download


def _uploaded_html(server: DemoServer, sub: str, content_type: str) -> str:
    """Upload HTML_PAYLOAD declared as `content_type`; the available file's id."""
    auth = {"Authorization": f"Bearer {server.token(sub)}"}
    body = {"filename": "page.html", "content_type": content_type, "size": len(HTML_PAYLOAD)}
    created = httpx.post(f"{server.api}/uploads", json=body, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    upload, file_id = created.json()["upload"], created.json()["file"]["id"]
    put = httpx.put(upload["url"], content=HTML_PAYLOAD, headers=upload["headers"], timeout=10)
    assert put.status_code == 200, put.text
    done = httpx.post(f"{server.api}/uploads/{file_id}/complete", headers=auth, timeout=10)
    assert done.status_code == 200, done.text
    return str(file_id)


def test_html_declared_under_a_sniffed_type_runs_no_script_at_the_bucket_origin(
    start_demo: Callable[..., DemoServer], browser: Any, sub: str
) -> None:
    # The operator listed each type exactly, so the creates are admitted.
    server = start_demo(S3GATE_ALLOWED_CONTENT_TYPES=",".join(["*/*", *SNIFFED_TYPES]))
    auth = {"Authorization": f"Bearer {server.token(sub)}"}
    for content_type in SNIFFED_TYPES:
        file_id = _uploaded_html(server, sub, content_type)
        link = httpx.get(
            f"{server.api}/downloads/{file_id}?disposition=inline", headers=auth, timeout=10
        )
        assert link.status_code == 200, link.text
        ran, download = _navigate(browser, link.json()["url"])
        assert ran == [], content_type
        assert download is not None, content_type
        assert download.suggested_filename == "page.html"
        served = httpx.get(link.json()["url"], timeout=10)
        assert served.content == HTML_PAYLOAD
        assert served.headers["content-type"] == "application/octet-stream", content_type
        assert served.headers["content-disposition"].startswith("attachment; "), content_type

        # Control: the same object signed to be served inline under its declared type, as it
        # was before the inline allow-list, runs the payload, so the check above can fail.
        key = object_key("uploads/", sub, uuid.UUID(file_id))
        unsafe = server.s3.client().generate_presigned_url(
            "get_object",
            Params={
                "Bucket": server.bucket,
                "Key": key,
                "ResponseContentType": (
                    content_type if content_type in CHROMIUM_SNIFFS else "text/html"
                ),
                "ResponseContentDisposition": "inline",
            },
            ExpiresIn=60,
        )
        ran, download = _navigate(browser, unsafe)
        assert ran == [server.s3.endpoint_url.rstrip("/")], content_type
        assert download is None
