"""A real ClamAV clamd for the tests: Debian's /usr/sbin/clamd in the foreground with its own
config, on a free loopback port and a unix socket in a work dir, with a signature database
made there from the EICAR test file (no signature download). Recipe:
shared/REAL-COMPONENTS.md, "A malware scanner"."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devkit.ports import free_port
from devkit.processes import start_process, stop_process, tail, wait_ready

CLAMD = Path("/usr/sbin/clamd")
DEBIAN_PACKAGES = "clamav-daemon clamav"
# Ahead of clamd's own limits (MaxFileSize 100M, MaxScanSize 400M by default), so a stream
# over it is refused rather than scanned only in part.
STREAM_MAX_LENGTH = 25 * 1024 * 1024
# Loads one signature in well under a second; a loaded CI machine gets the margin.
READY_SECONDS = 60.0
# SIGTERM stops clamd in well under a second.
STOP_SECONDS = 10.0

# Split in two so that this source file is not itself flagged by a scanner on a developer's
# machine (many match the EICAR string anywhere in a file).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*"
# sigtool names a hash signature after the file it hashed; clamd adds .UNOFFICIAL to every
# signature from an unsigned database.
EICAR_SIGNATURE = "eicar.txt.UNOFFICIAL"

# No `User` line: clamd keeps the identity that started it (the recipe's `User root` would fail
# for anyone but root). Files and sockets live in the work dir, not in Debian's /var paths.
_CONFIG = """\
Foreground yes
DatabaseDirectory {workdir}/db
TemporaryDirectory {workdir}/tmp
TCPSocket {port}
TCPAddr 127.0.0.1
LocalSocket {socket}
LogFile {workdir}/clamd.log
PidFile {workdir}/clamd.pid
StreamMaxLength {stream_max_length}
"""


class ClamdUnavailable(RuntimeError):
    """clamd is not installed here, or it did not start."""


@dataclass(frozen=True)
class Clamd:
    """A running clamd: where it listens, what it detects, how long it took to answer."""

    tcp_url: str
    socket_url: str
    port: int
    socket_path: Path
    eicar: bytes
    eicar_signature: str
    stream_max_length: int
    started_seconds: float
    log: Path
    process: subprocess.Popen[str]


def clamd_installed() -> bool:
    return CLAMD.is_file() and shutil.which("sigtool") is not None


@contextlib.contextmanager
def running_clamd(workdir: Path, *, stream_max_length: int = STREAM_MAX_LENGTH) -> Iterator[Clamd]:
    """clamd on 127.0.0.1 and a unix socket in `workdir`, ready (PING answers PONG on both),
    stopped at the end. ClamdUnavailable when it is not installed or does not start."""
    if not clamd_installed():
        raise ClamdUnavailable(
            f"clamd is not installed (apt-get install -y --no-install-recommends {DEBIAN_PACKAGES})"
        )
    socket_path = workdir / "clamd.sock"
    if len(os.fsencode(socket_path)) > 107:
        raise ClamdUnavailable(f"{workdir} is too long a path for a unix socket in it")
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    _make_database(workdir)
    port = free_port()
    config = workdir / "clamd.conf"
    config.write_text(
        _CONFIG.format(
            workdir=workdir, port=port, socket=socket_path, stream_max_length=stream_max_length
        )
    )
    output = workdir / "clamd.out"
    with output.open("w") as log:
        process = start_process([str(CLAMD), "-c", str(config)], stdout=log, cwd=workdir)
    try:
        try:
            started = wait_ready(
                process,
                lambda: _pongs(("127.0.0.1", port)) and _pongs(str(socket_path)),
                timeout=READY_SECONDS,
            )
        except RuntimeError as exc:
            raise ClamdUnavailable(f"clamd did not start ({exc}): {tail(output)}") from None
        yield Clamd(
            tcp_url=f"clamav://127.0.0.1:{port}",
            socket_url=f"clamav://{socket_path}",
            port=port,
            socket_path=socket_path,
            eicar=EICAR,
            eicar_signature=EICAR_SIGNATURE,
            stream_max_length=stream_max_length,
            started_seconds=started,
            log=workdir / "clamd.log",
            process=process,
        )
    finally:
        stop_process(process, timeout=STOP_SECONDS)


def _make_database(workdir: Path) -> None:
    # Run where the file is, so that the signature's name is the bare file name.
    (workdir / "eicar.txt").write_bytes(EICAR)
    done = subprocess.run(
        ["sigtool", "--md5", "eicar.txt"],  # noqa: S607 - Debian's tool, on PATH with clamd
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise ClamdUnavailable(f"sigtool --md5 failed: {done.stderr.strip()[-500:]}")
    (workdir / "db" / "test.hdb").write_text(done.stdout)


def _pongs(address: tuple[str, int] | str) -> bool:
    """Whether clamd at `address` (TCP host and port, or a unix socket path) answers PING."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(b"zPING\0")
            return sock.recv(16) == b"PONG\0"
    except OSError:
        return False
