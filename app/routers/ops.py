"""Liveness and readiness probes and Prometheus metrics (no authentication)."""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread
from fastapi import APIRouter, Response

from app.deps import StateDep
from app.errors import NotReady, problem_responses
from app.observability import exposition
from app.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["operations"])
log = logging.getLogger("s3gate.ops")
DB_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="Liveness: the process runs")
async def healthz() -> HealthOut:
    """Touches no dependency, so a slow database never gets a healthy process restarted."""
    return HealthOut(status="ok")


@router.get("/readyz", summary="Readiness", responses=problem_responses(NotReady))
async def readyz(state: StateDep) -> ReadyOut:
    """Ready when the database answers quickly and token verification keys are loaded."""
    failing = []
    try:
        await asyncio.wait_for(state.ledger.ping(), DB_CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure of the check means not ready
        log.warning("readiness: database check failed: %s", type(exc).__name__)
        failing.append("database")
    if not state.verifier.keys_loaded:
        failing.append("verification_keys")
    if failing:
        raise NotReady(f"Failing checks: {', '.join(failing)}.")
    return ReadyOut(status="ok", checks={"database": "ok", "verification_keys": "ok"})


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
