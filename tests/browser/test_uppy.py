"""s3gate's /client/uppy.js in real Chromium with the real Uppy from npm (pinned by
tests/browser/uppy/package-lock.json, bundled by esbuild at test time, nothing from a CDN): the
page comes from an origin of its own, as a real app's does, the API from the service's, the
bytes go to SeaweedFS's."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from app.storage import ensure_bucket
from devkit.ports import free_port
from tests.browser.conftest import REQUIRE_BROWSER, DemoServer, MiB, throttle
from tests.support import unavailable, wait_until

UPPY_DIR = Path(__file__).resolve().parent / "uppy"


def _npm_ci(npm: str) -> None:
    """Install the pinned packages from the lock file when they are missing or stale."""
    lock = UPPY_DIR / "package-lock.json"
    installed = UPPY_DIR / "node_modules" / ".package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=UPPY_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{(done.stdout + done.stderr)[-3000:]}"


@pytest.fixture(scope="module")
def uppy_packages() -> Path:
    """tests/browser/uppy with its pinned packages installed."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        unavailable(
            "Node.js/npm not installed (apt-get install nodejs npm)", required=REQUIRE_BROWSER
        )
    _npm_ci(npm)
    return UPPY_DIR / "node_modules"


@pytest.fixture(scope="module")
def bundle(browser: Any, uppy_packages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test page and its one bundle (Uppy, its CSS and /client/uppy.js), built once."""
    out = tmp_path_factory.mktemp("uppy-page")
    built = subprocess.run(
        [
            str(uppy_packages / ".bin" / "esbuild"),
            "page.js",
            "--bundle",
            "--format=esm",
            "--target=chrome120",
            f"--outdir={out}",
            "--log-level=warning",
        ],
        cwd=UPPY_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    shutil.copy(UPPY_DIR / "index.html", out / "index.html")
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin(bundle: Path) -> Iterator[str]:
    """The app's origin: the bundled page on a loopback port of its own."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(_Quiet, directory=str(bundle))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def start_api(start_demo: Callable[..., DemoServer], page_origin: str) -> Callable[..., DemoServer]:
    """An s3gate whose API and bucket CORS allow the page's origin (5 MiB parts)."""

    def start(**settings: str) -> DemoServer:
        server = start_demo(S3GATE_CORS_ORIGINS=page_origin, **settings)
        ensure_bucket(server.s3.client(), server.bucket, [page_origin])
        return server

    return start


@pytest.fixture(scope="module")
def api(start_api: Callable[..., DemoServer]) -> DemoServer:
    return start_api()


@pytest.fixture(scope="module")
def tight_api(start_api: Callable[..., DemoServer]) -> DemoServer:
    """Bursts of 2, then one call a second (each test has its own owner, so its own limit)."""
    return start_api(S3GATE_RATE_LIMIT_PER_MINUTE="60", S3GATE_RATE_LIMIT_BURST="2")


def _random_file(directory: Path, name: str, size: int, head: bytes = b"") -> Path:
    path = directory / name
    path.write_bytes(head + os.urandom(size - len(head)))
    return path


def _open(page: Any, origin: str, api: DemoServer, sub: str, **query: Any) -> None:
    params = urlencode({"api": f"{api.api}/", **{k: str(v) for k, v in query.items()}})
    page.goto(f"{origin}/index.html?{params}#token={api.token(sub)}")
    page.wait_for_function("window.ready === true")


def _add(page: Any, *paths: Path) -> None:
    page.locator("input.uppy-Dashboard-input").first.set_input_files([str(p) for p in paths])


def _start(page: Any) -> None:
    page.locator("button.uppy-StatusBar-actionBtn--upload").click()


def _wait_settled(page: Any, count: int, timeout: float = 90_000) -> None:
    """Until `count` files are done: uploaded and verified, or failed."""
    page.wait_for_function(
        """(count) => {
          const files = window.uppy.getFiles();
          return files.length === count &&
            files.every((f) => f.error || (f.progress.uploadComplete && f.progress.complete));
        }""",
        arg=count,
        timeout=timeout,
    )


def _files(page: Any) -> dict[str, dict[str, Any]]:
    """Uppy's state of each file, by name."""
    files: dict[str, dict[str, Any]] = page.evaluate(
        """() => Object.fromEntries(window.uppy.getFiles().map((f) => [f.name, {
          id: f.id, error: f.error ?? null, s3gate: f.s3gate ?? null,
          response: f.response ?? null, progress: f.progress,
        }]))"""
    )
    return files


def _progress(page: Any) -> dict[str, list[int]]:
    values: dict[str, list[int]] = page.evaluate("window.progress")
    return values


def _events(page: Any, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = page.evaluate("window.events")
    return [event for event in events if event["name"] == name]


def _requests(page: Any, method: str, prefix: str) -> list[str]:
    seen: list[str] = []
    page.on(
        "request",
        lambda r: seen.append(r.url) if r.method == method and r.url.startswith(prefix) else None,
    )
    return seen


def _stored_parts(page: Any, api: DemoServer) -> list[int]:
    """The part numbers the store answered 200 to, as they happen."""
    stored: list[int] = []

    def record(response: Any) -> None:
        request = response.request
        if request.method == "PUT" and response.url.startswith(api.s3.endpoint_url):
            number = parse_qs(urlsplit(response.url).query).get("partNumber")
            if number and response.status == 200:
                stored.append(int(number[0]))

    page.on("response", record)
    return stored


def _sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _downloaded(api: DemoServer, sub: str, file_id: str) -> bytes:
    """The SHA-256 of the stored bytes (a download URL counts against the rate limit too)."""
    for _ in range(20):
        answer = httpx.get(
            f"{api.api}/downloads/{file_id}",
            headers={"Authorization": f"Bearer {api.token(sub)}"},
            timeout=10,
        )
        if answer.status_code != 429:
            break
        time.sleep(int(answer.headers["retry-after"]))
    answer.raise_for_status()
    return hashlib.sha256(httpx.get(answer.json()["url"], timeout=30).content).digest()


def _assert_available(api: DemoServer, sub: str, state: dict[str, Any], source: Path) -> None:
    assert state["error"] is None, state
    assert state["s3gate"]["status"] == "available", state
    file_id = state["s3gate"]["id"]
    assert api.file(sub, file_id)["status"] == "available"
    assert _downloaded(api, sub, file_id) == _sha256(source)


def _assert_monotonic(values: list[int], total: int) -> None:
    assert values, "no progress was shown"
    assert values == sorted(values), values
    assert values[-1] == total, values


# Each scenario with the S3gate plugin, and with @uppy/aws-s3 on awsS3Options().
MODES = ["plugin", "aws"]


def _header_of(page: Any, method: str, prefix: str, name: str) -> list[str]:
    """Header `name` of each `method` request to a URL starting with `prefix`, as sent."""
    seen: list[str] = []

    def record(request: Any) -> None:
        if request.method == method and request.url.split("?")[0] == prefix:
            seen.append(request.headers.get(name.lower(), ""))

    page.on("request", record)
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_dashboard_uploads_a_single_put_and_a_30_mib_multipart_with_monotonic_progress(
    mode: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    small = _random_file(tmp_path, "small.bin", 700 * 1024)
    large = _random_file(tmp_path, "large.bin", 30 * MiB)  # 6 parts of 5 MiB
    puts = _requests(page, "PUT", api.s3.endpoint_url)
    part_urls = _requests(page, "POST", api.api)
    keys = _header_of(page, "POST", f"{api.api}/uploads", "Idempotency-Key")
    # `complete` answers at once (no Prefer: wait): the verification is seen going on.
    _open(page, page_origin, api, sub, mode=mode, completionWait=0)
    _add(page, small, large)
    _start(page)
    _wait_settled(page, 2)

    files = _files(page)
    for name, source in (("small.bin", small), ("large.bin", large)):
        _assert_available(api, sub, files[name], source)
        _assert_monotonic(_progress(page)[name], source.stat().st_size)
    assert len(_progress(page)["large.bin"]) >= 6
    # A multipart file with a declared SHA-256 is verified in the background: Uppy saw that.
    statuses = [e["detail"] for e in _events(page, "s3gate:status") if e["file"] == "large.bin"]
    assert "verifying" in statuses, statuses
    assert statuses[-1] == "available", statuses
    # One PUT for the small file, one per part for the large one, straight to the store.
    parts = sorted(int(parse_qs(urlsplit(u).query).get("partNumber", ["0"])[0]) for u in puts)
    assert parts == [0, 1, 2, 3, 4, 5, 6], parts
    # The six part URLs came in one request, not one each.
    large_id = files["large.bin"]["s3gate"]["id"]
    assert [u for u in part_urls if u.endswith("/parts")] == [f"{api.api}/uploads/{large_id}/parts"]
    assert len(keys) == 2, keys
    assert all(keys), keys  # every create can be replayed
    if mode == "aws":
        # Derived from the Uppy file id: the same file declares under the same key.
        assert all(k.startswith("uppy-") and len(k) == 69 for k in keys), keys
    page.locator(".uppy-StatusBar.is-complete").wait_for()
    page.screenshot(path=str(artifacts / f"uppy-{mode}-uploaded.png"), full_page=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("size", "kind"), [(4096, "put"), (12 * MiB, "parts")])
def test_bytes_that_are_not_what_they_claim_fail_in_uppy_with_the_problem_code(
    mode: str,
    size: int,
    kind: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    # Declared image/png (from the name), but not a PNG: the completion check refuses it.
    fake = _random_file(tmp_path, "fake.png", size)
    _open(page, page_origin, api, sub, mode=mode)
    _add(page, fake)
    _start(page)
    _wait_settled(page, 1)

    state = _files(page)["fake.png"]
    assert state["error"].startswith("upload_rejected: "), state
    assert state["s3gate"]["status"] == "rejected"
    assert state["s3gate"]["code"] == "upload_rejected"
    assert state["response"]["body"]["code"] == "upload_rejected"
    assert api.file(sub, state["s3gate"]["id"])["status"] == "rejected"
    # Never shown as uploaded, not even for a moment: no upload-success came before the error.
    assert not state["progress"]["uploadComplete"], state
    uploads = [e["name"] for e in page.evaluate("window.events") if e["name"] != "s3gate:status"]
    assert uploads == ["upload-error", "complete"], uploads
    # The Dashboard shows it on the file, code first.
    item = page.locator(f'[id="uppy_{state["id"]}"]')
    assert "is-error" in (item.get_attribute("class") or "")
    assert "is-complete" not in (item.get_attribute("class") or "")
    details = item.locator(".uppy-Dashboard-Item-errorDetails")
    assert (details.get_attribute("aria-label") or "").startswith("upload_rejected: ")
    page.locator(".uppy-StatusBar.is-error").wait_for()
    if kind == "put":
        page.screenshot(path=str(artifacts / f"uppy-{mode}-rejected.png"), full_page=True)


@pytest.mark.parametrize("mode", MODES)
def test_pause_and_resume_from_the_dashboard_keep_the_parts_the_store_holds(
    mode: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    big = _random_file(tmp_path, "pausable.bin", 20 * MiB)  # 4 parts of 5 MiB
    _open(page, page_origin, api, sub, mode=mode, concurrency=1)
    throttle(page, 10 * MiB)
    _add(page, big)
    _start(page)
    page.wait_for_function("() => window.uppy.getFiles()[0].progress.bytesUploaded > 6 * 1048576")
    (item_id,) = [f["id"] for f in _files(page).values()]
    button = page.locator(f'[id="uppy_{item_id}"] button.uppy-Dashboard-Item-progressIndicator')
    button.click()  # pause
    assert button.get_attribute("aria-label") == "Resume upload"
    page.wait_for_timeout(300)  # the aborted part's last progress event
    paused_at = _progress(page)["pausable.bin"][-1]
    (pending,) = api.files(sub)
    held = _held_parts(api, sub, pending["id"], 5 * MiB)
    assert 1 in held, held
    page.wait_for_timeout(1500)
    assert _progress(page)["pausable.bin"][-1] == paused_at  # nothing moves while paused
    assert _held_parts(api, sub, pending["id"], 5 * MiB) == held
    page.screenshot(path=str(artifacts / f"uppy-{mode}-paused.png"), full_page=True)

    sent = _requests(page, "PUT", api.s3.endpoint_url)
    button.click()  # resume
    _wait_settled(page, 1)
    state = _files(page)["pausable.bin"]
    _assert_available(api, sub, state, big)
    if mode == "plugin":
        _assert_monotonic(_progress(page)["pausable.bin"], big.stat().st_size)
    # What the store held at the pause was not sent again; the rest was.
    resent = {int(parse_qs(urlsplit(url).query)["partNumber"][0]) for url in sent}
    assert not resent & held, (resent, held)
    assert resent | held == {1, 2, 3, 4}, (resent, held)
    assert state["s3gate"]["id"] == pending["id"]


def _held_parts(api: DemoServer, sub: str, file_id: str, part_size: int) -> set[int]:
    """The parts the store holds in full (what a resume skips)."""
    answer = httpx.get(
        f"{api.api}/uploads/{file_id}/parts",
        headers={"Authorization": f"Bearer {api.token(sub)}"},
        timeout=10,
    )
    answer.raise_for_status()
    return {p["part_number"] for p in answer.json()["parts"] if p["size"] == part_size}


@pytest.mark.parametrize("mode", MODES)
def test_a_reload_mid_upload_is_restored_by_golden_retriever_and_resumes(
    mode: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    # Under Golden Retriever's 10 MiB IndexedDB limit per file, and two parts.
    big = _random_file(tmp_path, "restored.bin", 9 * MiB)
    stored = _stored_parts(page, api)
    keys = _header_of(page, "POST", f"{api.api}/uploads", "Idempotency-Key")
    _open(page, page_origin, api, sub, mode=mode, concurrency=1)
    throttle(page, 3 * MiB)
    _add(page, big)
    _start(page)
    deadline = time.monotonic() + 30
    while not stored and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert stored == [1]
    page.reload()  # part 2 is on the wire
    page.wait_for_function("window.ready === true")
    page.wait_for_function("() => window.uppy.getState().recoveredState != null")
    page.screenshot(path=str(artifacts / f"uppy-{mode}-restored.png"), full_page=True)
    _start(page)  # the Dashboard's button confirms the restore
    _wait_settled(page, 1)

    state = _files(page)["restored.bin"]
    _assert_available(api, sub, state, big)
    assert stored == [1, 2]  # part 1 was not sent again
    # One file, not two: the same upload went on (a create replayed with its key, if any).
    (only,) = api.files(sub)
    assert only["id"] == state["s3gate"]["id"]
    assert keys, keys
    assert len(set(keys)) == 1, keys


@pytest.mark.parametrize("mode", MODES)
def test_a_reload_after_the_service_got_the_completion_does_not_upload_the_file_again(
    mode: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
) -> None:
    # Two parts with a SHA-256: the service verifies it in the background. The completion
    # reaches it and is answered, but the page is reloaded before it hears the answer.
    big = _random_file(tmp_path, "verified.bin", 9 * MiB)
    answered: list[int] = []

    def hold_the_answer(route: Any) -> None:
        if route.request.method != "POST" or answered:
            route.continue_()
            return
        answered.append(route.fetch().status)  # the service has it; the page never hears

    page.route(f"{api.api}/uploads/*/complete", hold_the_answer)
    _open(page, page_origin, api, sub, mode=mode)
    _add(page, big)
    _start(page)
    deadline = time.monotonic() + 60
    while not answered and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert answered, "the completion never reached the service"
    (declared,) = api.files(sub)
    assert declared["status"] in ("verifying", "available"), declared
    puts = _requests(page, "PUT", api.s3.endpoint_url)
    creates = _requests(page, "POST", f"{api.api}/uploads")
    page.reload()
    page.wait_for_function("window.ready === true")
    page.wait_for_function("() => window.uppy.getState().recoveredState != null")
    _start(page)
    _wait_settled(page, 1)

    state = _files(page)["verified.bin"]
    _assert_available(api, sub, state, big)
    (only,) = api.files(sub)  # the same file, not a second upload of it
    assert only["id"] == declared["id"] == state["s3gate"]["id"]
    assert puts == [], puts  # no byte was sent again
    # At most the replay of its create (the plugin's resume; aws-s3 resumes from the parts).
    assert creates.count(f"{api.api}/uploads") <= 1, creates


@pytest.mark.parametrize("mode", MODES)
def test_a_tight_rate_limit_still_completes_and_honours_retry_after(
    mode: str,
    tight_api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    sources = [_random_file(tmp_path, f"limited-{n}.bin", 64 * 1024) for n in range(3)]
    sources.append(_random_file(tmp_path, "limited-parts.bin", 12 * MiB))  # 3 parts
    # Each call by what it is (method, URL, body): a retry is the same call sent again.
    sent: list[tuple[float, tuple[str, str, str]]] = []
    throttled: list[tuple[float, tuple[str, str, str], str]] = []

    def call(request: Any) -> tuple[str, str, str]:
        return (request.method, request.url, request.post_data or "")

    def send(request: Any) -> None:
        if request.url.startswith(tight_api.api):
            sent.append((time.monotonic(), call(request)))

    def record(response: Any) -> None:
        if response.url.startswith(tight_api.api) and response.status == 429:
            retry_after = response.headers.get("retry-after", "")
            throttled.append((time.monotonic(), call(response.request), retry_after))

    page.on("request", send)
    page.on("response", record)
    _open(page, page_origin, tight_api, sub, mode=mode)
    _add(page, *sources)
    _start(page)
    _wait_settled(page, 4, timeout=120_000)

    files = _files(page)
    for source in sources:
        _assert_available(tight_api, sub, files[source.name], source)
    assert throttled, "the limit should have answered 429 at least once"
    for at, what, retry_after in throttled:
        # The same call was sent again, and not before Retry-After said.
        again = [t for t, c in sent if c == what and t > at]
        assert again, what
        assert again[0] - at >= int(retry_after) - 0.2, (what, retry_after, again[0] - at)
    page.screenshot(path=str(artifacts / f"uppy-{mode}-rate-limited.png"), full_page=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("size", "kind"), [(12 * MiB, "parts"), (3 * MiB, "put")])
def test_removing_a_file_mid_upload_abandons_it(
    mode: str,
    size: int,
    kind: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    big = _random_file(tmp_path, "removed.bin", size)  # 3 parts, or one PUT
    stored = _stored_parts(page, api)
    abandons = _requests(page, "DELETE", f"{api.api}/uploads/")
    _open(page, page_origin, api, sub, mode=mode)
    throttle(page, 1 * MiB if kind == "put" else 4 * MiB)
    _add(page, big)
    _start(page)
    if kind == "parts":
        deadline = time.monotonic() + 30
        while not stored and time.monotonic() < deadline:
            page.wait_for_timeout(100)  # Playwright delivers the page's events meanwhile
    else:
        page.wait_for_function(
            "() => window.uppy.getFiles()[0].progress.bytesUploaded > 1048576", timeout=30_000
        )
    (pending,) = api.files(sub)
    assert pending["status"] == "pending"
    if kind == "parts":
        assert _objects_of(api, pending), "the multipart upload should be listed"
    (item_id,) = [f["id"] for f in _files(page).values()]
    page.locator(f'[id="uppy_{item_id}"] button.uppy-Dashboard-Item-action--remove').click()

    wait_until(lambda: api.files(sub) == [], timeout=15)
    assert abandons == [f"{api.api}/uploads/{pending['id']}"]
    assert page.evaluate("window.uppy.getFiles().length") == 0
    # Nothing of it is left in the store either (no object, no multipart upload).
    assert _objects_of(api, pending) == []
    if kind == "parts":
        page.screenshot(path=str(artifacts / f"uppy-{mode}-removed.png"), full_page=True)


def _objects_of(api: DemoServer, file: dict[str, Any]) -> list[str]:
    """The keys in the bucket, and of its unfinished multipart uploads, naming the file."""
    s3 = api.s3.client()
    listed = s3.list_objects_v2(Bucket=api.bucket).get("Contents", [])
    unfinished = s3.list_multipart_uploads(Bucket=api.bucket).get("Uploads", [])
    return [o["Key"] for o in [*listed, *unfinished] if file["id"] in o["Key"]]


@pytest.mark.parametrize("mode", MODES)
def test_a_put_whose_answer_was_lost_is_completed_not_refused(
    mode: str,
    api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    # The store stores the PUT, then the connection drops before its answer reaches the page.
    # The widget sends it again, which `If-None-Match: *` refuses (412: the object is there):
    # the file must end available, from the bytes sent once, not failed.
    source = _random_file(tmp_path, "lost-answer.bin", 700 * 1024)
    puts: list[int] = []

    def drop_first_answer(route: Any) -> None:
        if route.request.method != "PUT":
            route.continue_()
            return
        if puts:
            puts.append(-1)  # the resend, sent as it is
            route.continue_()
            return
        # Chromium hands an interceptor no Blob body: the test sends the file's own bytes.
        puts.append(route.fetch(post_data=source.read_bytes()).status)  # stored ...
        route.abort("connectionreset")  # ... but the page never hears it

    page.route(f"{api.s3.endpoint_url}/**", drop_first_answer)
    _open(page, page_origin, api, sub, mode=mode)
    _add(page, source)
    _start(page)
    # Until Uppy's upload ends: aws-s3 reports the 412 before the post-processor runs.
    page.wait_for_function("window.events.some((e) => e.name === 'complete')", timeout=60_000)

    state = _files(page)["lost-answer.bin"]
    _assert_available(api, sub, state, source)
    assert puts[0] == 200, puts
    assert len(puts) == 2 if mode == "aws" else len(puts) >= 2, puts  # it was sent again
    (only,) = api.files(sub)
    assert only["id"] == state["s3gate"]["id"]
    assert page.evaluate("window.uppy.getState().info") == []  # no failure notice left
    page.locator(".uppy-StatusBar.is-complete").wait_for()
    # The notice's fade-out.
    page.wait_for_function("!document.querySelector('.uppy-Informer p')", timeout=10_000)
    page.screenshot(path=str(artifacts / f"uppy-{mode}-answer-lost.png"), full_page=True)


@pytest.fixture(scope="module")
def strict_api(start_api: Callable[..., DemoServer]) -> DemoServer:
    """Images only, up to 1 MiB."""
    return start_api(S3GATE_MAX_FILE_SIZE=str(MiB), S3GATE_ALLOWED_CONTENT_TYPES="image/*")


@pytest.mark.parametrize("mode", MODES)
def test_uppys_restrictions_follow_the_published_settings(
    mode: str,
    strict_api: DemoServer,
    page: Any,
    page_origin: str,
    sub: str,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    creates = _requests(page, "POST", f"{strict_api.api}/uploads")
    _open(page, page_origin, strict_api, sub, mode=mode)
    page.wait_for_function("() => window.uppy.opts.restrictions.maxFileSize != null")
    restrictions = page.evaluate("window.uppy.opts.restrictions")
    assert restrictions["maxFileSize"] == MiB
    assert restrictions["allowedFileTypes"] == ["image/*"]
    # Refused when added, as the service would refuse them: nothing is declared.
    _add(page, _random_file(tmp_path, "notes.txt", 100))
    _add(page, _random_file(tmp_path, "huge.png", 2 * MiB, head=PNG_HEAD))
    _add(page, _random_file(tmp_path, "fine.png", 1000, head=PNG_HEAD))
    assert sorted(_files(page)) == ["fine.png"]
    page.screenshot(path=str(artifacts / f"uppy-{mode}-restricted.png"), full_page=True)
    _start(page)
    _wait_settled(page, 1)
    assert _files(page)["fine.png"]["s3gate"]["status"] == "available"
    assert creates.count(f"{strict_api.api}/uploads") == 1, creates


PNG_HEAD = bytes.fromhex("89504e470d0a1a0a0000000d49484452")


def test_the_js_client_refuses_what_the_settings_refuse_before_declaring_it(
    strict_api: DemoServer, page: Any, page_origin: str, sub: str
) -> None:
    # s3gate.js itself (here the plugin's client), for apps that call upload() without Uppy.
    creates = _requests(page, "POST", f"{strict_api.api}/uploads")
    _open(page, page_origin, strict_api, sub)
    refused = page.evaluate(
        """async () => {
          const client = window.uppy.getPlugin("S3gate").client;
          const outcome = async (blob) => {
            try { return (await client.upload(blob, { resume: false })).status; }
            catch (error) { return [error.code, error.status]; }
          };
          return [
            await outcome(new Blob([new Uint8Array(2 * 1048576)], { type: "image/png" })),
            await outcome(new Blob(["notes"], { type: "Text/Plain; charset=utf-8" })),
          ];
        }"""
    )
    assert refused == [["file_too_large", 413], ["content_type_not_allowed", 415]]
    assert creates == []  # nothing was declared


def test_the_service_serves_the_plugin_and_its_types_to_the_apps_origin(
    api: DemoServer, page: Any, page_origin: str, sub: str
) -> None:
    # Imported straight from the service, unbundled: it finds its API by its own URL.
    _open(page, page_origin, api, sub)
    result = page.evaluate(
        """async ({ module, token }) => {
          const { default: S3gate, awsS3Options, SUPPORTED_UPPY } = await import(module);
          const uppy = new window.Uppy({ id: "served" }).use(S3gate, { token });
          uppy.addFile({ name: "served.txt", type: "text/plain", data: new Blob(["served"]) });
          const { successful, failed } = await uppy.upload();
          return {
            helper: typeof awsS3Options, range: SUPPORTED_UPPY,
            state: successful.map((f) => f.s3gate), failed: failed.map((f) => f.error),
          };
        }""",
        {"module": f"{api.api}/client/uppy.js", "token": api.token(sub)},
    )
    assert result["failed"] == [], result
    (state,) = result["state"]
    assert state["status"] == "available"
    assert api.file(sub, state["id"])["filename"] == "served.txt"
    assert (result["helper"], result["range"]) == ("function", ">=6.0.0 <7")
    for name, media_type in (("uppy.js", "text/javascript"), ("uppy.d.ts", "text/plain")):
        served = httpx.get(f"{api.api}/client/{name}", headers={"Origin": page_origin}, timeout=10)
        assert served.status_code == 200
        assert served.headers["content-type"].startswith(media_type)
        assert served.headers["access-control-allow-origin"] == page_origin


def test_the_plugin_types_fit_uppys_own(uppy_packages: Path) -> None:
    # types-check.ts uses /client/uppy.d.ts (and s3gate.d.ts) as an app would, against the
    # pinned @uppy/core and @uppy/aws-s3 types; every declaration file is checked.
    checked = subprocess.run(
        [str(uppy_packages / ".bin" / "tsc"), "-p", "tsconfig.json"],
        cwd=UPPY_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
