"""Configuration mistakes a new user makes stop `s3gate` with one clear message, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devkit.env import clean_env
from devkit.ports import free_port
from tests.support import TEST_JWT_SECRET, run_s3gate

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"S3GATE_S3_BUCKET": "bucket", "S3GATE_JWT_SECRET": TEST_JWT_SECRET}


def _refused(result_stderr: str, returncode: int, *variables: str) -> None:
    assert returncode == 2, result_stderr
    assert result_stderr.startswith("s3gate: invalid configuration\n"), result_stderr
    for variable in variables:
        assert f"\n{variable}: " in result_stderr, result_stderr
    assert "Traceback" not in result_stderr
    assert TEST_JWT_SECRET not in result_stderr


def test_env_example_copied_as_dotenv_refuses_to_serve_its_placeholder_secret(
    tmp_path: Path,
) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = run_s3gate(
        "serve", env=clean_env(S3GATE_PORT=str(free_port())), cwd=tmp_path, timeout=30
    )
    _refused(result.stderr, result.returncode, "S3GATE_JWT_SECRET")
    assert "placeholder" in result.stderr
    assert "secrets.token_urlsafe(48)" in result.stderr
    assert "replace-with-at-least-32-random-bytes" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize(
    "url",
    [
        "mysql://s3gate:hunter2@127.0.0.1/s3gate",
        "nonsense",
        "sqlite:///{tmp}/missing-dir/ledger.db",
        "sqlite:///{tmp}",
    ],
)
def test_an_unusable_database_url_is_named_with_what_is_accepted(
    tmp_path: Path, command: str, url: str
) -> None:
    env = clean_env(**GOOD, S3GATE_DATABASE_URL=url.format(tmp=tmp_path))
    env["S3GATE_PORT"] = str(free_port())
    result = run_s3gate(command, env=env, cwd=tmp_path, timeout=30)
    _refused(result.stderr, result.returncode, "S3GATE_DATABASE_URL")
    assert "sqlite:///" in result.stderr
    assert "postgresql://" in result.stderr
    assert "hunter2" not in result.stderr


def test_several_invalid_settings_are_named_in_one_message(tmp_path: Path) -> None:
    env = clean_env(
        S3GATE_S3_BUCKET="bucket",
        S3GATE_JWT_SECRET="change-me-change-me-change-me-change-me",
        S3GATE_DATABASE_URL="mysql://db/s3gate",
        S3GATE_UPLOAD_URL_TTL_SECONDS="0",
    )
    result = run_s3gate("serve", "--port", "70000", env=env, cwd=tmp_path, timeout=30)
    _refused(
        result.stderr,
        result.returncode,
        "S3GATE_JWT_SECRET",
        "S3GATE_DATABASE_URL",
        "S3GATE_UPLOAD_URL_TTL_SECONDS",
        "S3GATE_PORT",
    )


@pytest.mark.parametrize(
    ("flag", "value", "variable"),
    [
        ("--port", "70000", "S3GATE_PORT"),
        ("--workers", "0", "S3GATE_WORKERS"),
        ("--forwarded-allow-ips", "proxy.internal", "S3GATE_FORWARDED_ALLOW_IPS"),
    ],
)
def test_a_bad_serve_flag_is_named_by_its_setting(
    tmp_path: Path, flag: str, value: str, variable: str
) -> None:
    env = clean_env(**GOOD, S3GATE_PORT=str(free_port()))
    result = run_s3gate("serve", flag, value, env=env, cwd=tmp_path, timeout=30)
    _refused(result.stderr, result.returncode, variable)
