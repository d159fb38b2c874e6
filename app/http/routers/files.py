"""File routes: list, read and delete the caller's files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.errors import (
    Forbidden,
    InvalidToken,
    MissingToken,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)
from app.http.deps import FileIdDep, FilesDep, PrincipalDep
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.schemas import FileListOut, FileOut

router = APIRouter(tags=["files"], route_class=LeanRoute)


@router.get(
    "/files",
    response_model=FileListOut,
    summary="List files, newest first",
    responses=problem_responses(MissingToken, InvalidToken, Forbidden, ValidationFailed),
)
async def list_files(
    principal: PrincipalDep,
    files: FilesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    owner: Annotated[
        str | None, Query(min_length=1, max_length=255, description="Admins only: whose files.")
    ] = None,
    shared: Annotated[
        bool,
        Query(description="The files other owners shared with the caller (a live grant)."),
    ] = False,
) -> Response:
    """Cursor pagination: pass `next_cursor` back as `cursor` until it is null."""
    page = await files.list_files(principal, limit=limit, cursor=cursor, owner=owner, shared=shared)
    items = [FileOut.model_validate(item) for item in page.items]
    return ModelResponse(FileListOut(items=items, next_cursor=page.next_cursor))


@router.get(
    "/files/{file_id}",
    response_model=FileOut,
    summary="Get one file",
    responses=problem_responses(MissingToken, InvalidToken, NotFound),
)
async def get_file(file_id: FileIdDep, principal: PrincipalDep, files: FilesDep) -> Response:
    """The owner's, an admin's, or a grantee's (a live grant); anyone else gets 404."""
    return ModelResponse(FileOut.model_validate(await files.get_file(principal, file_id)))


@router.delete(
    "/files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a file and its object",
    responses=problem_responses(MissingToken, InvalidToken, NotFound, StorageUnavailable),
)
async def delete_file(file_id: FileIdDep, principal: PrincipalDep, files: FilesDep) -> Response:
    """The owner, an admin, or a grantee with `delete`. A second delete answers 404."""
    await files.delete_file(principal, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
