"""Never 500 for client input: every operation of the service's own OpenAPI document, fuzzed by
schemathesis (valid and invalid bodies, paths, queries and headers) against a real `s3gate serve`
on SeaweedFS, with the ledger on SQLite and PostgreSQL. Each answer is below 500 and, when it is
an error, application/problem+json with a `code`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from app.devstack import EmbeddedS3
from devkit.processes import stop_process
from tests.support import S3GATE, Api, serve_api

TOKENS = {"owner": Api.auth("fuzz-owner"), "admin": Api.auth("fuzz-admin", admin=True)}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live_api(
    request: pytest.FixtureRequest,
    s3_server: EmbeddedS3,
    bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real `s3gate serve` (rate limits off, so every case reaches the handlers)."""
    workdir = tmp_path_factory.mktemp("fuzz")
    database_url = (
        f"sqlite:///{workdir / 'ledger.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    log = workdir / "serve.log"
    with log.open("w") as sink:
        base, server = serve_api(
            [S3GATE, "serve"],
            tmp_path=workdir,
            s3=s3_server,
            bucket=bucket,
            stdout=sink,
            database_url=database_url,
            S3GATE_RATE_LIMIT_PER_MINUTE="0",
            S3GATE_DEMO="true",
        )
    try:
        yield base
    finally:
        stop_process(server)
        errors = [line for line in log.read_text().splitlines() if '"ERROR"' in line]
        assert not errors, errors[:3]  # an unexpected exception is logged at ERROR


def _operations(base: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_no_client_input_gets_a_server_error(live_api: str, mode: GenerationMode) -> None:
    operations = _operations(live_api)
    assert len(operations) >= 10  # the document lists every route (POST /uploads, complete...)
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same cases every run: a failure here is reproducible
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            for token in TOKENS.values():  # an owner's answers and an admin's
                calls += 1
                response = case.call(base_url=live_api, headers=token, timeout=30)
                where = (case.method, case.formatted_path, response.status_code)
                assert response.status_code < 500, (*where, response.text[:300])
                if response.status_code >= 400 and case.method != "HEAD":
                    content_type = response.headers["content-type"]  # a list of values
                    assert content_type == ["application/problem+json"], where
                    assert response.json()["code"], where

        try:
            check()
        except Unsatisfiable:
            # An operation with nothing to get wrong (no parameters, no body) has no invalid
            # cases to generate.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls > 10 * len(TOKENS) * len(operations)
