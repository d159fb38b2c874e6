"""Real Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real `s3gate serve`
and SeaweedFS: the demo page comes from the service's origin, the bytes go to the store's, so
every upload meets a real CORS preflight.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth import mint_token
from app.devstack import EmbeddedS3
from app.storage import ensure_bucket
from devkit.ports import free_port
from devkit.processes import answers, stop_process
from tests.support import (
    TEST_JWT_SECRET,
    new_sub,
    run_s3gate,
    s3gate_env,
    start_s3gate,
    unavailable,
    wait_until,
)

CHROMIUM = os.environ.get("S3GATE_TEST_CHROMIUM", "/usr/bin/chromium")
# REAL-COMPONENTS.md: the flags that work headless in this sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
REQUIRE_BROWSER = os.environ.get("S3GATE_TEST_REQUIRE_BROWSER", "") == "1"
ARTIFACTS = Path(
    os.environ.get("S3GATE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
MiB = 1024 * 1024


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and the async tests that follow need the thread's loop free.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        unavailable(message, required=REQUIRE_BROWSER)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class DemoServer:
    api: str
    bucket: str
    s3: EmbeddedS3
    process: subprocess.Popen[str]

    def token(self, sub: str) -> str:
        return mint_token(TEST_JWT_SECRET, sub, ttl_seconds=3600)

    def demo_url(self, sub: str, *, host: str = "127.0.0.1") -> str:
        api = self.api.replace("127.0.0.1", host)
        return f"{api}/demo/#token={self.token(sub)}"

    def file(self, sub: str, file_id: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.api}/files/{file_id}",
            headers={"Authorization": f"Bearer {self.token(sub)}"},
            timeout=10,
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def files(self, sub: str) -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{self.api}/files",
            headers={"Authorization": f"Bearer {self.token(sub)}"},
            timeout=10,
        )
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


@pytest.fixture(scope="session")
def start_demo(
    s3_server: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., DemoServer]]:
    """Start `s3gate serve` with the demo on, and a bucket whose CORS allows only its origin."""
    started: list[subprocess.Popen[str]] = []

    def start(**settings: str) -> DemoServer:
        port = free_port()
        bucket = f"s3gate-browser-{secrets.token_hex(4)}"
        ensure_bucket(s3_server.client(), bucket, [f"http://127.0.0.1:{port}"])
        workdir = tmp_path_factory.mktemp("demo")
        env = s3gate_env(
            s3_server,
            bucket,
            S3GATE_DATABASE_URL=f"sqlite:///{workdir / 'ledger.db'}",
            S3GATE_DEMO="true",
            # Small parts, so a 12 MiB file is a three-part multipart upload.
            S3GATE_MULTIPART_THRESHOLD=str(5 * MiB),
            S3GATE_PART_SIZE=str(5 * MiB),
            **settings,
        )
        migrated = run_s3gate("migrate", env=env, cwd=workdir)
        assert migrated.returncode == 0, migrated.stderr
        process = start_s3gate(
            "serve", "--port", str(port), env=env, cwd=workdir, stdout=subprocess.DEVNULL
        )
        started.append(process)
        api = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{api}/readyz"))
        return DemoServer(api, bucket, s3_server, process)

    yield start
    for process in started:
        stop_process(process, timeout=15)


@pytest.fixture(scope="session")
def demo(start_demo: Callable[..., DemoServer]) -> DemoServer:
    return start_demo()


@pytest.fixture
def sub() -> str:
    return new_sub()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page per test (test_demo.py has its own, with downloads)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def throttle(page: Any, bytes_per_second: int) -> None:
    """Slow the page's uploads to `bytes_per_second` (Chromium's network emulation)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )
