"""The benchmark harness still runs end to end (`python -m bench.run --quick`); no timings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import unavailable

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_runs_every_part() -> None:
    if shutil.which("wrk") is None:
        message = "wrk is not installed (Debian: apt-get install -y wrk)"
        # .ci/run installs it: there a missing wrk is a failure
        unavailable(message, required=bool(os.environ.get("CI")))
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--backends", "sqlite"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for expected in (
        "req/s",
        "p99/p50",
        "vs baseline",
        "GET /healthz (baseline)",
        "vs peer",
        "POST /uploads",
        "GET /downloads/{id}",
        "POST /uploads/{id}/complete",
        "ready ms",
        "RSS MB",
        "signer micro-benchmark",
        "s3gate Signer.presign_*",
        "boto3 generate_presigned_url",
        "bare HMAC chain",
        "s3gate / boto3",
        "POST /uploads (2 s)",
        "WAL under a sustained write load",
    ):
        assert expected in output, f"{expected!r} missing from:\n{output[-4000:]}"
    # The peer (bench/peers/express, installed by `npm ci` from its lock file) runs wherever
    # Node.js does; without it the bench says it skipped the peer rows.
    peer = (
        "peer       POST /uploads (JWT + presign)"
        if shutil.which("node") and shutil.which("npm")
        else "Node.js/npm not installed: the peer rows are skipped"
    )
    assert peer in output, f"{peer!r} missing from:\n{output[-4000:]}"
