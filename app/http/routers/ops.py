"""Liveness and readiness probes and Prometheus metrics (no authentication)."""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread
from fastapi import APIRouter, Response

from app.errors import NotReady
from app.http.deps import StateDep
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.metrics import exposition
from app.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["operations"], route_class=LeanRoute)
log = logging.getLogger("s3gate.ops")
DB_CHECK_TIMEOUT_SECONDS = 2.0
READY_CHECKS = ("database", "migrations", "verification_keys", "s3_credentials")


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process runs")
async def healthz() -> Response:
    """Touches no dependency, so a slow database never gets a healthy process restarted."""
    return ModelResponse(HealthOut(status="ok"))


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness",
    description=(
        "200 when the database answers with its schema at this version's migration head, token "
        "verification keys are loaded and S3 credentials are there to sign with. Else 503 "
        "`not_ready` naming each failing check: `database`, `migrations_pending` (run "
        "`s3gate migrate`), `verification_keys`, `s3_credentials`."
    ),
    responses=problem_responses(NotReady),
)
async def readyz(state: StateDep) -> Response:
    """One SELECT (the schema revision) answers both the database and the migrations check."""
    failing = []
    hints = []
    try:
        pending = await asyncio.wait_for(
            state.ledger.pending_migrations(), DB_CHECK_TIMEOUT_SECONDS
        )
    except Exception as exc:  # any failure of the check means not ready
        log.warning("readiness: database check failed: %s", type(exc).__name__)
        failing.append("database")
    else:
        if pending is not None:
            failing.append(pending.code)
            hints.append(pending.detail)
    if not state.verifier.keys_loaded:
        failing.append("verification_keys")
    if not state.use_cases.signer.has_credentials:
        failing.append("s3_credentials")
        hints.append("No S3 credentials were found (or they expired): URL routes answer 503.")
    if failing:
        raise NotReady(" ".join([f"Failing checks: {', '.join(failing)}.", *hints]))
    return ModelResponse(ReadyOut(status="ok", checks=dict.fromkeys(READY_CHECKS, "ok")))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text exposition", "content": {"text/plain": {}}}},
)
async def metrics() -> Response:
    """Totals of every worker process of this server; reads no dependency."""
    # In a thread: with several workers this reads and merges their sample files (ms of I/O).
    body, content_type = await anyio.to_thread.run_sync(exposition)
    return Response(body, media_type=content_type)
