"""The second and third real S3 servers of the store-contract tests: LocalStack (host mode, its
own venv) and Ceph RADOS Gateway (Debian's packages; one mon, one memstore OSD), each started in
a temp dir on free ports and stopped at the end. Recipes: shared/REAL-COMPONENTS.md.

Each yields an `EmbeddedS3` (endpoint, keys, region, a path-style client), as SeaweedFS does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from app.devstack import EmbeddedS3
from devkit.ports import free_port, free_ports
from devkit.processes import answers, start_process, stop_process, tail, wait_ready

LOCALSTACK_VENV = Path(os.environ.get("S3GATE_TEST_LOCALSTACK_VENV", "/opt/s3gate-localstack"))
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
READY_SECONDS = 90.0


class StoreUnavailable(RuntimeError):
    """The store's software is not installed here, or it did not start."""


def localstack_installed() -> bool:
    return (LOCALSTACK_VENV / "bin" / "python").is_file()


def ceph_installed() -> bool:
    return all(shutil.which(name) for name in CEPH_BINARIES)


@contextlib.contextmanager
def localstack(workdir: Path) -> Iterator[EmbeddedS3]:
    """LocalStack 4.13.1's S3, strict about presigned URLs (keys test/test)."""
    if not localstack_installed():
        raise StoreUnavailable(f"LocalStack is not installed in {LOCALSTACK_VENV}")
    port = free_port()
    (workdir / "fs").mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "SERVICES": "s3",
        "EAGER_SERVICE_LOADING": "1",
        "GATEWAY_SERVER": "hypercorn",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(workdir / "fs"),
        "TMPDIR": str(workdir / "tmp"),
    }
    endpoint = f"http://127.0.0.1:{port}"
    with (workdir / "localstack.log").open("w") as log:
        process = start_process(
            [str(LOCALSTACK_VENV / "bin" / "python"), "-m", "localstack.runtime.main"],
            env=env,
            stdout=log,
        )
    try:
        try:
            wait_ready(process, lambda: _localstack_s3_up(endpoint), timeout=READY_SECONDS)
        except RuntimeError as exc:
            raise StoreUnavailable(
                f"LocalStack did not start ({exc}): {tail(workdir / 'localstack.log')}"
            ) from None
        yield EmbeddedS3(endpoint, "test", "test")
    finally:
        stop_process(process, timeout=20)


def _localstack_s3_up(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=1) as answer:  # noqa: S310
            state = json.load(answer).get("services", {}).get("s3")
    except (OSError, ValueError):
        return False
    return state in ("available", "running")


_CEPH_CONF = """\
[global]
fsid = {fsid}
mon_host = [v1:127.0.0.1:{mon_port}]
public_addr = 127.0.0.1
ms_bind_msgr2 = false
ms_bind_ipv6 = false
ms_bind_port_min = {port_min}
ms_bind_port_max = {port_max}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
log_file = {d}/log/$name.log
pid_file = {d}/run/$name.pid
mon_data = {d}/mon/$cluster-$id
osd_data = {d}/osd/$cluster-$id
keyring = {d}/keyring
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_crush_update_on_start = false
osd_class_update_on_start = false
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {d}/rgw
rgw_enable_usage_log = false
"""


def _run(argv: list[str], workdir: Path) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv of Ceph's own tools
        argv, capture_output=True, text=True, timeout=60, cwd=workdir, check=False
    )
    if done.returncode != 0:
        raise StoreUnavailable(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def ceph_rgw(workdir: Path) -> Iterator[EmbeddedS3]:
    """Ceph RADOS Gateway 16 on a one-OSD memstore cluster (auth between daemons off)."""
    if not ceph_installed():
        raise StoreUnavailable("Ceph (radosgw, ceph-mon, ceph-osd) is not installed")
    for name in ("mon", "osd", "run", "log", "rgw"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    mon_port, rgw_port, port_min = (*free_ports(2), _free_range(41))
    conf = workdir / "ceph.conf"
    fsid = str(uuid.uuid4())
    conf.write_text(
        _CEPH_CONF.format(
            fsid=fsid,
            mon_port=mon_port,
            port_min=port_min,
            port_max=port_min + 40,
            d=workdir,
            rgw_port=rgw_port,
        )
    )
    c = ["-c", str(conf)]
    _run(
        [
            "monmaptool",
            "--create",
            "--addv",
            "a",
            f"[v1:127.0.0.1:{mon_port}]",
            "--fsid",
            fsid,
            str(workdir / "monmap"),
        ],
        workdir,
    )
    _run(
        [
            "ceph-authtool",
            "--create-keyring",
            str(workdir / "keyring"),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ],
        workdir,
    )
    _run(
        [
            "ceph-mon",
            *c,
            "--mkfs",
            "-i",
            "a",
            "--monmap",
            str(workdir / "monmap"),
            "--keyring",
            str(workdir / "keyring"),
        ],
        workdir,
    )
    started: list[subprocess.Popen[str]] = []
    logs = []

    def daemon(name: str, argv: list[str]) -> subprocess.Popen[str]:
        log = (workdir / "log" / f"{name}.out").open("w")
        logs.append(log)
        process = start_process(argv, stdout=log, cwd=workdir)
        started.append(process)
        return process

    try:
        daemon("mon", ["ceph-mon", *c, "-f", "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        osd_id = _run(["ceph", *c, "--connect-timeout", "20", "osd", "new", osd_uuid], workdir)
        (workdir / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
        _run(
            [
                "ceph",
                *c,
                "osd",
                "crush",
                "add",
                f"osd.{osd_id}",
                "1.0",
                "host=localhost",
                "root=default",
            ],
            workdir,
        )
        _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], workdir)
        daemon("osd", ["ceph-osd", *c, "-f", "-i", osd_id])
        rgw = daemon("rgw", ["radosgw", *c, "-f", "-n", "client.rgw.a"])
        endpoint = f"http://127.0.0.1:{rgw_port}"
        try:
            wait_ready(rgw, lambda: answers(endpoint + "/"), timeout=READY_SECONDS)
        except RuntimeError as exc:
            raise StoreUnavailable(
                f"radosgw did not start ({exc}): {tail(workdir / 'log' / 'rgw.out')}"
            ) from None
        access_key = "S3GATE" + secrets.token_hex(6).upper()
        secret_key = secrets.token_urlsafe(30)
        _run(
            [
                "radosgw-admin",
                *c,
                "user",
                "create",
                "--uid",
                "s3gate",
                "--display-name",
                "s3gate",
                "--access-key",
                access_key,
                "--secret-key",
                secret_key,
            ],
            workdir,
        )
        yield EmbeddedS3(endpoint, access_key, secret_key)
    finally:
        for process in reversed(started):  # rgw, osd, mon
            stop_process(process, timeout=20)
        for log in logs:
            log.close()


def _free_range(size: int) -> int:
    """The first port of `size` consecutive ports free right now (Ceph binds within a range)."""
    for _ in range(50):
        start = 20000 + secrets.randbelow(30000)
        ports = range(start, start + size)
        if all(_port_free(p) for p in ports):
            return start
    raise StoreUnavailable("no free port range for Ceph")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
