"""`s3gate serve` is configured by S3GATE_* settings (a container's environment); flags win."""

from __future__ import annotations

from typing import Any

import pytest

from app import cli
from app import metrics as metrics_module
from app.config import ConfigError, Settings, load_settings

SECRET = "unit-test-hmac-key-0123456789abcdefghij"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What cmd_serve hands to the server, with the server and migrations replaced by probes."""
    captured: dict[str, Any] = {}

    def run_server(app: str, **options: Any) -> int:
        captured.update(options, app=app)
        return 0

    monkeypatch.setattr(cli, "run_server", run_server)
    monkeypatch.setattr(cli, "run_migrations", lambda url: captured.setdefault("migrated", url))
    monkeypatch.setattr(metrics_module, "share_metrics_between_workers", lambda workers: None)
    monkeypatch.setenv("S3GATE_S3_BUCKET", "bucket")
    monkeypatch.setenv("S3GATE_JWT_SECRET", SECRET)
    monkeypatch.chdir("/")  # no stray .env
    return captured


def test_the_environment_configures_serve(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "S3GATE_HOST": "127.0.0.2",
        "S3GATE_PORT": "9000",
        "S3GATE_WORKERS": "3",
        "S3GATE_PROXY_HEADERS": "true",
        "S3GATE_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.168.1.7",
        "S3GATE_GRACEFUL_SHUTDOWN_SECONDS": "12",
        "S3GATE_MIGRATE_ON_START": "true",
        "S3GATE_DATABASE_URL": "sqlite:///ledger.db",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve"]) == 0
    assert served["app"] == "app.main:app"
    assert (served["host"], served["port"], served["workers"]) == ("127.0.0.2", 9000, 3)
    assert served["proxy_headers"] is True
    assert served["forwarded_allow_ips"] == ["10.0.0.0/8", "192.168.1.7"]
    assert served["timeout_graceful_shutdown"] == 12
    assert served["migrated"] == "sqlite:///ledger.db"


def test_flags_win_over_the_environment(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3GATE_WORKERS", "3")
    monkeypatch.setenv("S3GATE_PROXY_HEADERS", "true")
    monkeypatch.setenv("S3GATE_PORT", "9000")
    argv = ["serve", "--workers", "2", "--no-proxy-headers", "--port", "9001"]
    argv += ["--forwarded-allow-ips", "10.1.2.3"]
    assert cli.main(argv) == 0
    assert (served["workers"], served["proxy_headers"], served["port"]) == (2, False, 9001)
    assert served["forwarded_allow_ips"] == ["10.1.2.3"]
    assert "migrated" not in served  # S3GATE_MIGRATE_ON_START is off by default


def test_defaults_suit_a_single_local_process(served: dict[str, Any]) -> None:
    assert cli.main(["serve"]) == 0
    assert (served["host"], served["port"], served["workers"]) == ("127.0.0.1", 8000, 1)
    assert served["proxy_headers"] is False
    assert served["forwarded_allow_ips"] == ["127.0.0.1"]
    assert served["timeout_graceful_shutdown"] == 25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("S3GATE_FORWARDED_ALLOW_IPS", "10.0.0.0/33"),
        ("S3GATE_FORWARDED_ALLOW_IPS", "proxy.example.com"),
        ("S3GATE_WORKERS", "0"),
        ("S3GATE_GRACEFUL_SHUTDOWN_SECONDS", "-1"),
        ("S3GATE_PORT", "70000"),
    ],
)
def test_unusable_deployment_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings(Settings, _env_file=None, s3_bucket="bucket", jwt_secret=SECRET)


@pytest.mark.parametrize(
    ("flag", "value", "variable"),
    [
        ("--port", "70000", "S3GATE_PORT"),
        ("--workers", "0", "S3GATE_WORKERS"),
        ("--forwarded-allow-ips", "10.0.0.0/33,proxy.internal", "S3GATE_FORWARDED_ALLOW_IPS"),
    ],
)
def test_flags_are_validated_like_the_environment(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], flag: str, value: str, variable: str
) -> None:
    assert cli.main(["serve", flag, value]) == 2
    assert "app" not in served  # the server never started
    assert f"\n{variable}: " in capsys.readouterr().err


def test_a_flag_list_is_parsed_like_the_environment(served: dict[str, Any]) -> None:
    assert cli.main(["serve", "--forwarded-allow-ips", " 10.0.0.0/8, 192.168.1.7 "]) == 0
    assert served["forwarded_allow_ips"] == ["10.0.0.0/8", "192.168.1.7"]
