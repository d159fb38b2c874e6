"""Processes the tools start and must not leak: each in its own session (so its whole group can
be signalled), waited for until it is ready, stopped with SIGTERM and then SIGKILL, reaped."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

# Longer than s3gate's default drain (S3GATE_GRACEFUL_SHUTDOWN_SECONDS, 25 s).
STOP_TIMEOUT_SECONDS = 30.0

Output = int | IO[Any] | None  # what Popen takes as stdin, stdout or stderr


class ProcessExited(RuntimeError):
    """The process ended before it was ready."""


class NotReady(RuntimeError):
    """The process was still not ready when the time was up."""


def start_process(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: Output = None,
    stdout: Output = subprocess.PIPE,
    stderr: Output = subprocess.STDOUT,
) -> subprocess.Popen[str]:
    """Start `argv` in a session of its own (stop it with stop_process), its output read as
    UTF-8 text (undecodable bytes replaced); stderr merged into `stdout` unless told
    otherwise."""
    return subprocess.Popen(  # noqa: S603 - the callers' own argv, no shell
        argv,
        env=None if env is None else dict(env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send `signum` to the process's group (it was started in its own session); a group that
    has gone already is not an error. Until the process is reaped its pid, and so its group's
    id, cannot be another's: the group is signalled even when its leader has exited (a zombie
    holds the id), never once this process has reaped it."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop_process(
    process: subprocess.Popen[Any],
    timeout: float = STOP_TIMEOUT_SECONDS,
    *,
    signum: int = signal.SIGTERM,
) -> None:
    """SIGTERM (or `signum`: nginx's graceful stop is SIGQUIT) the process's group, so a server
    drains and a supervisor stops its own children; SIGKILL the group if the process outlives
    `timeout`; reaped either way. A leader that has exited but is not reaped yet still has
    its group signalled, so none of its members outlives it."""
    signal_group(process, signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process's group at once and reap the process."""
    signal_group(process, signal.SIGKILL)
    process.wait()


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1) -> bool:
    """Call `predicate` every `interval` seconds until it returns true (True) or `timeout`
    seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_ready(
    process: subprocess.Popen[Any],
    ready: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.1,
    since: float | None = None,
) -> float:
    """Poll `ready` until it is true; the seconds it took since `since` (a time.perf_counter()
    reading; default now). ProcessExited if the process ends first, NotReady after `timeout`
    seconds (since `since`). The process is left running either way."""
    started = time.perf_counter() if since is None else since
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise ProcessExited(f"exited with status {process.returncode} before it was ready")
        if ready():
            return time.perf_counter() - started
        time.sleep(interval)
    raise NotReady(f"not ready within {timeout:.0f} s")


def answers(url: str, *, timeout: float = 1.0) -> bool:
    """Whether GET `url` (plain http) answers 200 within `timeout` seconds. The standard
    library's client: no proxy settings apply, and a poll every 10 ms costs little."""
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def tail(path: Path, chars: int = 3000) -> str:
    """The last `chars` characters of the log at `path` ('' if it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
