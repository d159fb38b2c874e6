"""s3gate's benchmark harness: `.venv/bin/python -m bench.run [--quick]` (see bench/README.md).

Starts one embedded SeaweedFS, s3gate (one uvicorn worker per ledger backend, each its own
process, started as production starts it: JSON access log on, rate limits off) and the peer (the
seeds' design in Node: Express + jsonwebtoken + the AWS SDK presigner, bench/peers/express),
drives each with wrk from a separate process, and prints one table of req/s, p50 and p99 with
the ratio of each s3gate route to the baseline, that server's own `GET /healthz`, and of the
upload path to the peer's, all measured in the same run. Then RSS per worker, time to ready, a
signer micro-benchmark and the issue's targets (PASS/MISS, informational only).

Exit status: 0 when everything ran (whatever the timings), 1 when something broke (a server
did not start, a load run had errors, preparation failed), 2 when wrk is missing or the
arguments are wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

# Imported once at start-up: the in-process signer benchmark then measures the same tree as
# the first server, even if app/ is edited while the bench runs.
from app.auth import mint_token
from app.config import Settings, load_settings
from app.devstack import EmbeddedS3, embedded_s3, stop_process_group
from app.filenames import DOWNLOAD_CACHE_CONTROL
from app.main import create_app
from app.migrate import run_migrations
from app.signer import Signer

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BUCKET = "s3gate-bench"
OWNER = "bench-user"
FILE_SIZE = 1024  # bytes declared by POST /uploads and stored for the prepared files
JWT_SECRET_CHARS = 48
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
READY_POLL_SECONDS = 0.01
READY_TIMEOUT_SECONDS = 60.0
WRK_TIMEOUT = "10s"  # a request slower than this counts as an error (wrk's default is 2 s)
PREPARE_CONCURRENCY = 16
MAX_COMPLETE_IDS = 40_000

BASELINE_LABEL = "GET /healthz (baseline)"
PEER_UPLOADS_LABEL = "POST /uploads (JWT + presign)"
PEER = "peer"
PEER_DIR = BENCH_DIR / "peers" / "express"
UPLOADS_LABEL = "POST /uploads"
DOWNLOADS_LABEL = "GET /downloads/{id}"
COMPLETE_LABEL = "POST /uploads/{id}/complete"


class BenchError(RuntimeError):
    """Something broke (as opposed to a slow result): the run exits 1."""


# --- processes ------------------------------------------------------------------------------

_LIVE: list[subprocess.Popen[bytes]] = []


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    stop_process_group(process)
    if process in _LIVE:
        _LIVE.remove(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_LIVE):
        _stop_process(process)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


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
    process: subprocess.Popen[bytes] | None = None
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
        self.port = _free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        with self.log_path.open("wb") as log_file:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env={**self.env, "HOST": HOST, "PORT": str(self.port)},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.append(self.process)
        deadline = started + READY_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name}: server exited with status {self.process.returncode} before "
                    f"it was ready; its log:\n{_tail(self.log_path)}"
                )
            if self._answers_200():
                self.ready_seconds = time.perf_counter() - started
                return
            time.sleep(READY_POLL_SECONDS)
        raise BenchError(
            f"{self.name}: no 200 on {self.ready_path} within {READY_TIMEOUT_SECONDS:.0f} s; "
            f"its log:\n{_tail(self.log_path)}"
        )

    def _answers_200(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            conn.request("GET", self.ready_path)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

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
            _stop_process(self.process)


# --- wrk ------------------------------------------------------------------------------------


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
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
        start_new_session=True,
    )
    _LIVE.append(process)
    try:
        out, err = process.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        _stop_process(process)
        raise BenchError(f"wrk against {server.name} {label} did not finish") from None
    finally:
        if process in _LIVE:
            _LIVE.remove(process)
    wall = time.perf_counter() - wall_before
    cpu_after = server.cpu_seconds()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(
            f"wrk failed ({process.returncode}) against {server.name} {label}:\n"
            f"{text[-1500:]}{err.decode(errors='replace')[-1500:]}"
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


# --- preparing files through the API --------------------------------------------------------


def _file_bytes() -> bytes:
    line = b"s3gate bench: plain text that the completion check sniffs as text\n"
    return (line * (FILE_SIZE // len(line) + 1))[:FILE_SIZE]


async def _prepare(base_url: str, token: str, count: int, *, complete: bool) -> list[str]:
    """Create `count` files via the API and PUT their bytes as a client would; complete them
    too when `complete`. Returns the file ids (in creation order)."""
    data = _file_bytes()
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    body = {
        "filename": "prepared.txt",
        "content_type": "text/plain",
        "size": len(data),
        "checksum_sha256": checksum,
    }
    ids: list[str | None] = [None] * count
    counter = iter(range(count))
    headers = {"Authorization": f"Bearer {token}"}

    async def one(api: httpx.AsyncClient, s3: httpx.AsyncClient, index: int) -> None:
        created = await api.post("/uploads", json=body)
        if created.status_code != 201:
            raise BenchError(f"POST /uploads answered {created.status_code}: {created.text}")
        payload = created.json()
        upload = payload["upload"]
        put = await s3.request(
            upload["method"], upload["url"], content=data, headers=upload["headers"]
        )
        if put.status_code != 200:
            raise BenchError(f"PUT to the presigned URL answered {put.status_code}: {put.text}")
        file_id: str = payload["file"]["id"]
        if complete:
            done = await api.post(f"/uploads/{file_id}/complete")
            if done.status_code != 200 or done.json().get("status") != "available":
                raise BenchError(f"complete answered {done.status_code}: {done.text}")
        ids[index] = file_id

    async def worker(api: httpx.AsyncClient, s3: httpx.AsyncClient) -> None:
        for index in counter:
            await one(api, s3, index)

    limits = httpx.Limits(max_connections=PREPARE_CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as api,
        httpx.AsyncClient(timeout=30, limits=limits) as s3,
    ):
        await asyncio.gather(*(worker(api, s3) for _ in range(PREPARE_CONCURRENCY)))
    return [file_id for file_id in ids if file_id is not None]


def prepare_ids(server: Server, token: str, count: int, path: Path, *, complete: bool) -> Path:
    try:
        ids = asyncio.run(_prepare(server.url, token, count, complete=complete))
    except httpx.HTTPError as exc:
        raise BenchError(f"{server.name}: preparing files failed: {exc!r}") from exc
    if len(ids) != count:
        raise BenchError(f"{server.name}: prepared {len(ids)} of {count} files")
    path.write_text("".join(f"{file_id}\n" for file_id in ids))
    return path


# --- databases ------------------------------------------------------------------------------


def _postgres_admin_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A throwaway database on admin_url's server (None if unreachable); dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    try:
        admin = psycopg.connect(_postgres_admin_url(admin_url), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"postgres: not reachable ({type(exc).__name__}); skipping that backend")
        yield None
        return
    name = f"s3gate_bench_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with psycopg.connect(_postgres_admin_url(admin_url), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            print(f"postgres: could not drop {name} ({type(exc).__name__}); drop it by hand")


# --- the signer micro-benchmark -------------------------------------------------------------


@dataclasses.dataclass
class SignerResult:
    iterations: int
    s3gate_put_us: float
    s3gate_get_us: float
    boto3_put_us: float
    boto3_get_us: float
    hmac_chain_us: float
    how_built: str


def _per_call_us(fn: Callable[[], object], iterations: int) -> float:
    fn()  # warm caches (botocore loads its models on first use)
    best = min(timeit.repeat(fn, number=iterations, repeat=3))
    return best / iterations * 1e6


def _bare_hmac_chain(secret: str, region: str) -> Callable[[], str]:
    """The irreducible SigV4 work for one URL: derive the signing key (4 HMACs), hash the
    canonical request (1 SHA-256) and sign the string to sign (1 HMAC)."""
    amz_date, date = "20260101T000000Z", "20260101"
    scope = f"{date}/{region}/s3/aws4_request"
    canonical = (
        "PUT\n/s3gate-bench/uploads/bench-user/0190c1de-0000-7000-8000-000000000000\n"
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=S3GATEBENCH%2F"
        + scope.replace("/", "%2F")
        + "&X-Amz-Date="
        + amz_date
        + "&X-Amz-Expires=900"
        "&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"
        "%3Bx-amz-checksum-sha256\n"
        "content-length:1024\ncontent-type:text/plain\nhost:127.0.0.1:8333\nif-none-match:*\n"
        "x-amz-checksum-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
        "content-length;content-type;host;if-none-match;x-amz-checksum-sha256\nUNSIGNED-PAYLOAD"
    ).encode()
    key = ("AWS4" + secret).encode()

    def chain() -> str:
        k = hmac.digest(key, date.encode(), "sha256")
        k = hmac.digest(k, region.encode(), "sha256")
        k = hmac.digest(k, b"s3", "sha256")
        k = hmac.digest(k, b"aws4_request", "sha256")
        digest = hashlib.sha256(canonical).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode()
        return hmac.new(k, to_sign, hashlib.sha256).hexdigest()

    return chain


async def _signer_from_lifespan(settings: Any, iterations: int) -> SignerResult:
    """Time the Signer exactly as the app builds it: run create_app's lifespan (which calls
    app.lifespan.s3_clients and Signer(...) however the tree does that today) and take the
    Signer the service holds, so constructor changes and S3GATE_SIGNER are followed."""
    import boto3
    from botocore.config import Config

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        signer = _find_signer(app.state.s3gate)
        engine = getattr(settings, "signer", None)
        how = "the app's own, built by its lifespan" + (
            f", S3GATE_SIGNER={engine}" if engine is not None else ""
        )

        key = f"{settings.s3_key_prefix}{OWNER}/0190c1de-0000-7000-8000-000000000000"
        checksum = base64.b64encode(hashlib.sha256(_file_bytes()).digest()).decode()
        disposition = "attachment; filename=\"report.txt\"; filename*=UTF-8''report.txt"
        put_ttl, get_ttl = settings.upload_url_ttl_seconds, settings.download_url_ttl_seconds

        def s3gate_put() -> object:
            return signer.presign_put(
                key,
                content_type="text/plain",
                content_length=FILE_SIZE,
                checksum_sha256=checksum,
                ttl_seconds=put_ttl,
            )

        def s3gate_get() -> object:
            return signer.presign_get(
                key,
                response_content_type="text/plain",
                response_content_disposition=disposition,
                response_cache_control=DOWNLOAD_CACHE_CONTROL,
                ttl_seconds=get_ttl,
            )

        # A plain boto3 client with the same endpoint, region, addressing and checksum policy.
        client = boto3.session.Session(region_name=settings.s3_region).client(
            "s3",
            endpoint_url=settings.signing_endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                request_checksum_calculation="when_required",
            ),
        )
        put_params = {
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ContentType": "text/plain",
            "ContentLength": FILE_SIZE,
            "ChecksumSHA256": checksum,
            "IfNoneMatch": "*",
        }
        get_params = {
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ResponseContentType": "text/plain",
            "ResponseContentDisposition": disposition,
            "ResponseCacheControl": DOWNLOAD_CACHE_CONTROL,
        }

        def boto3_put() -> object:
            return client.generate_presigned_url("put_object", Params=put_params, ExpiresIn=put_ttl)

        def boto3_get() -> object:
            return client.generate_presigned_url("get_object", Params=get_params, ExpiresIn=get_ttl)

        for name, ours, theirs in (
            ("PUT", s3gate_put(), boto3_put()),
            ("GET", s3gate_get(), boto3_get()),
        ):
            if _signed_parts(getattr(ours, "url", "")) != _signed_parts(str(theirs)):
                raise BenchError(
                    f"s3gate's and boto3's {name} URLs sign different things; "
                    "the comparison would not be like for like"
                )
        secret = os.environ["AWS_SECRET_ACCESS_KEY"]
        result = SignerResult(
            iterations=iterations,
            s3gate_put_us=_per_call_us(s3gate_put, iterations),
            s3gate_get_us=_per_call_us(s3gate_get, iterations),
            boto3_put_us=_per_call_us(boto3_put, iterations),
            boto3_get_us=_per_call_us(boto3_get, iterations),
            hmac_chain_us=_per_call_us(_bare_hmac_chain(secret, settings.s3_region), iterations),
            how_built=how,
        )
        client.close()
        return result


def _find_signer(state: Any) -> Signer:
    """The Signer inside the app's state: on the service, or one attribute further down."""
    seen: list[Any] = [state]
    for _depth in range(3):
        found: list[Any] = []
        for holder in seen:
            fields = getattr(holder, "__dict__", None) or {
                name: getattr(holder, name)
                for name in getattr(type(holder), "__slots__", ())
                if hasattr(holder, name)
            }
            for value in fields.values():
                if isinstance(value, Signer):
                    return value
                if not isinstance(value, str | int | float | bool | bytes | type(None)):
                    found.append(value)
        seen = found
    raise BenchError("no app.signer.Signer found in app.state.s3gate after the lifespan ran")


def _signed_parts(url: str) -> tuple[str, str, list[str]]:
    """(path, signed headers, query parameter names): what two presigned URLs for the same
    request must agree on; date, signature and parameter order may differ."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    return parts.path, query.get("X-Amz-SignedHeaders", [""])[0], sorted(query)


def signer_benchmark(iterations: int) -> SignerResult:
    """Settings come from this process's environment, which main() set like the servers'."""
    return asyncio.run(_signer_from_lifespan(load_settings(Settings), iterations))


# --- the run --------------------------------------------------------------------------------


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


def _clean_environment() -> dict[str, str]:
    """Our environment without the caller's S3GATE_/AWS_ settings (the bench sets its own)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_")
        and not (
            name.startswith("S3GATE_") and not name.startswith(("S3GATE_BENCH_", "S3GATE_TEST_"))
        )
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def _s3gate_env(
    base: dict[str, str], s3: EmbeddedS3, jwt_secret: str, database_url: str
) -> dict[str, str]:
    return {
        **base,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "S3GATE_S3_BUCKET": BUCKET,
        "S3GATE_S3_ENDPOINT_URL": s3.endpoint_url,
        "S3GATE_S3_REGION": s3.region,
        "S3GATE_S3_ADDRESSING_STYLE": "path",
        "S3GATE_JWT_SECRET": jwt_secret,
        "S3GATE_DATABASE_URL": database_url,
        # As deployed: one JSON access line per request (to the server's log file here).
        "S3GATE_LOG_LEVEL": "info",
        "S3GATE_LOG_FORMAT": "json",
        # One owner drives the whole load; the issue measures with rate limits off.
        "S3GATE_RATE_LIMIT_PER_MINUTE": "0",
    }


@dataclasses.dataclass
class Plan:
    duration: int
    warmup: int
    connections: int
    threads: int
    download_files: int
    complete_probe_ids: int  # prepared for a short probe run that sizes the real one (0 = none)
    complete_ids: int  # prepared without a probe (quick mode)
    signer_iterations: int


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
        sent = client.put(upload["url"], content=_file_bytes(), headers=upload["headers"])
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


# --- output ---------------------------------------------------------------------------------


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


def _load_average() -> str:
    """The 1-minute load average: well above 0 before the bench starts means another process
    competes for the cores and the numbers are suspect."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def _tree_line() -> str:
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


def _json_report(report: Report, plan: Plan) -> dict[str, Any]:
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


# --- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every part for about a second (CI: proves the harness works)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=None,
        help="seconds per load run (default 10; 1 with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="seconds of warm-up per endpoint (default 1; 0 with --quick)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="concurrent connections (default 64)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: the other core is the server's)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="ledger backends to run (default sqlite,postgres)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("S3GATE_BENCH_POSTGRES_URL")
        or os.environ.get("S3GATE_TEST_POSTGRES_URL")
        or POSTGRES_DEFAULT_URL,
        help="admin URL of a PostgreSQL server; a throwaway database is created and dropped",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results as JSON to this file"
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=None,
        help="seconds of sustained uploads on a fresh SQLite ledger, sampling its WAL "
        "(default 30; 2 with --quick; 0 skips it)",
    )
    return parser


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"sqlite", "postgres"})
    if unknown:
        print(f"bench: unknown backend(s) {unknown}; use sqlite and/or postgres", file=sys.stderr)
        return 2
    if args.connections < args.threads or args.threads < 1:
        print("bench: --connections must be >= --threads >= 1", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    duration = args.duration if args.duration is not None else (1 if args.quick else 10)
    if args.sustained is None:
        args.sustained = 2 if args.quick else 30
    plan = Plan(
        duration=max(1, duration),
        warmup=max(0, args.warmup if args.warmup is not None else (0 if args.quick else 1)),
        connections=args.connections,
        threads=args.threads,
        download_files=20 if args.quick else 50,
        complete_probe_ids=0 if args.quick else 600,
        complete_ids=300,
        signer_iterations=200 if args.quick else 2000,
    )
    # SIGTERM unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    report = Report(tree=_tree_line(), load_average=_load_average())
    base_env = _clean_environment()
    # The signer benchmark runs in this process: it sees the same variables as the servers.
    os.environ.clear()
    os.environ.update(base_env)

    with (
        tempfile.TemporaryDirectory(prefix="s3gate-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        print(f"bench: starting SeaweedFS in {workdir} ...", flush=True)
        s3 = stack.enter_context(
            embedded_s3(
                workdir / "s3", access_key="S3GATEBENCH", secret_key=secrets.token_urlsafe(24)
            )
        )
        s3.client().create_bucket(Bucket=BUCKET)
        jwt_secret = secrets.token_urlsafe(JWT_SECRET_CHARS)
        token = mint_token(jwt_secret, OWNER, ttl_seconds=6 * 3600)
        sqlite_url = f"sqlite:///{workdir / 'ledger.db'}"
        signer_env = _s3gate_env(base_env, s3, jwt_secret, sqlite_url)
        os.environ.update(signer_env)

        try:
            print("bench: the peer (Express + jsonwebtoken + AWS SDK presigner) ...", flush=True)
            bench_peer(report, plan, signer_env, token, workdir)
        except Exception as exc:  # broken, not slow: recorded, the other parts still run
            report.problems.append(f"peer: {_describe(exc)}")

        for backend in backends:
            try:
                url = (
                    sqlite_url
                    if backend == "sqlite"
                    else stack.enter_context(postgres_database(args.postgres_url))
                )
                if url is None:
                    report.notes.append("postgres: server not reachable; backend skipped")
                    continue
                print(f"bench: s3gate on {backend} ...", flush=True)
                run_migrations(url)
                env = _s3gate_env(base_env, s3, jwt_secret, url)
                bench_s3gate(report, plan, backend, env, token, workdir)
            except Exception as exc:  # broken, not slow: recorded, the other parts still run
                report.problems.append(f"{backend}: {_describe(exc)}")

        if "sqlite" in backends and args.sustained:
            print(f"bench: sustained {args.sustained} s of uploads on SQLite ...", flush=True)
            try:
                env = _s3gate_env(base_env, s3, jwt_secret, sqlite_url)
                bench_sustained_sqlite(report, plan, env, token, workdir, args.sustained)
            except Exception as exc:  # broken, not slow
                report.problems.append(f"sustained sqlite: {_describe(exc)}")

        print("bench: signer micro-benchmark ...", flush=True)
        try:
            report.signer = signer_benchmark(plan.signer_iterations)
        except Exception as exc:  # broken, not slow
            report.problems.append(f"signer benchmark: {_describe(exc)}")

    for load in report.loads:
        if load.error_count:
            report.problems.append(f"{load.server} {load.label}: {load.error_count} error(s)")
    print_report(report, plan, started)
    if args.json is not None:
        args.json.write_text(json.dumps(_json_report(report, plan), indent=2) + "\n")
    if report.problems:
        print("\nbench: FAILED", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
