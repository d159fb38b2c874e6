"""s3gate installed from its wheel, as a user installs it: no source checkout anywhere near."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from app.devstack import EmbeddedS3
from devkit.ports import free_port
from devkit.processes import answers, start_process, stop_process
from tests.support import (
    run_s3gate,
    s3gate_env,
    serve_api,
    sql_engine,
    tiny_png,
    upload_over_http,
    wait_until,
)

CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    s3gate: str  # the venv's console script
    workdir: Path  # an empty directory outside the checkout, the commands' cwd


def _run(*argv: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A wheel of this checkout, installed with its dependencies into a fresh venv."""
    root = tmp_path_factory.mktemp("installed")
    dist, venv, workdir = root / "dist", root / "venv", root / "work"
    workdir.mkdir()
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, CHECKOUT, cwd=root)
    (wheel,) = dist.glob("s3gate-*.whl")
    # The interpreter this venv was made from, not the venv itself: nothing of ours leaks in.
    _run(sys._base_executable, "-m", "venv", venv, cwd=root)  # type: ignore[attr-defined]
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=root)
    located = subprocess.run(
        [venv / "bin" / "python", "-c", "import app; print(app.__file__)"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(venv), located.stdout
    return Installed(s3gate=str(venv / "bin" / "s3gate"), workdir=workdir)


@pytest.mark.parametrize("empty_database_url", [pytest.param("postgres")], indirect=True)
@pytest.mark.postgres
def test_an_installed_wheel_migrates_and_serves_outside_the_checkout(
    installed: Installed, empty_database_url: str, s3_server: EmbeddedS3, bucket: str
) -> None:
    sqlite_url = f"sqlite:///{installed.workdir / 'ledger.db'}"
    for url in (sqlite_url, empty_database_url):
        migrated = run_s3gate(
            "migrate",
            env=s3gate_env(s3_server, bucket, S3GATE_DATABASE_URL=url),
            cwd=installed.workdir,
            executable=installed.s3gate,
        )
        assert migrated.returncode == 0, migrated.stderr
        engine = sql_engine(url)
        try:
            with engine.connect() as conn:
                assert "files" in inspect(conn).get_table_names()
        finally:
            engine.dispose()

    version = run_s3gate(
        "--version", env=s3gate_env(s3_server, bucket), executable=installed.s3gate
    )
    assert version.stdout.strip() == f"s3gate {metadata.version('s3gate')}", version.stderr

    api, server = serve_api(
        [installed.s3gate, "serve"],
        tmp_path=installed.workdir,
        s3=s3_server,
        bucket=bucket,
        database_url=empty_database_url,
        s3gate=installed.s3gate,
    )
    try:
        assert upload_over_http(api, "wheel-user", tiny_png())["status"] == "available"
    finally:
        stop_process(server)


def test_an_installed_wheel_migrates_on_start(
    installed: Installed, s3_server: EmbeddedS3, bucket: str
) -> None:
    port = free_port()
    env = s3gate_env(
        s3_server,
        bucket,
        # Nobody ran `s3gate migrate` on this ledger.
        S3GATE_DATABASE_URL=f"sqlite:///{installed.workdir / 'on-start.db'}",
        S3GATE_MIGRATE_ON_START="true",
        S3GATE_PORT=str(port),
    )
    server = start_process([installed.s3gate, "serve"], env=env, cwd=installed.workdir)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.poll() is not None or answers(f"{api}/readyz"))
        assert server.poll() is None, server.communicate()[0]
        assert upload_over_http(api, "wheel-user", tiny_png())["status"] == "available"
        assert httpx.get(f"{api}/healthz").status_code == 200
    finally:
        stop_process(server)
