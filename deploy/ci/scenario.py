"""The replica scenario: two s3gate containers behind nginx; one is killed, the other drained.

deploy/ci/replicas.sh builds the image, starts dockerd and runs this with the venv's Python:

    DOCKER_HOST=unix:///... .venv/bin/python deploy/ci/scenario.py --image local/s3gate:ci

It makes a throwaway PostgreSQL database, starts SeaweedFS and nginx (deploy/nginx.conf),
migrates with two `s3gate migrate` containers at once, and starts replicas A (two workers) and
B (one worker) with --network=host, read-only. Users then loop through nginx: create, PUT real
bytes to the presigned URL, complete, download and compare, sometimes delete or abandon. Mid-run
B gets SIGKILL and is started again; later A gets SIGTERM while requests are in flight on it.
Afterwards every file the users saw complete is checked against the ledger and the bucket, the
counts are printed, and the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from app.auth import mint_token
from app.devstack import EmbeddedS3, embedded_s3, free_ports

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
BUCKET = "s3gate-replicas"
GRACE_SECONDS = 10  # S3GATE_GRACEFUL_SHUTDOWN_SECONDS in the containers
FAIL_TIMEOUT_SECONDS = 10  # nginx's fail_timeout in deploy/nginx.conf
PART_BYTES = 5 * 1024**2
BIG_FILE_BYTES = 12 * PART_BYTES  # `complete` reads it all to check the SHA-256: a long request
SLOW_BODY_SECONDS = 2.5


class ScenarioError(Exception):
    """The scenario could not be set up or run (as opposed to a check that failed)."""


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def log(message: str) -> None:
    print(f"scenario: {message}", file=sys.stderr, flush=True)


# --- what the clients saw ------------------------------------------------------------------------


@dataclass
class Call:
    """One request through nginx (or straight to a replica), as the client saw it."""

    request_id: str
    method: str
    route: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass
class Tally:
    calls: list[Call] = field(default_factory=list)
    s3: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    # file id -> (size, checksum) for every file a client saw become `available`
    completed: dict[str, tuple[int, str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    downloads_compared: int = 0
    # DELETEs that answered 404: nginx may have replayed them after the first replica had
    # already done the work and then died (checked against nginx's log at the end)
    delete_404s: list[Call] = field(default_factory=list)


class Client:
    """Calls the API with a request id per attempt; retries only what is safe to retry."""

    def __init__(self, api: httpx.AsyncClient, s3: httpx.AsyncClient, tally: Tally) -> None:
        self.api = api
        self.s3 = s3
        self.tally = tally

    async def call(
        self,
        method: str,
        url: str,
        route: str,
        token: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
    ) -> httpx.Response | None:
        """Retry (when `retry`) on 5xx or no answer: POST /uploads carries an Idempotency-Key
        and `complete` is idempotent; everything else the balancer must get right first time."""
        for attempt in range(5):
            request_id = uuid.uuid4().hex
            sent_headers = {
                "Authorization": f"Bearer {token}",
                "X-Request-ID": request_id,
                **(headers or {}),
            }
            started = time.time()
            response: httpx.Response | None = None
            error: str | None = None
            try:
                response = await self.api.request(method, url, json=body, headers=sent_headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            status = response.status_code if response is not None else None
            call = Call(request_id, method, route, started, time.time(), status, error)
            self.tally.calls.append(call)
            if not call.failed:
                return response
            if not retry:
                return None  # counted with the failed calls
            if attempt == 4:
                self.tally.problems.append(f"{route}: still failing after {attempt + 1} attempts")
                return None
            await asyncio.sleep(0.2 * (attempt + 1))
        return None

    async def put_bytes(self, upload: dict[str, Any], data: bytes) -> bool:
        response = await self.s3.put(upload["url"], content=data, headers=upload["headers"])
        self.tally.s3[f"PUT {response.status_code}"] += 1
        if response.status_code != 200:
            self.tally.problems.append(f"S3 PUT answered {response.status_code}")
        return response.status_code == 200


def expect(tally: Tally, response: httpx.Response | None, route: str, *codes: int) -> bool:
    if response is None:
        return False  # already counted as a failed call
    if response.status_code not in codes:
        tally.problems.append(f"{route}: {response.status_code} {response.text[:200]}")
        return False
    return True


async def user_loop(
    client: Client, name: str, token: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """create -> PUT -> complete -> download and compare -> sometimes delete; until told."""
    tally = client.tally
    number = 0
    while not stop.is_set():
        number += 1
        data = rng.randbytes(rng.randint(1, 256 * 1024))
        checksum = sha256_b64(data)
        body = {
            "filename": f"{name}-{number:05d}.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "checksum_sha256": checksum,
        }
        created = await client.call(
            "POST",
            "/uploads",
            "POST /uploads",
            token,
            body=body,
            headers={"Idempotency-Key": f"{name}-{number}"},
            retry=True,
        )
        if not expect(tally, created, "POST /uploads", 200, 201):
            continue
        assert created is not None
        file_id, upload = created.json()["file"]["id"], created.json()["upload"]
        if rng.random() < 0.08:
            abandoned = await client.call(
                "DELETE", f"/uploads/{file_id}", "DELETE /uploads/{id}", token
            )
            if abandoned is not None and abandoned.status_code == 404:
                tally.delete_404s.append(tally.calls[-1])
                tally.abandoned.add(file_id)
            elif expect(tally, abandoned, "DELETE /uploads/{id}", 204):
                tally.abandoned.add(file_id)
            continue
        if not await client.put_bytes(upload, data):
            continue
        done = await client.call(
            "POST", f"/uploads/{file_id}/complete", "POST /uploads/{id}/complete", token, retry=True
        )
        if not expect(tally, done, "POST /uploads/{id}/complete", 200):
            continue
        assert done is not None
        if done.json()["status"] != "available":
            tally.problems.append(f"complete: status {done.json()['status']}")
            continue
        tally.completed[file_id] = (len(data), checksum)
        link = await client.call("GET", f"/downloads/{file_id}", "GET /downloads/{id}", token)
        if expect(tally, link, "GET /downloads/{id}", 200):
            assert link is not None
            got = await client.s3.get(link.json()["url"])
            tally.s3[f"GET {got.status_code}"] += 1
            if got.content != data:
                tally.problems.append(f"download of {file_id}: bytes differ")
            tally.downloads_compared += 1
        if rng.random() < 0.2:
            listing = await client.call("GET", "/files?limit=20", "GET /files", token)
            expect(tally, listing, "GET /files", 200)
        if rng.random() < 0.3:
            gone = await client.call("DELETE", f"/files/{file_id}", "DELETE /files/{id}", token)
            if gone is not None and gone.status_code == 404:
                tally.delete_404s.append(tally.calls[-1])
                tally.deleted.add(file_id)
            elif expect(tally, gone, "DELETE /files/{id}", 204):
                tally.deleted.add(file_id)


# --- the stack -----------------------------------------------------------------------------------


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
        admin_url = make_url(self.args.postgres_url).set(drivername="postgresql")
        admin = admin_url.render_as_string(hide_password=False)
        name = f"s3gate_replicas_{self.tag}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self.exits.callback(drop)
        self.database_url = admin_url.set(database=name).render_as_string(hide_password=False)
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
        deadline = started + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{replica.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise ScenarioError(f"replica {replica.name} not ready:\n{self.logs(replica)}")

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
        process = subprocess.Popen(base, start_new_session=True, stderr=subprocess.DEVNULL)

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        self.exits.callback(stop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.nginx_url}/healthz", timeout=1).status_code == 200:
                    log(f"nginx on {self.nginx_url} in front of {self.a.address}, {self.b.address}")
                    return
            time.sleep(0.1)
        raise ScenarioError("nginx did not answer")

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


# --- the drain -----------------------------------------------------------------------------------


async def slow_create(replica: Replica, token: str, release: asyncio.Event) -> tuple[int, str]:
    """POST /uploads whose body arrives in two halves, the second once `release` is set."""
    body = json.dumps(
        {"filename": "slow.bin", "content_type": "application/octet-stream", "size": 10}
    ).encode()
    head = (
        f"POST /uploads HTTP/1.1\r\nHost: {replica.address}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(HOST, replica.port)
    try:
        writer.write(head + body[:8])
        await writer.drain()
        await release.wait()
        writer.write(body[8:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    payload = answer.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    return status, payload


async def big_upload(
    direct: httpx.AsyncClient, s3: httpx.AsyncClient, token: str, number: int
) -> tuple[str, bytes]:
    """A multipart upload with every part stored, ready for a long `complete`."""
    data = os.urandom(BIG_FILE_BYTES)
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "filename": f"big-{number}.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "checksum_sha256": sha256_b64(data),
    }
    created = await direct.post("/uploads", json=body, headers=auth)
    if created.status_code != 201:
        raise ScenarioError(f"big upload: {created.status_code} {created.text[:300]}")
    file_id, plan = created.json()["file"]["id"], created.json()["upload"]
    numbers = list(range(1, plan["part_count"] + 1))
    parts = await direct.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": numbers}, headers=auth
    )
    for part in parts.json()["parts"]:
        start = (part["part_number"] - 1) * plan["part_size"]
        chunk = data[start : start + plan["part_size"]]
        stored = await s3.put(part["url"], content=chunk, headers=part["headers"])
        if stored.status_code != 200:
            raise ScenarioError(f"big upload part: {stored.status_code} {stored.text[:300]}")
    return file_id, data


@dataclass
class DrainReport:
    in_flight: int = 0
    finished_ok: int = 0
    finished_after_term: int = 0
    exit_seconds: float = 0.0
    exit_code: int | None = None
    term_at: float = 0.0
    # the creates whose bodies straddled SIGTERM: pending files, abandoned afterwards
    pending: list[str] = field(default_factory=list)


async def drain(stack: Stack, tally: Tally, token: str, s3: httpx.AsyncClient) -> DrainReport:
    """SIGTERM replica A while requests are in flight on it (sent to it directly)."""
    replica = stack.a
    report = DrainReport()
    async with httpx.AsyncClient(base_url=replica.url, timeout=60) as direct:
        bigs = await asyncio.gather(*(big_upload(direct, s3, token, n) for n in range(3)))
        release = asyncio.Event()
        slow = [asyncio.create_task(slow_create(replica, token, release)) for _ in range(2)]

        async def complete(file_id: str) -> tuple[int, str, float]:
            answer = await direct.post(
                f"/uploads/{file_id}/complete", headers={"Authorization": f"Bearer {token}"}
            )
            return answer.status_code, answer.text, time.time()

        completes = [asyncio.create_task(complete(file_id)) for file_id, _ in bigs]
        await asyncio.sleep(0.3)
        # A completion that already answered was not in flight: on a quiet machine one may take
        # less than the 0.3 s above. Only those still open count, and at least one must be.
        open_completes = [not completing.done() for completing in completes]
        report.in_flight = len(slow) + sum(open_completes)
        report.term_at = time.time()
        await stack.docker_async("kill", "--signal", "TERM", replica.container)
        waiter = asyncio.create_task(stack.docker_async("wait", replica.container))
        await asyncio.sleep(SLOW_BODY_SECONDS)
        release.set()
        for (file_id, data), completing, was_open in zip(
            bigs, completes, open_completes, strict=True
        ):
            status, text, ended = await completing
            if status == 200 and json.loads(text)["status"] == "available":
                report.finished_ok += was_open
                tally.completed[file_id] = (len(data), sha256_b64(data))
            else:
                tally.problems.append(f"drain: complete in flight answered {status} {text[:200]}")
            report.finished_after_term += was_open and ended > report.term_at
        if not any(open_completes):
            tally.problems.append("drain: every complete answered before SIGTERM; none was tested")
        for creating in slow:
            status, payload = await creating
            if status == 201:
                report.finished_ok += 1
                report.finished_after_term += 1  # its body was sent after TERM
                report.pending.append(json.loads(payload)["file"]["id"])
            else:
                tally.problems.append(f"drain: slow create in flight answered {status}")
        report.exit_code = int(await waiter)
        report.exit_seconds = time.time() - report.term_at
    return report


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Timeline:
    traffic_started: float = 0.0
    kill_started: float = 0.0
    kill_done: float = 0.0
    restarted_ready: float = 0.0
    drain: DrainReport = field(default_factory=DrainReport)


async def traffic(stack: Stack, args: argparse.Namespace) -> tuple[Tally, Timeline]:
    tally, timeline = Tally(), Timeline()
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.users * 2, max_keepalive_connections=args.users)
    async with (
        httpx.AsyncClient(base_url=stack.nginx_url, timeout=60, limits=limits) as api,
        httpx.AsyncClient(timeout=60, limits=limits) as s3,
    ):
        client = Client(api, s3, tally)
        users = [
            asyncio.create_task(
                user_loop(
                    client,
                    f"user{n:02d}",
                    mint_token(stack.jwt_secret, f"user{n:02d}", ttl_seconds=3600),
                    stop,
                    random.Random(rng.random()),
                )
            )
            for n in range(args.users)
        ]
        timeline.traffic_started = time.time()
        try:
            await asyncio.sleep(args.steady_seconds)
            log(f"SIGKILL replica B ({stack.b.container})")
            timeline.kill_started = time.time()
            await stack.docker_async("kill", "--signal", "KILL", stack.b.container)
            timeline.kill_done = time.time()
            await asyncio.sleep(3)
            await stack.docker_async("start", stack.b.container)
            ready = await asyncio.to_thread(stack.wait_ready, stack.b)
            timeline.restarted_ready = time.time()
            log(f"replica B started again, ready after {ready:.1f} s")
            # nginx tries B again once fail_timeout has passed since its failure; then B serves
            # for a few seconds before the drain
            rejoin = max(timeline.kill_done + FAIL_TIMEOUT_SECONDS, timeline.restarted_ready) + 3
            await asyncio.sleep(max(rejoin - time.time(), 0))
            log(f"SIGTERM replica A ({stack.a.container}) with requests in flight on it")
            drain_token = mint_token(stack.jwt_secret, "drain", ttl_seconds=3600)
            timeline.drain = await drain(stack, tally, drain_token, s3)
            log(
                f"replica A exited {timeline.drain.exit_code} after "
                f"{timeline.drain.exit_seconds:.1f} s"
            )
            await asyncio.sleep(args.after_drain_seconds)
        finally:
            stop.set()
            await asyncio.gather(*users, return_exceptions=True)
        for user in users:
            if user.exception() is not None:
                tally.problems.append(f"a user loop crashed: {user.exception()!r}")
        # The creates that straddled the drain were never uploaded: abandon them.
        drain_token = mint_token(stack.jwt_secret, "drain", ttl_seconds=3600)
        for file_id in timeline.drain.pending:
            response = await api.delete(
                f"/uploads/{file_id}", headers={"Authorization": f"Bearer {drain_token}"}
            )
            if expect(tally, response, "DELETE /uploads/{id}", 204):
                tally.abandoned.add(file_id)
    return tally, timeline


# --- the checks ----------------------------------------------------------------------------------


@dataclass
class Checks:
    results: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        self.results.append((ok, message))
        print(f"  {'ok  ' if ok else 'FAIL'} {message}", flush=True)

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.results)


def classify(
    stack: Stack, tally: Tally, timeline: Timeline, entries: dict[str, dict[str, Any]]
) -> tuple[list[Call], list[str]]:
    """(tolerated, failures): a failed call is tolerated only when it is a POST nginx had sent
    to B and B died under it: nginx may not replay a POST it has sent."""
    tolerated, failures = [], []
    for call in tally.calls:
        if not call.failed:
            continue
        entry = entries.get(call.request_id)
        in_kill_window = (
            entry is not None
            and entry["started"] <= timeline.kill_done + 0.5
            and entry["time"] >= timeline.kill_started - 0.5
        )
        if (
            entry is not None
            and call.method == "POST"
            and entry["upstreams"] == [stack.b.address]
            and entry["upstream_status"] == "502"
            and in_kill_window
        ):
            tolerated.append(call)
        else:
            where = f"via {entry['upstream']}" if entry else "no nginx log entry"
            failures.append(f"{call.route}: {call.status or call.error} ({where})")
    return tolerated, failures


def verify(stack: Stack, tally: Tally, timeline: Timeline) -> bool:
    assert stack.s3 is not None
    log("checking what the clients saw against nginx's log, the ledger and the bucket")
    checks = Checks()
    entry_list = stack.nginx_entries()
    entries = {entry["request_id"]: entry for entry in entry_list}
    tolerated, failures = classify(stack, tally, timeline, entries)
    through_nginx = [c for c in tally.calls if c.request_id in entries]
    routes = Counter(c.route for c in tally.calls)
    rerouted = [e for e in entry_list if len(e["upstreams"]) > 1]

    print("\nrequests", flush=True)
    for route, count in sorted(routes.items()):
        print(f"  {count:7d}  {route}")
    print(f"  {len(tally.calls):7d}  API requests in all ({len(through_nginx)} through nginx)")
    print(f"  {sum(tally.s3.values()):7d}  S3 requests straight to the store: {dict(tally.s3)}")
    print(f"  {len(rerouted):7d}  passed by nginx to the other replica after a failure")
    print(f"  {tally.downloads_compared:7d}  downloads compared byte for byte")
    print("failures", flush=True)
    print(f"  {len(failures):7d}  that a retry-safe balancer could have rerouted")
    print(
        f"  {len(tolerated):7d}  POSTs in flight on the SIGKILLed replica (retried by the client)"
    )
    print(f"  {len(tally.problems):7d}  other problems (wrong status, bytes, S3 refusals)")
    for line in (failures + tally.problems)[:20]:
        print(f"           {line}")

    # a DELETE answered 404 is fine only as nginx's replay of one the killed replica had done
    unexplained_404s = [
        c for c in tally.delete_404s if len(entries.get(c.request_id, {}).get("upstreams", [])) < 2
    ]

    # kill and drain, from nginx's side
    drain = timeline.drain
    after_term = [e for e in entry_list if e["started"] >= drain.term_at + 1.0]
    on_draining = [e for e in after_term if e["upstreams"][-1:] == [stack.a.address]]
    b_after_restart = [
        e
        for e in entry_list
        if timeline.restarted_ready < e["started"] < drain.term_at
        and e["upstreams"][-1:] == [stack.b.address]
    ]
    health = stack.docker(
        "inspect", "--format", "{{.State.Health.Status}}", stack.b.container, check=False
    ).stdout.strip()

    # the ledger and the bucket
    with psycopg.connect(
        make_url(stack.database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    ) as conn:
        rows = {
            str(row[0]): (row[1], row[2], row[3])
            for row in conn.execute("SELECT id, status, size, object_key FROM files").fetchall()
        }
    objects: dict[str, int] = {}
    paginator = stack.s3.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            objects[item["Key"]] = item["Size"]
    statuses = Counter(status for status, _, _ in rows.values())
    live = {fid: v for fid, v in tally.completed.items() if fid not in tally.deleted}
    live_ok = [
        fid
        for fid, (size, _) in live.items()
        if fid in rows
        and rows[fid][0] == "available"
        and objects.get(rows[fid][2]) == size == rows[fid][1]
    ]
    available_keys = {key: size for status, size, key in rows.values() if status == "available"}
    available_without_object = [k for k, size in available_keys.items() if objects.get(k) != size]
    gone = tally.deleted | tally.abandoned
    gone_ok = [fid for fid in gone if fid in rows and rows[fid][0] == "deleted"]
    stray_objects = [key for key in objects if key not in available_keys]

    print("ledger and bucket", flush=True)
    print(f"  {len(rows):7d}  ledger rows: {dict(sorted(statuses.items()))}")
    print(f"  {len(objects):7d}  objects in the bucket")
    print(f"  {len(live):7d}  files the clients saw complete and did not delete")
    print(f"  {len(gone):7d}  files the clients deleted ({len(tally.deleted)}) or abandoned")
    t0 = timeline.traffic_started
    print(
        f"kill: B got SIGKILL at +{timeline.kill_started - t0:.1f} s, was ready again at "
        f"+{timeline.restarted_ready - t0:.1f} s and served {len(b_after_restart)} requests "
        "before the drain"
    )
    print(
        f"drain: A got SIGTERM at +{drain.term_at - t0:.1f} s with {drain.in_flight} "
        f"requests in flight on it, {drain.finished_ok} "
        f"finished OK ({drain.finished_after_term} after the signal); A exited "
        f"{drain.exit_code} after {drain.exit_seconds:.1f} s (grace {GRACE_SECONDS} s); "
        f"{len(after_term)} requests started later than 1 s after it, "
        f"{len(on_draining)} of them on A"
    )
    print("checks", flush=True)
    checks.check(
        not failures, f"no failed request a balancer could have rerouted ({len(failures)})"
    )
    checks.check(not tally.problems, f"no other problem ({len(tally.problems)})")
    checks.check(
        not unexplained_404s, f"every DELETE 404 was an nginx replay ({len(tally.delete_404s)})"
    )
    checks.check(len(tally.completed) > 100, f"real traffic: {len(tally.completed)} completed")
    checks.check(
        len(live_ok) == len(live),
        f"every live completed upload has an available row and its object "
        f"({len(live_ok)}/{len(live)})",
    )
    checks.check(
        not available_without_object,
        f"no available row without its object ({len(available_without_object)})",
    )
    checks.check(
        len(gone_ok) == len(gone), f"deleted and abandoned files are `deleted` ({len(gone_ok)})"
    )
    checks.check(not stray_objects, f"no object without an available row ({len(stray_objects)})")
    checks.check(statuses.get("pending", 0) == 0, "no upload left pending")
    checks.check(len(b_after_restart) > 0, "the restarted replica took traffic before the drain")
    checks.check(
        drain.finished_ok == drain.in_flight and drain.finished_after_term == drain.in_flight,
        f"requests in flight at SIGTERM finished ({drain.finished_ok}/{drain.in_flight})",
    )
    checks.check(
        not on_draining and len(after_term) > 0,
        f"new requests after SIGTERM went to B ({len(after_term) - len(on_draining)}"
        f"/{len(after_term)})",
    )
    checks.check(
        drain.exit_code == 0 and drain.exit_seconds < GRACE_SECONDS,
        f"A exited cleanly within the grace period ({drain.exit_seconds:.1f} s)",
    )
    checks.check(health == "healthy", f"Docker's HEALTHCHECK reports B {health!r}")
    return checks.passed


@contextlib.contextmanager
def run_dir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="s3gate-scenario-") as tmp:
        yield Path(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--image", default="local/s3gate:ci")
    parser.add_argument("--docker", default=shutil.which("docker") or "docker")
    parser.add_argument("--run-dir", help="where logs and state go (default: a temp folder)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "S3GATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a server where the scenario may create (and drop) a database",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--steady-seconds", type=float, default=6)
    parser.add_argument("--after-drain-seconds", type=float, default=4)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()

    started = time.monotonic()
    with run_dir(args.run_dir) as run, contextlib.ExitStack() as exits:
        stack = Stack(args, run, exits)
        try:
            stack.start_database()
            s3 = stack.start_s3()
            stack.write_env_file(s3)
            stack.migrate()
            stack.bucket_setup()
            for replica in (stack.a, stack.b):
                stack.start_replica(replica)
            for replica in (stack.a, stack.b):
                seconds = stack.wait_ready(replica)
                log(
                    f"replica {replica.name} ({replica.workers} worker(s), read-only) ready on "
                    f"{replica.address} after {seconds:.1f} s"
                )
            stack.start_nginx()
            setup_seconds = time.monotonic() - started
            log(f"{args.users} users through nginx")
            tally, timeline = asyncio.run(traffic(stack, args))
            reaped = stack.one_off("s3gate", "reap")
            log(f"s3gate reap: {reaped.stdout.strip()} (exit {reaped.returncode})")
            traffic_seconds = time.monotonic() - started - setup_seconds
            passed = verify(stack, tally, timeline) and reaped.returncode == 0
        except ScenarioError as exc:
            log(f"error: {exc}")
            return 1
        finally:
            for replica in (stack.a, stack.b):
                (run / f"{replica.name}.log").write_text(stack.logs(replica, lines=100000))
        if not passed:
            for replica in (stack.a, stack.b):
                print(f"--- last lines of replica {replica.name}'s log", flush=True)
                print(stack.logs(replica, lines=30), flush=True)
            errors = run / "nginx-error.log"
            if errors.exists():
                print("--- last lines of nginx's error log", flush=True)
                print("\n".join(errors.read_text().splitlines()[-30:]), flush=True)
    print(
        f"scenario: setup {setup_seconds:.0f} s, traffic and checks "
        f"{traffic_seconds:.0f} s: {'passed' if passed else 'FAILED'}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
