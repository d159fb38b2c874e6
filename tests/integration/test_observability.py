"""Metrics, request ids and access log lines, in process and from `s3gate serve --workers 2`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.auth import mint_token
from app.devstack import EmbeddedS3
from devkit.ports import free_port
from devkit.processes import answers, stop_process, wait_for
from tests.support import (
    S3GATE,
    TEST_JWT_SECRET,
    UVICORN,
    Api,
    new_sub,
    run_s3gate,
    running_app,
    s3gate_env,
    serve_api,
    sha256_b64,
    start_s3gate,
    tiny_png,
    wait_until,
)

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
ACCESS_FIELDS = {
    "ts",
    "level",
    "logger",
    "request_id",
    "message",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "owner",
    "client_ip",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


class Delta:
    """What changed in the metrics between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def access_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in log_lines(buffer) if line["logger"] == "s3gate.access"]


# --- in process ------------------------------------------------------------------------------


async def test_a_journey_is_counted_by_route_template_kind_and_outcome(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    before = await scrape(api.client)
    owner, png = new_sub(), tiny_png()
    auth = api.auth(owner)

    file, _ = await api.upload(s3_http, owner, png, content_type="image/png")
    assert (await api.complete(owner, file["id"])).json()["status"] == "available"
    assert (await api.complete(owner, file["id"])).status_code == 200  # a repeat
    download = await api.client.get(
        f"/downloads/{file['id']}", params={"disposition": "inline"}, headers=auth
    )
    assert download.status_code == 200

    never_sent = await api.create(
        owner, {"filename": "n.txt", "content_type": "text/plain", "size": 3}
    )
    assert (await api.complete(owner, never_sent.json()["file"]["id"])).status_code == 409
    # PNG bytes declared (and signed) as a PDF: the magic bytes give it away at completion.
    wrong, _ = await api.upload(
        s3_http, owner, png, content_type="application/pdf", filename="x.pdf", checksum=False
    )
    assert (await api.complete(owner, wrong["id"])).status_code == 422

    form = await api.create(
        owner, {"filename": "f.txt", "content_type": "text/plain", "size": 3, "form": True}
    )
    # In parts, with a checksum: completion lists, assembles and reads the object through.
    text = b"abc"
    multipart = await api.create(
        owner,
        {
            "filename": "m.txt",
            "content_type": "text/plain",
            "size": len(text),
            "checksum_sha256": sha256_b64(text),
            "multipart": True,
        },
    )
    assert (form.status_code, multipart.status_code) == (201, 201)
    multipart_id = multipart.json()["file"]["id"]
    parts = await api.client.post(
        f"/uploads/{multipart_id}/parts", json={"part_numbers": [1]}, headers=auth
    )
    (part,) = parts.json()["parts"]
    assert (await s3_http.put(part["url"], content=text, headers=part["headers"])).is_success
    assert (await api.complete(owner, multipart_id)).json()["status"] == "available"
    deleted = await api.client.delete(f"/files/{multipart_id}", headers=auth)
    assert deleted.status_code == 204

    assert (await api.client.get(f"/files/{uuid.uuid4()}", headers=auth)).status_code == 404
    assert (await api.client.get(f"/nowhere/{uuid.uuid4()}")).status_code == 404
    assert (await api.client.request("BREW", "/healthz")).status_code == 405

    after = await scrape(api.client)
    delta = Delta(before, after)

    assert delta("s3gate_urls_issued_total", kind="put") == 3
    assert delta("s3gate_urls_issued_total", kind="post") == 1
    assert delta("s3gate_urls_issued_total", kind="part") == 1
    assert delta("s3gate_urls_issued_total", kind="get") == 1
    assert delta("s3gate_completions_total", outcome="available") == 2
    for outcome in ("already_available", "not_uploaded", "rejected"):
        assert delta("s3gate_completions_total", outcome=outcome) == 1, outcome
    assert delta("s3gate_completions_total", outcome="error") == 0

    def requests(route: str, method: str, status: str) -> float:
        return delta("s3gate_http_requests_total", route=route, method=method, status=status)

    assert requests("/uploads", "POST", "201") == 5
    assert requests("/uploads/{file_id}/complete", "POST", "200") == 3
    assert requests("/uploads/{file_id}/complete", "POST", "409") == 1
    assert requests("/uploads/{file_id}/complete", "POST", "422") == 1
    assert requests("/uploads/{file_id}/parts", "POST", "200") == 1
    assert requests("/downloads/{file_id}", "GET", "200") == 1
    assert requests("/files/{file_id}", "GET", "404") == 1
    assert requests("unmatched", "GET", "404") == 1
    assert requests("/healthz", "other", "405") == 1
    assert requests("/metrics", "GET", "200") >= 1
    duration = "s3gate_http_request_duration_seconds_count"
    assert delta(duration, route="/uploads/{file_id}/complete", method="POST") == 5
    assert delta(duration.replace("_count", "_bucket"), route="/uploads", method="POST", le="+Inf")
    for name in ("_count", "_sum"):
        assert delta("s3gate_http_request_duration_seconds" + name, route="/uploads", method="POST")

    storage = "s3gate_storage_call_duration_seconds_count"
    # Not for the repeat (the ledger answers); twice for the multipart file: `complete`, then
    # the background worker that reads it through checks again what it is about to prove.
    assert delta(storage, operation="head") == 5
    assert delta(storage, operation="read_head") == 3
    assert delta(storage, operation="delete") == 2  # the rejected object, the deleted file
    for operation in (
        "create_multipart_upload",
        "list_parts",
        "complete_multipart_upload",
        "sha256",
        "abort_multipart_upload",
    ):
        assert delta(storage, operation=operation) == 1, operation
    assert delta("s3gate_storage_errors_total", operation="head") == 0
    db = "s3gate_db_call_duration_seconds_count"
    assert delta(db, statement="insert") == 5
    # available twice, rejected, deleted, and the multipart file's move to verifying
    assert delta(db, statement="transition") == 5
    # 5 completions, download, parts, delete, the 404; and the polls of the one that waited
    # for the background worker (Prefer: wait), as many as its timing took
    # (reads for the caller, such as the download, go through the access check: `accessible`)
    assert delta(db, statement="get") + delta(db, statement="accessible") >= 9
    assert delta(db, statement="claim_verifying") >= 1
    # The deleted file's upload URL is still valid: the reaper confirms its purge later.
    assert delta(db, statement="mark_purged") == 0
    assert delta("s3gate_db_errors_total", statement="get") == 0
    assert value(after, "s3gate_workers") >= 1

    # Label values are templates and names, never an id, a raw path or a query string.
    for (name, labels), _ in after.items():
        if name.startswith("s3gate_"):
            for label, text in labels:
                assert not UUID_PATTERN.search(text), (name, label, text)
                assert "?" not in text, (name, label, text)
                assert "disposition" not in text, (name, label, text)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_failing_store_and_database_are_counted_per_operation(
    api: Api, tmp_path: Path
) -> None:
    owner = new_sub()
    store_down = api.settings.model_copy(
        update={
            "s3_endpoint_url": "http://127.0.0.1:9",
            "s3_public_endpoint_url": api.settings.s3_endpoint_url,
            "storage_max_attempts": 1,
        }
    )
    database_down = api.settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/nothing"}
    )
    # A database that answers but holds no ledger: every statement fails at once, as pending
    # migrations (a 503 that says to migrate).
    no_ledger = api.settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'unmigrated.db'}"}
    )
    before = await scrape(api.client)
    async with running_app(store_down) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 1},
            headers=api.auth(owner),
        )
        file_id = created.json()["file"]["id"]
        completed = await client.post(f"/uploads/{file_id}/complete", headers=api.auth(owner))
        assert completed.status_code == 503
    async with running_app(database_down) as client:
        assert (await client.get("/readyz")).status_code == 503  # its one SELECT timed out
    async with running_app(no_ledger) as client:
        got = await client.get(f"/files/{uuid.uuid4()}", headers=api.auth(owner))
        assert got.json()["code"] == "migrations_pending"
    delta = Delta(before, await scrape(api.client))

    assert delta("s3gate_storage_errors_total", operation="head") == 1
    assert delta("s3gate_storage_call_duration_seconds_count", operation="head") == 1
    assert delta("s3gate_completions_total", outcome="error") == 1
    # The schema check at startup and the one in /readyz, both timed out on the downed database.
    assert delta("s3gate_db_errors_total", statement="schema_revision") == 2
    assert delta("s3gate_db_errors_total", statement="accessible") == 1  # GET /files/{id}
    # Those two, and the startup checks of the other two apps (an unmigrated ledger is no error).
    assert delta("s3gate_db_call_duration_seconds_count", statement="schema_revision") == 4
    assert delta("s3gate_db_errors_total", statement="insert") == 0
    assert (
        delta("s3gate_http_requests_total", route="/files/{file_id}", method="GET", status="503")
        == 1
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_refusals_are_counted_by_kind_and_completions_by_outcome(api: Api) -> None:
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 10}
    limited = api.settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 1})
    both_quotas = api.settings.model_copy(
        update={"quota_bytes_per_owner": 100, "quota_pending_uploads_per_owner": 1}
    )
    bytes_only = api.settings.model_copy(update={"quota_bytes_per_owner": 100})
    short_lived = api.settings.model_copy(
        update={"upload_url_ttl_seconds": 1, "completion_grace_seconds": 0}
    )
    before = await scrape(api.client)
    async with running_app(limited) as client:
        owner = api.auth(new_sub())
        statuses = [(await client.post("/uploads", json=body, headers=owner)).status_code]
        statuses.append((await client.post("/uploads", json=body, headers=owner)).status_code)
        assert statuses == [201, 429]
    async with running_app(both_quotas) as client:
        owner = api.auth(new_sub())
        assert (await client.post("/uploads", json=body, headers=owner)).status_code == 201
        second = await client.post("/uploads", json=body, headers=owner)  # 2 pending > 1
        too_big = await client.post(
            "/uploads", json={**body, "size": 200}, headers=api.auth(new_sub())
        )
        assert (second.status_code, too_big.status_code) == (403, 403)
    async with running_app(bytes_only) as client:
        refused = await client.post(
            "/uploads", json={**body, "size": 200}, headers=api.auth(new_sub())
        )
        assert refused.json()["code"] == "quota_exceeded"
    async with running_app(short_lived) as client:
        owner = api.auth(new_sub())
        late = (await client.post("/uploads", json=body, headers=owner)).json()["file"]["id"]
        await asyncio.sleep(1.5)  # past the URL's expiry, no grace
        expired = await client.post(f"/uploads/{late}/complete", headers=owner)
        unknown = await client.post(f"/uploads/{uuid.uuid4()}/complete", headers=owner)
        assert (expired.json()["code"], unknown.status_code) == ("upload_expired", 404)
    delta = Delta(before, await scrape(api.client))

    assert delta("s3gate_rate_limited_total") == 1
    assert delta("s3gate_quota_refusals_total", kind="pending_uploads") == 1
    assert delta("s3gate_quota_refusals_total", kind="bytes") == 2
    # With both quotas set, the ledger is asked which one was full; with one, it is not.
    assert delta("s3gate_db_call_duration_seconds_count", statement="usage") == 2
    assert delta("s3gate_urls_issued_total", kind="put") == 3  # refused creates hand out none
    assert delta("s3gate_completions_total", outcome="expired") == 1
    assert delta("s3gate_completions_total", outcome="not_found") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_access_lines_carry_request_id_owner_and_route_but_no_query(
    api: Api, s3_http: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, tiny_png(), content_type="image/png")
    await api.complete(owner, file["id"])
    json_log.truncate(0)
    json_log.seek(0)

    mine = "client-42:retry.1_a-b"
    download = await api.client.get(
        f"/downloads/{file['id']}?disposition=inline",
        headers={**api.auth(owner), "X-Request-ID": mine},
    )
    assert download.headers["x-request-id"] == mine
    (line,) = access_lines(json_log)
    assert set(line) == ACCESS_FIELDS, line
    assert line["request_id"] == mine
    assert line["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert (line["method"], line["route"], line["status"]) == ("GET", "/downloads/{file_id}", 200)
    assert line["path"] == f"/downloads/{file['id']}"
    assert line["owner"] == owner
    assert line["client_ip"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] > 0
    # Every other line of the request carries its id: here the download's audit line.
    (audit,) = [x for x in log_lines(json_log) if x["logger"] == "s3gate.audit"]
    assert audit["request_id"] == mine
    assert "issued download url" in audit["message"]

    json_log.truncate(0)
    json_log.seek(0)
    invalid = ["has space", "x" * 129, "", "semi;colon"]
    answers = [await api.client.get("/files", headers={"X-Request-ID": bad}) for bad in invalid]
    answers.append(await api.client.get("/files"))  # none sent
    for answer in answers:
        assert answer.status_code == 401
        assert GENERATED_ID.fullmatch(answer.headers["x-request-id"])
    lines = access_lines(json_log)
    assert [x["request_id"] for x in lines] == [a.headers["x-request-id"] for a in answers]
    assert {x["owner"] for x in lines} == {None}  # never authenticated
    assert len({a.headers["x-request-id"] for a in answers}) == len(answers)

    # Errors answered before routing, and past the body limit, carry an id too.
    too_big = await api.client.post(
        "/uploads",
        content=b"{" + b" " * (65 * 1024) + b"}",
        headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
    )
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"
    assert too_big.headers["x-request-id"] == "big-1"
    unmatched = await api.client.get("/nowhere?token=abc")
    assert GENERATED_ID.fullmatch(unmatched.headers["x-request-id"])
    last = access_lines(json_log)[-2:]
    # (the 413 never reached the router; its route is found for the label all the same)
    assert [(x["route"], x["status"]) for x in last] == [("/uploads", 413), ("unmatched", 404)]
    assert last[1]["path"] == "/nowhere"
    # (the test's own httpx client logs its URLs; the service keeps httpx at WARNING)
    assert not [
        x for x in log_lines(json_log) if "token=abc" in json.dumps(x) and x["logger"] != "httpx"
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_static_assets_are_counted_under_their_mount_template(api: Api) -> None:
    before = await scrape(api.client)
    assert (await api.client.get("/client/s3gate.js")).status_code == 200
    delta = Delta(before, await scrape(api.client))
    labels = {"route": "/client/{path}", "method": "GET", "status": "200"}
    assert delta("s3gate_http_requests_total", **labels) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cors_exposes_and_accepts_the_request_id(api: Api) -> None:
    origin = "https://app.example.com"
    browser = api.settings.model_copy(update={"cors_origins": [origin]})
    async with running_app(browser) as client:
        preflight = await client.options(
            "/files",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,x-request-id",
            },
        )
        answer = await client.get("/files", headers={"Origin": origin, "X-Request-ID": "r-1"})
    assert preflight.status_code == 200
    assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()
    assert answer.headers["x-request-id"] == "r-1"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()


# --- s3gate serve --workers 2 ------------------------------------------------------------------


# How long a multi-worker server may take to have every worker up.
STARTUP_SECONDS = 90


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _live_workers(metrics_dir: Path) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*.db")}


def _healthz_count(samples: Samples) -> float:
    return value(
        samples, "s3gate_http_requests_total", route="/healthz", method="GET", status="200"
    )


def _served_by_each_worker(metrics_dir: Path) -> dict[int, float]:
    """/healthz requests per worker, read from each worker's own file."""
    served = {}
    for path in metrics_dir.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)], accumulate=False)
        samples = {
            (s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples
        }
        served[int(path.stem.rsplit("_", 1)[1])] = _healthz_count(samples)
    return served


def test_several_workers_report_the_same_totals_whicheveranswers(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    temp = tmp_path / "tmp"  # stands for the tmpfs of a read-only container
    temp.mkdir()
    port = free_port()
    env = s3gate_env(
        s3_server,
        bucket,
        TMPDIR=str(temp),
        S3GATE_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    migrated = run_s3gate("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    output = tmp_path / "server.log"
    with output.open("w") as sink:
        server = start_s3gate(
            "serve", "--port", str(port), "--workers", "2", env=env, cwd=tmp_path, stdout=sink
        )
    api = f"http://127.0.0.1:{port}"
    # Two workers import the app at once: on a slow 2-core machine, under the rest of the
    # suite, that has taken over 30 s. The server's log says why if it never happens.
    started = STARTUP_SECONDS
    try:

        def one_metrics_dir() -> bool:
            return len(list(temp.glob("s3gate-metrics-*"))) == 1

        assert wait_for(one_metrics_dir, timeout=started), _tail(output)
        (metrics_dir,) = temp.glob("s3gate-metrics-*")

        def both_up() -> bool:
            return len(_live_workers(metrics_dir)) == 2 and answers(f"{api}/readyz")

        assert wait_for(both_up, timeout=started), _tail(output)

        # Fresh connections, several at once, until both workers have answered some.
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):
                batch = list(pool.map(lambda _: httpx.get(f"{api}/healthz"), range(24)))
                assert {r.status_code for r in batch} == {200}
                sent += len(batch)
                served = _served_by_each_worker(metrics_dir)
                if len([n for n in served.values() if n > 0]) == 2:
                    break
        assert sum(served.values()) == sent
        assert len([n for n in served.values() if n > 0]) == 2, served

        for _ in range(12):  # each scrape on a new connection: either worker may answer
            samples = parse(httpx.get(f"{api}/metrics").text)
            assert _healthz_count(samples) == sent
            assert value(samples, "s3gate_workers") == 2

        # A killed worker cannot mark itself dead; the next scrape does, and keeps its counts.
        victim = min(_live_workers(metrics_dir))
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            return len(_live_workers(metrics_dir) - {victim}) == 2

        assert wait_for(restarted, timeout=started), _tail(output)
        wait_until(lambda: answers(f"{api}/readyz"))
        samples = parse(httpx.get(f"{api}/metrics").text)
        assert value(samples, "s3gate_workers") == 2
        assert _healthz_count(samples) == sent
        assert victim not in _live_workers(metrics_dir)

        echoed = httpx.get(f"{api}/healthz", headers={"X-Request-ID": "over-the-wire"})
        assert echoed.headers["x-request-id"] == "over-the-wire"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode == 0, output.read_text()[-3000:]
    assert list(temp.iterdir()) == []  # the metrics directory left with the server

    lines = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    started = [x for x in lines if "Started server process" in x["message"]]
    assert len(started) >= 2  # one per worker
    assert {x["logger"] for x in started} == {"uvicorn.error"}
    access = [x for x in lines if x["logger"] == "s3gate.access"]
    assert {x["route"] for x in access} >= {"/healthz", "/metrics", "/readyz"}
    (wire,) = [x for x in access if x["request_id"] == "over-the-wire"]
    assert set(wire) == ACCESS_FIELDS


# --- a server started by hand: its output as an operator reads it -------------------------------


@contextlib.contextmanager
def _server(
    argv: list[str], tmp_path: Path, s3: EmbeddedS3, bucket: str, **settings: str
) -> Iterator[tuple[str, Path]]:
    """serve_api(argv); yield its URL and the file that collects its stdout and stderr
    (complete once the block is left: the server is stopped first)."""
    output = tmp_path / "server.log"
    with output.open("w") as sink:
        api, server = serve_api(
            argv, tmp_path=tmp_path, s3=s3, bucket=bucket, stdout=sink, **settings
        )
    try:
        yield api, output
    finally:
        stop_process(server)


def test_uvicorn_started_by_hand_logs_one_access_line_per_request_and_no_query(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    owner = new_sub()
    auth = {"Authorization": f"Bearer {mint_token(TEST_JWT_SECRET, owner)}"}
    sent = {  # request id -> (path with a query string that must be logged nowhere, headers)
        "by-hand-1": ("/healthz?token=query-secret-1", {}),
        "by-hand-2": ("/files?limit=5&token=query-secret-2", auth),
        "by-hand-3": ("/nowhere?X-Amz-Signature=query-secret-3", {}),
    }
    with _server([UVICORN, "app.main:app"], tmp_path, s3_server, bucket) as (api, output):
        for request_id, (path, headers) in sent.items():
            answer = httpx.get(api + path, headers={**headers, "X-Request-ID": request_id})
            assert answer.status_code in (200, 404), answer.text
    text = output.read_text()
    assert "Uvicorn running on" in text  # uvicorn's own lines are there, and only its access log
    assert "query-secret" not in text
    assert ' HTTP/1.1"' not in text  # uvicorn's access line: `... - "GET /path?query HTTP/1.1" 200`
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [x for x in records if x["logger"] == "s3gate.access"]
    for request_id, (path, _) in sent.items():
        mentions = [line for line in text.splitlines() if path.split("?")[0] in line]
        (mine,) = [x for x in access if x["request_id"] == request_id]
        assert mentions == [next(line for line in mentions if request_id in line)], mentions
        assert mine["path"] == path.split("?")[0]


UNSHARED_METRICS_WARNING = "PROMETHEUS_MULTIPROC_DIR is not set"


def test_uvicorn_with_several_workers_and_no_metrics_dir_warns_once_per_worker(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    argv = [UVICORN, "app.main:app", "--workers", "2"]
    with _server(argv, tmp_path, s3_server, bucket) as (_, output):
        wait_until(lambda: output.read_text().count("Application startup complete") == 2)
    warnings = [
        line for line in output.read_text().splitlines() if UNSHARED_METRICS_WARNING in line
    ]
    assert len(warnings) == 2, warnings
    assert all('"level": "warning"' in line and "2 workers" in line for line in warnings)


def test_one_uvicorn_worker_or_s3gate_serve_does_not_warn_about_metrics(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    for argv, workers in (([UVICORN, "app.main:app"], 1), ([S3GATE, "serve", "--workers", "2"], 2)):
        with _server(argv, tmp_path, s3_server, bucket) as (_, output):
            wait_until(
                lambda: output.read_text().count("Application startup complete") == workers  # noqa: B023
            )
        assert UNSHARED_METRICS_WARNING not in output.read_text()


def test_text_logs_of_a_running_server_have_no_line_a_client_wrote(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    forged = "2026-01-01 00:00:00,000 INFO s3gate.audit issued download url owner=victim"
    sub = f"mallory\n{forged}\u2028{forged}"
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    with _server([S3GATE, "serve"], tmp_path, s3_server, bucket, S3GATE_LOG_FORMAT="text") as (
        api,
        output,
    ):
        token = mint_token(TEST_JWT_SECRET, sub)
        created = httpx.post(
            f"{api}/uploads", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        # (A sub with control characters may be refused outright; either way nothing is forged.)
        assert created.status_code in (201, 401), created.text
        path = quote(f"/nowhere\n{forged}\r{forged}")
        assert httpx.get(f"{api}{path}").status_code == 404
    lines = output.read_text().splitlines()
    assert [line for line in lines if " s3gate.access " in line]  # the text format, in use
    assert not [line for line in lines if line.startswith(forged[:10])], lines
    if created.status_code == 201:
        (issued,) = [line for line in lines if " issued upload url " in line]
        assert 'owner="mallory\\n2026-01-01 ' in issued
