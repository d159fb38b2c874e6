"""What a run found and how it is printed: the table, the processes, the signer, the issue's
targets (informational only) and the JSON file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    BASELINE_LABEL,
    DOWNLOADS_LABEL,
    PEER,
    PEER_UPLOADS_LABEL,
    REPO,
    UPLOADS_LABEL,
    Plan,
)
from bench.signer_bench import SignerResult
from bench.wrk import Load


@dataclasses.dataclass
class ProcessReport:
    name: str
    ready_seconds: float | None
    rss_kib: int | None
    hwm_kib: int | None
    note: str


@dataclasses.dataclass
class Report:
    loads: list[Load] = dataclasses.field(default_factory=list)
    processes: list[ProcessReport] = dataclasses.field(default_factory=list)
    signer: SignerResult | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    tree: str = ""  # the commit (and whether app/ had edits) when the run started
    load_average: str = ""  # at the start, before the bench itself ran anything
    date: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    wal_peak_bytes: int | None = None  # the SQLite WAL's largest size during the sustained run


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _machine_line() -> str:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    described = f", {model}" if model else ""
    return f"{cores} cores ({usable} usable){described}; Python {platform.python_version()}"


def load_average() -> str:
    """The 1-minute load average: well above 0 before the bench starts means another process
    competes for the cores and the numbers are suspect."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def tree_line() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in app/' if dirty else ''}"


def _table(rows: list[list[str]], left: int = 2) -> list[str]:
    """Columns padded to their widest cell; the first `left` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def _baseline_of(report: Report, load: Load) -> Load | None:
    """The `GET /healthz` run on the same server (the sustained run's server is SQLite's)."""
    server = "sqlite" if load.server == "sustained" else load.server
    return next((b for b in report.loads if b.server == server and b.label == BASELINE_LABEL), None)


def _vs_baseline(report: Report, load: Load) -> float | None:
    baseline = _baseline_of(report, load)
    return load.rps / baseline.rps if baseline is not None and baseline.rps else None


def _vs_peer(report: Report, load: Load) -> float | None:
    """s3gate's full upload path (token, row, signature) against the peer's JWT + presign."""
    if not load.label.startswith(UPLOADS_LABEL) or load.server == PEER:
        return None
    peer = next((p for p in report.loads if p.label == PEER_UPLOADS_LABEL), None)
    return load.rps / peer.rps if peer is not None and peer.rps else None


def print_report(report: Report, plan: Plan, started: float) -> None:
    print()
    print(f"s3gate bench  {report.date:%Y-%m-%d %H:%M} UTC  tree {report.tree}")
    print(f"machine: {_machine_line()}; load average at start {report.load_average}")
    print(
        f"load: wrk -t{plan.threads} -c{plan.connections} -d{plan.duration}s --latency "
        f"(after {plan.warmup} s warm-up); one uvicorn worker, uvloop + httptools"
    )
    print()
    rows = [
        [
            "server",
            "endpoint",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99/p50",
            "errors",
            "vs baseline",
            "vs peer",
            "srv CPU",
            "CPU us/req",
        ]
    ]
    for load in report.loads:
        ratio, peer = _vs_baseline(report, load), _vs_peer(report, load)
        rows.append(
            [
                load.server,
                load.label,
                f"{load.rps:.0f}{'*' if load.exhausted else ''}",
                _fmt_ms(load.p50_ms),
                _fmt_ms(load.p99_ms),
                f"{load.tail:.1f}x",
                str(load.error_count),
                f"{ratio:.1%}" if ratio is not None else "-",
                f"{peer:.2f}x" if peer is not None else "-",
                f"{load.cpu_share:.0%}" if load.cpu_share is not None else "-",
                f"{load.cpu_us_per_request:.0f}" if load.cpu_us_per_request is not None else "-",
            ]
        )
    lines = _table(rows)
    print(lines[0])
    print("-" * max(len(line) for line in lines))
    print("\n".join(lines[1:]))
    for note in report.notes:
        print(f"  * {note}")
    for load in report.loads:
        if load.error_count:
            detail = ", ".join(f"{k} {v}" for k, v in load.errors.items() if v)
            print(f"  ! {load.server} {load.label}: errors: {detail}")

    print()
    print("processes (RSS of the worker after its runs; ready = Popen to the first 200)")
    rows = [["server", "ready ms", "RSS MB", "peak RSS MB", ""]]
    for proc in report.processes:
        rows.append(
            [
                proc.name,
                f"{proc.ready_seconds * 1e3:.0f}" if proc.ready_seconds is not None else "-",
                f"{proc.rss_kib / 1024:.1f}" if proc.rss_kib is not None else "-",
                f"{proc.hwm_kib / 1024:.1f}" if proc.hwm_kib is not None else "-",
                proc.note,
            ]
        )
    print("\n".join("  " + line for line in _table(rows, left=1)))

    signer = report.signer
    if signer is not None:
        print()
        print(
            f"signer micro-benchmark (us per URL, best of 3 x {signer.iterations} calls; "
            f"s3gate's Signer = {signer.how_built})"
        )
        chain = signer.hmac_chain_us
        rows = [
            ["", "PUT", "GET"],
            [
                "s3gate Signer.presign_*",
                f"{signer.s3gate_put_us:.1f}",
                f"{signer.s3gate_get_us:.1f}",
            ],
            [
                "boto3 generate_presigned_url",
                f"{signer.boto3_put_us:.1f}",
                f"{signer.boto3_get_us:.1f}",
            ],
            ["bare HMAC chain (4+1 HMAC, 1 SHA-256)", f"{chain:.1f}", f"{chain:.1f}"],
            [
                "s3gate / boto3",
                f"{signer.s3gate_put_us / signer.boto3_put_us:.2f}x",
                f"{signer.s3gate_get_us / signer.boto3_get_us:.2f}x",
            ],
            [
                "s3gate / bare HMAC chain",
                f"{signer.s3gate_put_us / chain:.1f}x",
                f"{signer.s3gate_get_us / chain:.1f}x",
            ],
        ]
        print("\n".join("  " + line for line in _table(rows, left=1)))

    print()
    print("targets (informational: the exit status never depends on timings)")
    for line in _targets(report):
        print(f"  {line}")
    print()
    print(f"total bench time {time.perf_counter() - started:.0f} s")


def _targets(report: Report) -> list[str]:
    lines: list[str] = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'PASS' if ok else 'MISS'}  {text}")

    by_key = {(load.server, load.label): load for load in report.loads}
    for backend, label, wanted in (
        ("sqlite", UPLOADS_LABEL, 0.40),
        ("postgres", UPLOADS_LABEL, 0.30),
        ("sqlite", DOWNLOADS_LABEL, 0.50),
        ("postgres", DOWNLOADS_LABEL, 0.40),
    ):
        load = by_key.get((backend, label))
        ratio = _vs_baseline(report, load) if load is not None else None
        if ratio is not None:
            check(
                ratio >= wanted,
                f"{backend:<8} {label:<28} >= {wanted:.0%} of its /healthz req/s: {ratio:.1%}",
            )
    for backend in ("sqlite", "postgres"):
        load = by_key.get((backend, UPLOADS_LABEL))
        peer = _vs_peer(report, load) if load is not None else None
        if peer is not None:
            check(peer >= 1.5, f"{backend:<8} {UPLOADS_LABEL:<28} >= 1.5x the peer: {peer:.2f}x")
    for load in report.loads:
        if load.server != PEER:
            check(
                load.tail <= 5, f"{load.server:<8} {load.label:<28} p99 <= 5x p50: {load.tail:.1f}x"
            )
    if report.wal_peak_bytes is not None:
        peak_mb = report.wal_peak_bytes / 1024**2
        check(peak_mb < 64, f"sqlite   WAL under a sustained write load < 64 MB: {peak_mb:.1f} MB")
    total_errors = sum(load.error_count for load in report.loads)
    check(total_errors == 0, f"zero errors in every load run: {total_errors}")
    for proc in report.processes:
        if proc.name == PEER:
            continue
        if proc.rss_kib is not None:
            check(
                proc.rss_kib < 120 * 1024,
                f"{proc.name:<8} RSS per worker < 120 MB: {proc.rss_kib / 1024:.1f} MB",
            )
        if proc.ready_seconds is not None:
            check(
                proc.ready_seconds < 1.5,
                f"{proc.name:<8} ready < 1.5 s from process start: {proc.ready_seconds:.2f} s",
            )
    return lines


def json_report(report: Report, plan: Plan) -> dict[str, Any]:
    return {
        "date": report.date.isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "tree": report.tree,
        "load_average_at_start": report.load_average,
        "plan": dataclasses.asdict(plan),
        "loads": [
            {
                **dataclasses.asdict(load),
                "rps": load.rps,
                "ratio_vs_baseline": _vs_baseline(report, load),
                "ratio_vs_peer": _vs_peer(report, load),
            }
            for load in report.loads
        ],
        "processes": [dataclasses.asdict(proc) for proc in report.processes],
        "signer": dataclasses.asdict(report.signer) if report.signer else None,
        "problems": report.problems,
    }
