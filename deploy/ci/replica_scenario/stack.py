"""The stack under test: a throwaway PostgreSQL database, SeaweedFS, the replicas' containers and
nginx in front of them. Everything it starts is stopped by the ExitStack it is given."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.devstack import EmbeddedS3, embedded_s3
from devkit.ports import free_ports
from devkit.postgres import throwaway_database
from devkit.processes import answers, start_process, stop_process, wait_for
from replica_scenario.common import (
    BUCKET,
    GRACE_SECONDS,
    HOST,
    PART_BYTES,
    REPO,
    ScenarioError,
    log,
)


@dataclass
class Replica:
    name: str
    container: str
    port: int
    workers: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


class Stack:
    def __init__(self, args: argparse.Namespace, run: Path, exits: contextlib.ExitStack) -> None:
        self.args = args
        self.run = run
        self.exits = exits
        self.docker_bin = args.docker
        self.image = args.image
        self.tag = secrets.token_hex(3)
        port_a, port_b, self.nginx_port = free_ports(3)
        self.a = Replica("A", f"s3gate-ci-a-{self.tag}", port_a, workers=2)
        self.b = Replica("B", f"s3gate-ci-b-{self.tag}", port_b, workers=1)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.env_file = run / "s3gate.env"
        self.nginx_log = run / "nginx-access.log"
        self.database_url = ""
        self.s3: EmbeddedS3 | None = None

    # docker

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.docker_bin, *args], capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise ScenarioError(f"docker {args[0]} failed: {result.stderr.strip()[-2000:]}")
        return result

    async def docker_async(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self.docker_bin, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise ScenarioError(f"docker {args[0]} failed: {err.decode().strip()[-2000:]}")
        return out.decode().strip()

    def one_off(self, *command: str) -> subprocess.CompletedProcess[str]:
        """`docker run --rm` of the image, as an operator would run a command."""
        return self.docker(
            "run",
            "--rm",
            "--network=host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--env-file",
            str(self.env_file),
            self.image,
            *command,
            check=False,
        )

    # services

    def start_database(self) -> None:
        name = f"s3gate_replicas_{self.tag}"
        self.database_url = self.exits.enter_context(
            throwaway_database(self.args.postgres_url, prefix="s3gate_replicas", name=name)
        )
        log(f"PostgreSQL database {name} (dropped at the end)")

    def start_s3(self) -> EmbeddedS3:
        s3 = self.exits.enter_context(
            embedded_s3(
                self.run / "s3", access_key="S3GATECI", secret_key=secrets.token_urlsafe(24)
            )
        )
        s3.client().create_bucket(Bucket=BUCKET)  # private: no ACL, no bucket policy
        self.s3 = s3
        log(f"SeaweedFS S3 at {s3.endpoint_url}, bucket {BUCKET}")
        return s3

    def write_env_file(self, s3: EmbeddedS3) -> None:
        settings = {
            "S3GATE_DATABASE_URL": self.database_url,
            "S3GATE_S3_BUCKET": BUCKET,
            "S3GATE_S3_ENDPOINT_URL": s3.endpoint_url,
            "S3GATE_S3_ADDRESSING_STYLE": "path",
            "S3GATE_S3_REGION": s3.region,
            "S3GATE_JWT_SECRET": self.jwt_secret,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
            "S3GATE_HOST": HOST,
            "S3GATE_PROXY_HEADERS": "true",
            "S3GATE_FORWARDED_ALLOW_IPS": HOST,
            "S3GATE_GRACEFUL_SHUTDOWN_SECONDS": str(GRACE_SECONDS),
            "S3GATE_MULTIPART_THRESHOLD": str(PART_BYTES),
            "S3GATE_PART_SIZE": str(PART_BYTES),
            # The users here are a load generator; the limiter has its own tests.
            "S3GATE_RATE_LIMIT_PER_MINUTE": "0",
            "S3GATE_CORS_ORIGINS": f"http://{HOST}:{self.nginx_port}",
        }
        # A file, not -e: secrets stay out of process listings. Owner-only.
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{key}={value}\n" for key, value in settings.items())

    def migrate(self) -> None:
        """Two `s3gate migrate` containers at once: they take turns, both succeed."""
        command = [
            self.docker_bin,
            "run",
            "--rm",
            "--network=host",
            "--read-only",
            "--env-file",
            str(self.env_file),
            self.image,
            "s3gate",
            "migrate",
        ]
        runs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        results = [(run.wait(timeout=120), run.communicate()[0]) for run in runs]
        for code, output in results:
            if code != 0:
                raise ScenarioError(f"s3gate migrate failed ({code}):\n{output[-2000:]}")
        log("2 concurrent `s3gate migrate` containers: both exited 0")

    def bucket_setup(self) -> None:
        result = self.one_off("s3gate", "bucket", "setup")
        for line in result.stdout.strip().splitlines():
            log(f"  bucket setup | {line}")
        if result.returncode != 0:
            raise ScenarioError(f"s3gate bucket setup failed:\n{result.stderr[-2000:]}")

    def start_replica(self, replica: Replica) -> None:
        self.docker(
            "run",
            "--detach",
            "--name",
            replica.container,
            "--network=host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--stop-timeout={GRACE_SECONDS + 5}",
            "--env-file",
            str(self.env_file),
            "--env",
            f"S3GATE_PORT={replica.port}",
            "--env",
            f"S3GATE_WORKERS={replica.workers}",
            self.image,
        )
        self.exits.callback(self.docker, "rm", "--force", replica.container, check=False)

    def wait_ready(self, replica: Replica, timeout: float = 60) -> float:
        started = time.monotonic()
        if not wait_for(lambda: answers(f"{replica.url}/readyz"), timeout=timeout):
            raise ScenarioError(f"replica {replica.name} not ready:\n{self.logs(replica)}")
        return time.monotonic() - started

    def logs(self, replica: Replica, lines: int = 40) -> str:
        result = self.docker("logs", "--tail", str(lines), replica.container, check=False)
        return result.stdout + result.stderr

    def start_nginx(self) -> None:
        template = (REPO / "deploy" / "nginx.conf").read_text()
        config = (
            template.replace("@RUN@", str(self.run))
            .replace("@PORT_A@", str(self.a.port))
            .replace("@PORT_B@", str(self.b.port))
            .replace("@LISTEN_PORT@", str(self.nginx_port))
        )
        config_path = self.run / "nginx.conf"
        config_path.write_text(config)
        temp = self.run / "nginx"
        for sub in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (temp / sub).mkdir(parents=True, exist_ok=True)
        extra = "daemon off;"
        if os.geteuid() == 0:
            # nginx's workers drop to nobody; they buffer large answers in the temp folders.
            extra += " user nobody nogroup;"
            self.run.chmod(0o711)
            for path in (temp, *temp.iterdir()):
                os.chown(path, 65534, 65534)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        base = [nginx, "-p", str(self.run), "-e", str(self.run / "nginx-error.log")]
        base += ["-c", str(config_path), "-g", extra]
        check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ScenarioError(f"nginx -t: {check.stderr}")
        process = start_process(base, stdout=None, stderr=subprocess.DEVNULL)
        # SIGQUIT is nginx's graceful stop: requests in flight finish, then it exits.
        self.exits.callback(stop_process, process, 10, signum=signal.SIGQUIT)
        if not wait_for(lambda: answers(f"{self.nginx_url}/healthz"), timeout=10):
            raise ScenarioError("nginx did not answer")
        log(f"nginx on {self.nginx_url} in front of {self.a.address}, {self.b.address}")

    @property
    def nginx_url(self) -> str:
        return f"http://{HOST}:{self.nginx_port}"

    def nginx_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.nginx_log.read_text().splitlines():
            entry = json.loads(line)
            entry["started"] = entry["time"] - entry["request_time"]
            entry["upstreams"] = [u.strip() for u in entry["upstream"].split(",") if u.strip()]
            entries.append(entry)
        return entries

    def served_by(
        self, replica: Replica, since: float, until: float = float("inf")
    ) -> list[dict[str, Any]]:
        """nginx's log entries of the requests started in (since, until) that `replica` answered."""
        return [
            entry
            for entry in self.nginx_entries()
            if since < entry["started"] < until and entry["upstreams"][-1:] == [replica.address]
        ]
