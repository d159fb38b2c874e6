"""The event feed: backends that poll read what webhooks would have told them."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.errors import InvalidToken, MissingToken, ValidationFailed
from app.http.deps import EventsDep, PrincipalDep
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.schemas import EventPageOut

router = APIRouter(tags=["events"], route_class=LeanRoute)


@router.get(
    "/events",
    response_model=EventPageOut,
    summary="Read file events in commit order",
    responses=problem_responses(MissingToken, InvalidToken, ValidationFailed),
)
async def list_events(
    principal: PrincipalDep,
    events: EventsDep,
    after: Annotated[
        str | None,
        Query(
            max_length=32,
            description="The previous read's `next_cursor`; none: from the oldest event kept.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """An admin token reads every owner's events, any other token its own files' events.
    Events stay for S3GATE_EVENT_RETENTION_DAYS (default 30)."""
    page = await events.read(principal, after=after, limit=limit)
    # The stored payloads are the events' JSON already: joined, not parsed and dumped again.
    items = ",".join(event.payload for event in page.items)
    body = f'{{"items":[{items}],"next_cursor":{json.dumps(page.next_cursor)}}}'
    return Response(body.encode(), media_type="application/json")
