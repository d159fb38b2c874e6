"""The servers under load: each its own process, started with production flags, timed from
Popen to its first 200, measured through /proc, stopped when the bench ends (also on an
exception, Ctrl-C or SIGTERM)."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import HOST, REPO, BenchError
from devkit.ports import free_port
from devkit.processes import (
    NotReady,
    ProcessExited,
    answers,
    start_process,
    stop_process,
    tail,
    wait_ready,
)

READY_POLL_SECONDS = 0.01
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

# --- every process the bench started and has not stopped yet -------------------------------

_LIVE: list[subprocess.Popen[str]] = []


def track(process: subprocess.Popen[str]) -> None:
    """Stop `process` when the bench ends, unless untrack()ed or stopped before."""
    _LIVE.append(process)


def untrack(process: subprocess.Popen[str]) -> None:
    if process in _LIVE:
        _LIVE.remove(process)


def stop_tracked(process: subprocess.Popen[str]) -> None:
    stop_process(process, timeout=STOP_TIMEOUT_SECONDS)
    untrack(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_LIVE):
        stop_tracked(process)


def _child_pids(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclasses.dataclass
class Server:
    """One uvicorn process serving `app_path` with production flags."""

    name: str
    app_path: str
    ready_path: str
    env: dict[str, str]
    workdir: Path
    argv: list[str] | None = None  # another runtime's command (the peer); else uvicorn's
    port: int = 0
    process: subprocess.Popen[str] | None = None
    ready_seconds: float | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        if self.argv is not None:
            return self.argv
        uvicorn = Path(sys.executable).parent / "uvicorn"
        return [
            str(uvicorn if uvicorn.is_file() else shutil.which("uvicorn") or "uvicorn"),
            self.app_path,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            # The tree under test, imported from a neutral cwd so no stray .env is read.
            "--app-dir",
            str(REPO),
        ]

    def start(self) -> None:
        """Start the process and wait for the first 200 on ready_path; time it from Popen."""
        self.port = free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        with self.log_path.open("w") as log_file:
            started = time.perf_counter()
            self.process = start_process(
                self.command(),
                cwd=self.workdir,
                env={**self.env, "HOST": HOST, "PORT": str(self.port)},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
            )
        track(self.process)
        ready_url = f"{self.url}{self.ready_path}"
        try:
            self.ready_seconds = wait_ready(
                self.process,
                lambda: answers(ready_url, timeout=2),
                timeout=READY_TIMEOUT_SECONDS,
                interval=READY_POLL_SECONDS,
                since=started,
            )
        except ProcessExited:
            raise BenchError(
                f"{self.name}: server exited with status {self.process.returncode} before "
                f"it was ready; its log:\n{tail(self.log_path)}"
            ) from None
        except NotReady:
            raise BenchError(
                f"{self.name}: no 200 on {self.ready_path} within {READY_TIMEOUT_SECONDS:.0f} s; "
                f"its log:\n{tail(self.log_path)}"
            ) from None

    def worker(self) -> tuple[int, str]:
        """(pid of the process that runs the app, how it was found). With --workers 1 uvicorn
        serves in its own process; a process manager would fork, then the first child is it."""
        assert self.process is not None
        pid = self.process.pid
        children = _child_pids(pid)
        if children:
            return children[0], f"worker = child {children[0]} of {pid}"
        return pid, "worker = the server process itself (no child processes)"

    def memory(self) -> tuple[int | None, int | None, str]:
        """(VmRSS KiB, VmHWM KiB, how the worker was found) of the worker."""
        pid, note = self.worker()
        return _status_kib(pid, "VmRSS"), _status_kib(pid, "VmHWM"), note

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the worker (all its threads) has used so far."""
        pid, _ = self.worker()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # After the command name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None:
            stop_tracked(self.process)
