"""The request observer, the log formats and the multiprocess metrics directory, in isolation."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app import metrics as metrics_module
from app.config import ConfigError
from app.http.middleware import BodyLimitMiddleware
from app.http.observer import RequestObserver, _loggable
from app.http.problems import PROBLEM_JSON, install_error_handlers
from app.logs import RequestContext, audit, bind_request, log_handler, unbind_request
from app.metrics import (
    MULTIPROC_ENV,
    Metrics,
    share_metrics_between_workers,
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom/{thing}")
    async def boom(thing: str) -> None:
        raise RuntimeError(f"secret-{thing}")

    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestObserver)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_an_unhandled_error_answers_500_with_the_id_its_log_line_carries(
    client: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    answer = await client.get("/boom/x", headers={"X-Request-ID": "r-500"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["code"] == "internal_error"
    assert answer.headers["x-request-id"] == "r-500"
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (error,) = [line for line in lines if line["logger"] == "s3gate.errors"]
    assert error["request_id"] == "r-500"
    assert "/boom/{thing}" in error["message"]
    (access,) = [line for line in lines if line["logger"] == "s3gate.access"]
    assert (access["route"], access["status"], access["request_id"]) == (
        "/boom/{thing}",
        500,
        "r-500",
    )


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("a" * 128, True),
        ("A-z_0.9:x", True),
        ("a" * 129, False),
        ("a b", False),
        ("a/b", False),
        ("", False),
    ],
)
async def test_an_incoming_request_id_is_kept_only_when_well_formed(
    client: httpx.AsyncClient, sent: str, kept: bool
) -> None:
    answer = await client.get("/nowhere", headers={"X-Request-ID": sent})
    echoed = answer.headers["x-request-id"]
    assert (echoed == sent) is kept
    if not kept:
        assert len(echoed) == 32
        assert int(echoed, 16) >= 0


def test_json_lines_stay_one_line_and_carry_fields_and_exceptions() -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("s3gate.test.json")
    logger.addHandler(log_handler("json", stream=buffer))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = bind_request(RequestContext("rid-1", owner="alice"))
    try:
        logger.info("forged\nline", extra={"fields": {"path": "/a\nb", "status": 200}})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        unbind_request(token)
    logger.info("outside a request")
    first, second, third = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["message"] == "forged\nline"
    assert (first["path"], first["status"], first["request_id"]) == ("/a\nb", 200, "rid-1")
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exception"]
    assert third["request_id"] is None


def test_text_lines_escape_fields_and_name_the_request() -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("s3gate.test.text")
    logger.addHandler(log_handler("text", stream=buffer))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = bind_request(RequestContext("rid-2"))
    try:
        logger.info("GET /x 200", extra={"fields": {"path": "/a\nb", "owner": None}})
    finally:
        unbind_request(token)
    (line,) = buffer.getvalue().splitlines()
    assert line.endswith(
        'INFO s3gate.test.text GET /x 200 request_id=rid-2 path="/a\\nb" owner=null'
    )


FORGED = "2026-01-01 00:00:00,000 INFO s3gate.audit issued download url owner=victim"
# Everything str.splitlines() (and so a terminal, a log shipper or an editor) breaks a line on,
# and an ANSI "erase line, back to column 0" that would hide what precedes it.
LINE_BREAKERS = [
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
    "\x1b[2K\r",
]


def _logger(name: str, log_format: str) -> tuple[logging.Logger, io.StringIO]:
    buffer = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.addHandler(log_handler(log_format, stream=buffer))  # type: ignore[arg-type]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, buffer


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_text_a_client_controls_starts_a_line_in_either_format(log_format: str) -> None:
    logger, buffer = _logger(f"s3gate.test.forge.{log_format}", log_format)
    for breaker in LINE_BREAKERS:
        forged = f"alice{breaker}{FORGED}"
        logger.info("GET %s 404", forged, extra={"fields": {"owner": forged, "path": forged}})
        audit(logger, "issued upload url", owner=forged, file=uuid.uuid4())
        try:
            raise ValueError(forged)
        except ValueError:
            logger.exception("unhandled error for %s", forged)
        logger.info("where", stack_info=True)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4 * len(LINE_BREAKERS)  # one line per record, tracebacks included
    assert not [line for line in lines if line.startswith(FORGED)]
    # Kept, escaped: the line still says what the client sent.
    assert all(FORGED in line for number, line in enumerate(lines) if number % 4 != 3)


def test_text_lines_write_escapes_tracebacks_and_audit_fields() -> None:
    logger, buffer = _logger("s3gate.test.escapes", "text")
    file_id = uuid.uuid4()
    expires = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    audit(logger, "issued download url", file=file_id, owner="a\u2028b\x1b", expires=expires)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("failed\r\x00\x85 here")
    audited, failed = buffer.getvalue().splitlines()
    assert audited.endswith(
        f'INFO s3gate.test.escapes issued download url file="{file_id}" '
        'owner="a\\u2028b\\u001b" expires="2026-01-01T00:00:00+00:00"'
    )
    assert " failed\\r\\x00\\x85 here exception=" in failed
    exception = json.loads(failed.split(" exception=", 1)[1])
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith("ValueError: bad\nthing")


def test_json_audit_lines_carry_ids_and_owners_as_keys() -> None:
    logger, buffer = _logger("s3gate.test.audit", "json")
    file_id = uuid.uuid4()
    expires = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    audit(logger, "issued upload url", file=file_id, owner="a\nb", expires=expires, parts=2)
    (line,) = (json.loads(x) for x in buffer.getvalue().splitlines())
    assert line["message"] == "issued upload url"
    assert (line["file"], line["owner"], line["parts"]) == (str(file_id), "a\nb", 2)
    assert line["expires"] == "2026-01-01T00:00:00+00:00"


def test_a_configured_directory_is_created_or_emptied_of_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    assert share_metrics_between_workers(1) == str(directory)
    assert directory.is_dir()
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "keep.txt").write_text("not ours")
    assert share_metrics_between_workers(4) == str(directory)
    assert [p.name for p in directory.iterdir()] == ["keep.txt"]


def test_an_unusable_directory_stops_startup_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    monkeypatch.setenv(MULTIPROC_ENV, str(taken))
    with pytest.raises(ConfigError, match=MULTIPROC_ENV):
        share_metrics_between_workers(2)


def test_several_workers_get_a_private_temp_directory_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches TMPDIR
    monkeypatch.setenv(MULTIPROC_ENV, "")  # set but empty means unset (not the working dir)
    at_exit: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(
        metrics_module.atexit, "register", lambda f, *a, **k: at_exit.append((f, a, k))
    )
    assert share_metrics_between_workers(1) is None
    assert MULTIPROC_ENV not in os.environ

    created = share_metrics_between_workers(2)
    assert created is not None
    assert Path(created).parent == tmp_path
    assert os.environ[MULTIPROC_ENV] == created
    assert Path(created).stat().st_mode & 0o077 == 0
    (remove, args, kwargs) = at_exit[0]
    remove(*args, **kwargs)
    assert not Path(created).exists()


def test_a_scrape_forgets_the_live_gauges_of_dead_workers(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # exited and reaped: its pid names no process
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    metrics_module._forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{dead.pid}.db", f"counter_{os.getpid()}.db"]
    )


def test_a_directory_set_too_late_is_reported_not_half_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # In this process prometheus_client was imported without the variable: values are per
    # process, so /metrics must not read an (empty) directory instead.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics = Metrics(CollectorRegistry())
    assert metrics.multiprocess_dir is None
    assert MULTIPROC_ENV in caplog.text
    metrics.urls_issued["get"].inc()
    assert b's3gate_urls_issued_total{kind="get"} 1.0' in metrics.exposition()


@pytest.mark.parametrize(
    ("path", "root_path"),
    [("/s/sl_secret", ""), ("/s/sl_secret/extra", ""), ("/api/s/sl_secret", "/api")],
)
def test_a_share_link_path_is_logged_as_its_template(path: str, root_path: str) -> None:
    assert _loggable(path, root_path) == "/s/{token}"


def test_other_paths_are_logged_as_they_came() -> None:
    assert _loggable("/files/0b6f1c1e", "") == "/files/0b6f1c1e"
    assert _loggable("/api/files/x", "/api") == "/api/files/x"
    assert _loggable("/sx/y", "") == "/sx/y"
