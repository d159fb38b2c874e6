"""The parts of a run: the peer, s3gate on one ledger backend, the sustained SQLite run. Each
starts its server, prepares what its rows need, drives wrk and records the numbers."""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import threading
from pathlib import Path

import httpx

from app.migrate import run_migrations
from bench.common import (
    BASELINE_LABEL,
    COMPLETE_LABEL,
    DOWNLOADS_LABEL,
    FILE_SIZE,
    PEER,
    PEER_DIR,
    PEER_UPLOADS_LABEL,
    UPLOADS_LABEL,
    BenchError,
    Plan,
    file_bytes,
)
from bench.prepare import prepare_ids
from bench.report import ProcessReport, Report
from bench.servers import Server
from bench.wrk import Load, run_wrk

MAX_COMPLETE_IDS = 40_000


def _record_process(report: Report, server: Server) -> None:
    if server.process is None or server.process.poll() is not None:
        report.processes.append(
            ProcessReport(server.name, server.ready_seconds, None, None, "not running")
        )
        return
    rss, hwm, note = server.memory()
    report.processes.append(ProcessReport(server.name, server.ready_seconds, rss, hwm, note))


def _load(
    server: Server,
    plan: Plan,
    token: str,
    label: str,
    script: str,
    seconds: int,
    ids: Path | None = None,
) -> Load:
    """One wrk run of `script` against `server` with the plan's connections and threads."""
    extra = {"BENCH_TOKEN": token, "BENCH_FILE_SIZE": str(FILE_SIZE)}
    if ids is not None:
        extra["BENCH_IDS_FILE"] = str(ids)
    return run_wrk(
        server,
        label,
        script,
        duration=seconds,
        connections=plan.connections,
        threads=plan.threads,
        env=extra,
    )


def _peer_ready() -> str | None:
    """Install the peer's packages from its lock file when they are missing or stale; None
    when it can run, else why not (no Node.js here: the peer rows are skipped)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "Node.js/npm not installed: the peer rows are skipped"
    lock = PEER_DIR / "package-lock.json"
    installed = PEER_DIR / "node_modules" / ".package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        print("bench: npm ci (the peer's packages, from its lock file) ...", flush=True)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"peer: npm ci failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return None


def _check_peer_url(server: Server, token: str) -> None:
    """The peer's URLs must be real: one of them stores bytes in SeaweedFS."""
    body = {"filename": "report.txt", "content_type": "text/plain", "size": FILE_SIZE}
    with httpx.Client(timeout=10) as client:
        made = client.post(
            f"{server.url}/uploads", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        if made.status_code != 201:
            raise BenchError(f"peer: POST /uploads answered {made.status_code}: {made.text}")
        upload = made.json()["upload"]
        sent = client.put(upload["url"], content=file_bytes(), headers=upload["headers"])
        if sent.status_code != 200:
            raise BenchError(f"peer: its presigned PUT was refused ({sent.status_code})")


def bench_peer(report: Report, plan: Plan, env: dict[str, str], token: str, workdir: Path) -> None:
    """The seeds' design, one Node process, no database: JWT + presign alone."""
    why_not = _peer_ready()
    if why_not is not None:
        report.notes.append(why_not)
        return
    argv = [shutil.which("node") or "node", str(PEER_DIR / "server.js")]
    server = Server(PEER, "", "/healthz", {**env, "NODE_NO_WARNINGS": "1"}, workdir, argv=argv)
    try:
        server.start()
        _check_peer_url(server, token)
        for label, script in ((BASELINE_LABEL, "healthz.lua"), (PEER_UPLOADS_LABEL, "uploads.lua")):
            if plan.warmup:
                _load(server, plan, token, label, script, plan.warmup)
            report.loads.append(_load(server, plan, token, label, script, plan.duration))
        _record_process(report, server)
    finally:
        server.stop()


def bench_s3gate(
    report: Report, plan: Plan, backend: str, env: dict[str, str], token: str, workdir: Path
) -> None:
    server = Server(backend, "app.main:app", "/readyz", env, workdir)

    def load(label: str, script: str, seconds: int, ids: Path | None = None) -> Load:
        return _load(server, plan, token, label, script, seconds, ids)

    def prepare(kind: str, count: int, *, complete: bool) -> Path:
        path = workdir / f"{backend}-{kind}.ids"
        return prepare_ids(server, token, count, path, complete=complete)

    try:
        server.start()
        # Files for the id-driven runs, made through the API exactly as a client makes them.
        downloads = prepare("downloads", plan.download_files, complete=True)
        complete_count = plan.complete_ids
        if plan.complete_probe_ids:
            # Completion consumes one pending file per request: a short probe sizes the real
            # run (and warms that path up).
            probe = load(
                COMPLETE_LABEL,
                "complete.lua",
                1,
                prepare("probe", plan.complete_probe_ids, complete=False),
            )
            if probe.error_count:
                raise BenchError(f"{backend}: the completion probe had errors {probe.errors}")
            needed = math.ceil(probe.rps * plan.duration * 1.5) + 2 * plan.connections
            complete_count = min(MAX_COMPLETE_IDS, max(needed, plan.complete_probe_ids))
        completable = prepare("complete", complete_count, complete=False)

        if plan.warmup:
            load(BASELINE_LABEL, "healthz.lua", plan.warmup)
        report.loads.append(load(BASELINE_LABEL, "healthz.lua", plan.duration))
        if plan.warmup:
            load(UPLOADS_LABEL, "uploads.lua", plan.warmup)
            load(DOWNLOADS_LABEL, "downloads.lua", plan.warmup, downloads)
        report.loads.append(load(UPLOADS_LABEL, "uploads.lua", plan.duration))
        report.loads.append(load(DOWNLOADS_LABEL, "downloads.lua", plan.duration, downloads))
        completed = load(COMPLETE_LABEL, "complete.lua", plan.duration, completable)
        report.loads.append(completed)
        if completed.exhausted:
            report.notes.append(
                f"{backend} complete: the {complete_count} prepared files ran out after "
                f"{completed.seconds:.2f} s; its req/s is over that active time only"
            )
        _record_process(report, server)
    finally:
        server.stop()


def bench_sustained_sqlite(
    report: Report, plan: Plan, env: dict[str, str], token: str, workdir: Path, seconds: int
) -> None:
    """`seconds` of POST /uploads on a fresh SQLite ledger while the WAL's size is sampled
    every 20 ms: the embedded ledger under a sustained write load (issue 11, item 11)."""
    database = workdir / "sustained.db"
    url = f"sqlite:///{database}"
    run_migrations(url)
    server = Server(
        "sustained", "app.main:app", "/readyz", {**env, "S3GATE_DATABASE_URL": url}, workdir
    )
    wal = Path(f"{database}-wal")
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            with contextlib.suppress(FileNotFoundError):
                peak = max(peak, wal.stat().st_size)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        server.start()
        sampler.start()
        report.loads.append(
            _load(server, plan, token, f"{UPLOADS_LABEL} ({seconds} s)", "uploads.lua", seconds)
        )
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        server.stop()
    report.wal_peak_bytes = peak
