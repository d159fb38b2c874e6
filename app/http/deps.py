"""The only place `Depends(...)` is spelled; handlers take these aliases.

Every dependency is `async def` and reads app state directly, one level deep: FastAPI runs
plain `def` dependencies in the thread pool, and each extra node in the dependency graph costs
more per request than the work it does (measured in bench/).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from app.auth import Principal
from app.config import Settings
from app.errors import NotFound
from app.lifespan import AppState
from app.logs import note_owner
from app.usecases.access import AccessRecorder
from app.usecases.completion import Completion
from app.usecases.events import EventFeed
from app.usecases.files import Files
from app.usecases.sharing import Sharing
from app.usecases.uploads import Uploads


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.s3gate
    return state


async def get_uploads(request: Request) -> Uploads:
    state: AppState = request.app.state.s3gate
    return state.use_cases.uploads


async def get_completion(request: Request) -> Completion:
    state: AppState = request.app.state.s3gate
    return state.use_cases.completion


async def get_files(request: Request) -> Files:
    state: AppState = request.app.state.s3gate
    return state.use_cases.files


async def get_events(request: Request) -> EventFeed:
    state: AppState = request.app.state.s3gate
    return state.use_cases.events


async def get_sharing(request: Request) -> Sharing:
    state: AppState = request.app.state.s3gate
    return state.use_cases.sharing


async def get_access(request: Request) -> AccessRecorder:
    state: AppState = request.app.state.s3gate
    return state.use_cases.access


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_principal(request: Request) -> Principal:
    # The header is read raw so that a missing header and a wrong scheme get the contract's
    # two different answers; OpenAPI declares the bearer scheme separately (main.py).
    state: AppState = request.app.state.s3gate
    principal = await state.verifier.authenticate(request.headers.get("authorization"))
    note_owner(principal.sub)  # for the request's access log line
    return principal


async def get_limited_principal(request: Request) -> Principal:
    """The caller, counted against its rate limit (routes that issue URLs)."""
    state: AppState = request.app.state.s3gate
    principal = await state.verifier.authenticate(request.headers.get("authorization"))
    note_owner(principal.sub)
    await state.limiter.check(principal.sub)
    return principal


async def parse_file_id(
    file_id: Annotated[str, Path(description="The file's id (a UUID).")],
) -> uuid.UUID:
    # A malformed id names no file, so it gets the same 404 as any id the caller cannot see.
    try:
        return uuid.UUID(file_id)
    except ValueError:
        raise NotFound() from None


StateDep = Annotated[AppState, Depends(get_state)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
CompletionDep = Annotated[Completion, Depends(get_completion)]
FilesDep = Annotated[Files, Depends(get_files)]
EventsDep = Annotated[EventFeed, Depends(get_events)]
SharingDep = Annotated[Sharing, Depends(get_sharing)]
AccessDep = Annotated[AccessRecorder, Depends(get_access)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
LimitedPrincipalDep = Annotated[Principal, Depends(get_limited_principal)]
FileIdDep = Annotated[uuid.UUID, Depends(parse_file_id)]
PreferDep = Annotated[
    str | None,
    Header(
        alias="Prefer",
        max_length=255,
        description=(
            "`wait=N` (RFC 7240): hold the answer up to N seconds (at most "
            "S3GATE_COMPLETION_MAX_WAIT_SECONDS) while the file is verified in the background."
        ),
    ),
]
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Makes a retry of this request return the same file (24 hours).",
    ),
]
