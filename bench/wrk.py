"""Running wrk against a server and reading its numbers."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, BenchError
from bench.servers import Server, stop_tracked, track, untrack
from devkit.processes import start_process

WRK_TIMEOUT = "10s"  # a request slower than this counts as an error (wrk's default is 2 s)


@dataclasses.dataclass
class Load:
    server: str
    label: str
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    exhausted: bool = False
    cpu_seconds: float | None = None  # the server worker's CPU time during the run
    wall_seconds: float = 0.0  # how long wrk ran

    @property
    def cpu_share(self) -> float | None:
        """The worker's CPU use during the run, as a share of one core."""
        # A run that ran out of ids had load only for its active time (`seconds`).
        window = self.seconds if self.exhausted else self.wall_seconds
        if self.cpu_seconds is None or not window:
            return None
        return self.cpu_seconds / window

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.requests:
            return None
        return self.cpu_seconds / self.requests * 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def tail(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms > 0 else math.inf


_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """wrk's numbers: the BENCH line from common.lua's done(), else wrk's own text."""
    for line in output.splitlines():
        if line.startswith("BENCH "):
            try:
                data: dict[str, Any] = json.loads(line[len("BENCH ") :])
            except ValueError as exc:
                raise BenchError(f"unreadable BENCH line from wrk: {line!r}") from exc
            return data
    # Fallback: the human-readable report (for a script without common.lua's done()).
    data = {"exhausted": 0, "active_us": 0}
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", output)
    if match is None:
        raise BenchError(f"could not parse wrk output:\n{output[-2000:]}")
    data["requests"] = int(match.group(1))
    data["duration_us"] = _ms(match.group(2), match.group(3)) * 1e3
    for pct in (50, 99):
        found = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        if found is None:
            raise BenchError(f"wrk output has no {pct}% latency (was --latency passed?)")
        data[f"p{pct}_us"] = _ms(found.group(1), found.group(2)) * 1e3
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    for index, name in enumerate(("connect", "read", "write", "timeout"), start=1):
        data[f"errors_{name}"] = int(sockets.group(index)) if sockets else 0
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    data["errors_status"] = int(status.group(1)) if status else 0
    return data


QUIET_IDLE_SHARE = 0.85  # of all cores, over a 0.5 s sample
QUIET_MAX_WAIT_SECONDS = 20.0


def _cpu_idle_share(sample_seconds: float = 0.5) -> float:
    def read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3], sum(fields)  # idle (iowait counts as busy: a flushing disk), total

    idle_a, total_a = read()
    time.sleep(sample_seconds)
    idle_b, total_b = read()
    return (idle_b - idle_a) / max(1, total_b - total_a)


def wait_for_quiet_machine() -> None:
    """Let background work finish before a timed run: on 2 cores, PostgreSQL's autovacuum after
    thousands of inserts, or SeaweedFS flushing the prepared objects, would steal the server's
    CPU and be charged to whichever run happens next."""
    if not Path("/proc/stat").exists():
        return
    deadline = time.monotonic() + QUIET_MAX_WAIT_SECONDS
    while _cpu_idle_share() < QUIET_IDLE_SHARE and time.monotonic() < deadline:
        pass


def run_wrk(
    server: Server,
    label: str,
    script: str,
    *,
    duration: int,
    connections: int,
    threads: int,
    env: dict[str, str],
) -> Load:
    """One bounded wrk run against server; returns its numbers (errors counted, not raised)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed")
    wait_for_quiet_machine()
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(BENCH_DIR / script),
        server.url + "/",
    ]
    cpu_before = server.cpu_seconds()
    wall_before = time.perf_counter()
    process = start_process(
        command,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    track(process)
    try:
        text, err = process.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        stop_tracked(process)
        raise BenchError(f"wrk against {server.name} {label} did not finish") from None
    finally:
        untrack(process)
    wall = time.perf_counter() - wall_before
    cpu_after = server.cpu_seconds()
    if process.returncode != 0:
        raise BenchError(
            f"wrk failed ({process.returncode}) against {server.name} {label}:\n"
            f"{text[-1500:]}{err[-1500:]}"
        )
    data = parse_wrk(text)
    exhausted = bool(data.get("exhausted"))
    active_us = float(data.get("active_us") or 0)
    seconds = (active_us if exhausted and active_us > 0 else float(data["duration_us"])) / 1e6
    return Load(
        server=server.name,
        label=label,
        requests=int(data["requests"]),
        seconds=seconds,
        errors={
            name: int(data.get(f"errors_{name}", 0))
            for name in ("connect", "read", "write", "timeout", "status")
        },
        p50_ms=float(data["p50_us"]) / 1e3,
        p99_ms=float(data["p99_us"]) / 1e3,
        exhausted=exhausted,
        cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        wall_seconds=wall,
    )
