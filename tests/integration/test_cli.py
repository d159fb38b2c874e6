"""The `s3gate` command as users run it: real processes, real HTTP, real signals."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect

from app.auth import TokenVerifier
from app.config import AuthSettings
from app.devstack import EmbeddedS3
from devkit.env import clean_env
from devkit.ports import free_port
from devkit.processes import answers, stop_process
from tests.support import (
    S3GATE,
    TEST_JWT_SECRET,
    Api,
    ByteGate,
    new_sub,
    run_s3gate,
    serve_api,
    sql_engine,
    start_s3gate,
    tiny_png,
    upload_over_http,
    wait_until,
)


def _serve(
    tmp_path: Path,
    s3_server: EmbeddedS3,
    bucket: str,
    reaper: list[subprocess.Popen[str]],
    stdout: Any = subprocess.PIPE,
    **settings: str,
) -> tuple[str, subprocess.Popen[str]]:
    """`s3gate migrate`, then `s3gate serve` on a free port until /readyz answers."""
    api, server = serve_api(
        [S3GATE, "serve"], tmp_path=tmp_path, s3=s3_server, bucket=bucket, stdout=stdout, **settings
    )
    reaper.append(server)
    return api, server


@pytest.fixture
def process_reaper() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        # SIGTERM first: `s3gate dev` then stops the SeaweedFS it started in a session of its
        # own, which a SIGKILL of this group would leave running (it did, once per test run).
        stop_process(process)


def _start_dev(
    tmp_path: Path, reaper: list[subprocess.Popen[str]], port: int
) -> subprocess.Popen[str]:
    dev = start_s3gate(
        "dev",
        "--port",
        str(port),
        "--state-dir",
        str(tmp_path / "state"),
        env=clean_env(),
        cwd=tmp_path,
    )
    reaper.append(dev)
    return dev


def _dev_banner(dev: subprocess.Popen[str]) -> str:
    """What `s3gate dev` printed up to its banner's token line (the banner is one write)."""
    assert dev.stdout is not None
    lines: list[str] = []
    for line in dev.stdout:
        lines.append(line)
        if line.startswith("export API="):
            return "".join(lines)
    raise AssertionError(f"s3gate dev ended without its banner:\n{''.join(lines)}")


def test_token_command_mints_a_token_the_service_accepts(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_JWT_SECRET + "\n")
    result = run_s3gate(
        "token",
        "--sub",
        "alice",
        "--admin",
        "--ttl",
        "600",
        "--secret-file",
        str(secret_file),
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    verifier = TokenVerifier(AuthSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET))  # type: ignore[call-arg, arg-type]
    principal = asyncio.run(verifier.verify(result.stdout.strip()))
    assert (principal.sub, principal.is_admin) == ("alice", True)


def test_token_command_without_a_secret_fails_clearly() -> None:
    result = run_s3gate("token", "--sub", "alice", env=clean_env())
    assert result.returncode == 2
    assert "S3GATE_JWT_SECRET" in result.stderr
    assert "--secret-file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [[S3GATE, "serve"], [sys.executable, "-m", "uvicorn", "app.main:app"]]
)
def test_bad_configuration_stops_startup_naming_the_variable(command: list[str]) -> None:
    env = clean_env(
        S3GATE_S3_BUCKET="bucket",
        S3GATE_JWT_SECRET=TEST_JWT_SECRET,
        S3GATE_UPLOAD_URL_TTL_SECONDS="604801",
    )
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode != 0
    assert "S3GATE_UPLOAD_URL_TTL_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr
    assert TEST_JWT_SECRET not in result.stderr + result.stdout


def test_jwks_without_audience_stops_serve_naming_jwt_audience() -> None:
    env = clean_env(
        S3GATE_S3_BUCKET="bucket",
        S3GATE_JWT_JWKS_URL="https://idp.example/.well-known/jwks.json",
        S3GATE_PORT=str(free_port()),
    )
    result = run_s3gate("serve", env=env, timeout=20)
    assert result.returncode != 0
    assert "S3GATE_JWT_AUDIENCE" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_flag_prints_the_installed_version() -> None:
    result = run_s3gate("--version", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"s3gate {metadata.version('s3gate')}"


def test_migrate_command_creates_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = run_s3gate("migrate", env=clean_env(S3GATE_DATABASE_URL=url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = sql_engine(url)
    with engine.connect() as conn:
        assert "files" in inspect(conn).get_table_names()
    engine.dispose()
    # Logs in the deployment's format (JSON by default), like `serve`.
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(line["message"].startswith("Running upgrade") for line in lines)


def test_serve_runs_the_api_over_real_http(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, process_reaper: list[subprocess.Popen[str]]
) -> None:
    api, server = _serve(tmp_path, s3_server, bucket, process_reaper)

    data, auth = tiny_png(), Api.auth("cli-user")
    file = upload_over_http(api, "cli-user", data)
    assert file["status"] == "available"
    link = httpx.get(f"{api}/downloads/{file['id']}", headers=auth).json()["url"]
    assert httpx.get(link).content == data

    server.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see why it ended.
    assert server.wait(timeout=15) in (0, -signal.SIGTERM)
    output = server.stdout.read() if server.stdout else ""
    assert "Application shutdown complete" in output
    assert "X-Amz-Signature" not in output  # access logs carry paths, never signed URLs


def test_dev_command_serves_everything_and_ctrl_c_stops_it(
    tmp_path: Path, process_reaper: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    dev = _start_dev(tmp_path, process_reaper, port)
    output = _dev_banner(dev)
    token = re.search(r"TOKEN=(\S+)", output)
    s3_url = re.search(r"embedded S3 \(SeaweedFS\): (http://\S+),", output)
    assert token, output
    assert s3_url, output
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    api = f"http://127.0.0.1:{port}"

    body = {"filename": "hello.txt", "content_type": "text/plain", "size": 5}
    created = httpx.post(f"{api}/uploads", json=body, headers=auth).json()
    upload = created["upload"]
    assert upload["url"].startswith(s3_url.group(1))
    assert httpx.put(upload["url"], content=b"hello", headers=upload["headers"]).status_code == 200
    assert (
        httpx.post(f"{api}/uploads/{created['file']['id']}/complete", headers=auth).status_code
        == 200
    )
    link = httpx.get(f"{api}/downloads/{created['file']['id']}", headers=auth).json()["url"]
    assert httpx.get(link).content == b"hello"
    # the bucket's CORS rules let the dev origin's browser PUT (preflight succeeds)
    preflight = httpx.options(
        upload["url"],
        headers={
            "Origin": api,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,if-none-match",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in (api, "*")
    # the demo page is on, linked with the token in the fragment (never sent to the server)
    assert f"{api}/demo/#token={token.group(1)}" in output
    assert httpx.get(f"{api}/demo/").status_code == 200

    os.killpg(dev.pid, signal.SIGINT)
    assert dev.wait(timeout=30) == 0
    assert not answers(f"{api}/healthz")
    with pytest.raises(httpx.HTTPError):
        httpx.get(s3_url.group(1), timeout=1)


def test_dev_banner_appears_only_once_its_port_accepts_connections(
    tmp_path: Path, process_reaper: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    dev = _start_dev(tmp_path, process_reaper, port)
    assert dev.stdout is not None
    for line in dev.stdout:
        if line.startswith("s3gate dev is up"):
            # At once, as a script waiting for the banner would: no retry, no sleep.
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
    else:
        raise AssertionError("s3gate dev ended without its banner")


def test_dev_prints_no_banner_when_the_server_cannot_start(
    tmp_path: Path, process_reaper: list[subprocess.Popen[str]]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        dev = _start_dev(tmp_path, process_reaper, taken.getsockname()[1])
        output, _ = dev.communicate(timeout=120)
    assert dev.returncode != 0
    assert "s3gate dev is up" not in output
    assert "TOKEN=" not in output


def test_upload_and_download_commands_move_real_bytes(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, process_reaper: list[subprocess.Popen[str]]
) -> None:
    five_mib = str(5 * 1024 * 1024)
    api, _ = _serve(
        tmp_path,
        s3_server,
        bucket,
        process_reaper,
        S3GATE_MULTIPART_THRESHOLD=five_mib,
        S3GATE_PART_SIZE=five_mib,
    )
    client_env = clean_env(S3GATE_API_URL=api, S3GATE_TOKEN=Api.auth("cli")["Authorization"][7:])

    small, large = tmp_path / "notes.txt", tmp_path / "video.bin"
    small.write_text("hello from the command line\n")
    large.write_bytes(os.urandom(12 * 1024 * 1024))  # > threshold: three 5 MiB parts
    for source in (small, large):
        uploaded = run_s3gate("upload", str(source), env=client_env, cwd=tmp_path)
        assert uploaded.returncode == 0, uploaded.stderr
        assert "100%" in uploaded.stderr  # progress on the terminal
        file_id = uploaded.stdout.strip()
        target = tmp_path / f"copy-of-{source.name}"
        downloaded = run_s3gate(
            "download", file_id, "-o", str(target), env=client_env, cwd=tmp_path
        )
        assert downloaded.returncode == 0, downloaded.stderr
        assert target.read_bytes() == source.read_bytes()
        # `-o -`: the bytes on stdout and nothing else; progress stays on stderr
        piped = subprocess.run(
            [S3GATE, "download", file_id, "-o", "-"],
            env=client_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
        )
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == source.read_bytes()
        assert b"download 100%" in piped.stderr

    missing_token = run_s3gate(
        "upload", str(small), env=clean_env(S3GATE_API_URL=api), cwd=tmp_path, timeout=30
    )
    assert missing_token.returncode == 2
    assert "S3GATE_TOKEN" in missing_token.stderr


def test_an_upload_killed_mid_way_resumes_the_same_file_sending_only_the_missing_parts(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, process_reaper: list[subprocess.Popen[str]]
) -> None:
    part = 5 * 1024 * 1024  # the smallest part S3 takes
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * part + part // 2))  # four parts, the last one half
    server_log = tmp_path / "server.log"
    with ByteGate(s3_server.endpoint_url) as gate, server_log.open("w") as log:
        api, _ = _serve(
            tmp_path,
            s3_server,
            bucket,
            process_reaper,
            stdout=log,
            S3GATE_MULTIPART_THRESHOLD=str(part),
            S3GATE_PART_SIZE=str(part),
            S3GATE_S3_PUBLIC_ENDPOINT_URL=gate.url,  # part URLs lead through the gate
        )
        auth = Api.auth(new_sub())
        state_home = tmp_path / "xdg-state"  # the records' default place: under XDG_STATE_HOME
        env = clean_env(
            S3GATE_API_URL=api,
            S3GATE_TOKEN=auth["Authorization"][7:],
            XDG_STATE_HOME=str(state_home),
        )

        def stored_parts() -> set[int]:
            pending = httpx.get(f"{api}/files", headers=auth).json()["items"]
            if not pending:
                return set()
            held = httpx.get(f"{api}/uploads/{pending[0]['id']}/parts", headers=auth)
            return {p["part_number"] for p in held.json()["parts"]}

        gate.allow(2 * part + part // 2)  # parts 1 and 2 get through, part 3 stalls half-way
        first = start_s3gate("upload", str(source), env=env, cwd=tmp_path)
        process_reaper.append(first)
        wait_until(lambda: stored_parts() == {1, 2}, timeout=60)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        first_output = first.stdout.read() if first.stdout else ""
        gate.reset()  # what it held of part 3 never arrives; open for the rerun
        assert stored_parts() == {1, 2}
        (pending,) = httpx.get(f"{api}/files", headers=auth).json()["items"]
        saved = [
            (record, stat.S_IMODE(record.stat().st_mode), json.loads(record.read_text()))
            for record in (state_home / "s3gate" / "uploads").glob("*.json")
        ]

        log.flush()
        log_offset = server_log.stat().st_size
        second = run_s3gate("upload", str(source), env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == pending["id"]  # the same file, not a second one
        assert f"resuming upload {pending['id']} (2 of 4 parts already stored)" in second.stderr
        # Only parts 3 and 4 crossed to the store (plus two requests' headers) ...
        missing_bytes = part + part // 2
        assert missing_bytes <= gate.forwarded < missing_bytes + 16 * 1024
        # ... with their two URLs asked for in one call.
        log.flush()
        with server_log.open() as written:
            written.seek(log_offset)
            part_url_calls = [
                line
                for line in map(json.loads, filter(str.strip, written))
                if (line.get("method"), line.get("route")) == ("POST", "/uploads/{file_id}/parts")
            ]
        assert len(part_url_calls) == 1

        (only,) = httpx.get(f"{api}/files", headers=auth).json()["items"]
        assert (only["id"], only["status"]) == (pending["id"], "available")
        downloaded = subprocess.run(
            [S3GATE, "download", only["id"], "-o", "-"], env=env, capture_output=True, timeout=120
        )
        assert downloaded.returncode == 0, downloaded.stderr
        assert downloaded.stdout == source.read_bytes()

    # The record was there between the runs (owner-only) and is gone once complete; its
    # Idempotency-Key, the token and the URLs never reached the terminal.
    ((record, mode, content),) = saved
    assert mode == 0o600
    assert not record.exists()
    terminal = first_output + second.stdout + second.stderr
    for secret in (content["idempotency_key"], auth["Authorization"][7:], "X-Amz-Signature"):
        assert secret not in terminal


def test_the_mobile_example_survives_being_killed_mid_upload(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, process_reaper: list[subprocess.Popen[str]]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "mobile_upload", Path(__file__).parents[2] / "docs" / "examples" / "mobile_upload.py"
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    five_mib = str(5 * 1024 * 1024)
    api, _ = _serve(
        tmp_path,
        s3_server,
        bucket,
        process_reaper,
        S3GATE_MULTIPART_THRESHOLD=five_mib,
        S3GATE_PART_SIZE=five_mib,
    )
    token = Api.auth("phone")["Authorization"][7:]
    # one PUT, killed before the bytes left; three parts, killed after the first
    for size, parts_before_kill in ((3_000, 0), (11 * 1024 * 1024, 1)):
        photo, state = tmp_path / f"photo-{size}.jpg", tmp_path / f"state-{size}.json"
        photo.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(size - 4))
        killed = example.upload(api, token, photo, state, stop_after_parts=parts_before_kill)
        assert killed is None
        assert state.exists()
        file_id = example.upload(api, token, photo, state)  # the app starts again
        assert file_id is not None
        assert not state.exists()
        link = httpx.get(f"{api}/downloads/{file_id}", headers=Api.auth("phone")).json()["url"]
        assert httpx.get(link).content == photo.read_bytes()
        listing = httpx.get(f"{api}/files", headers=Api.auth("phone")).json()["items"]
        same_name = [f["id"] for f in listing if f["filename"] == photo.name]
        assert same_name == [file_id]  # one file, not one per attempt


def test_dev_command_stopped_with_sigterm_stops_its_s3_server_too(
    tmp_path: Path, process_reaper: list[subprocess.Popen[str]]
) -> None:
    """`kill PID` (or a supervisor's SIGTERM) to `s3gate dev` alone, not its process group:
    the embedded SeaweedFS it started must not outlive it."""
    dev = _start_dev(tmp_path, process_reaper, free_port())
    output = _dev_banner(dev)
    s3_url = re.search(r"embedded S3 \(SeaweedFS\): (http://\S+),", output)
    assert s3_url, output
    assert httpx.get(s3_url.group(1), timeout=2).status_code in (200, 403)
    os.kill(dev.pid, signal.SIGTERM)
    dev.wait(timeout=30)
    with pytest.raises(httpx.HTTPError):
        httpx.get(s3_url.group(1), timeout=1)
