"""The baseline: the cheapest useful FastAPI endpoint, served by the same uvicorn stack.

`uvicorn bench.baseline_app:app` with the flags s3gate gets. s3gate's rows are reported as a
fraction of this endpoint's req/s, so the ratio is about s3gate's own work (auth, validation,
ledger, signing, S3 calls) and not about the machine, Python, uvicorn or FastAPI.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="s3gate bench baseline", openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/baseline")
async def baseline() -> dict[str, str]:
    """No dependencies, no I/O: a small JSON dict, validated and serialised by FastAPI."""
    return {"status": "ok"}
