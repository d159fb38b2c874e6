"""File routes: list, read and delete the caller's files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.errors import (
    Forbidden,
    InvalidToken,
    MissingToken,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)
from app.http.deps import FileIdDep, FilesDep, PrincipalDep
from app.http.problems import problem_responses
from app.schemas import FileListOut, FileOut

router = APIRouter(tags=["files"])


@router.get(
    "/files",
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
) -> FileListOut:
    """Cursor pagination: pass `next_cursor` back as `cursor` until it is null."""
    page = await files.list_files(principal, limit=limit, cursor=cursor, owner=owner)
    return FileListOut(
        items=[FileOut.model_validate(item) for item in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/files/{file_id}",
    summary="Get one file",
    responses=problem_responses(MissingToken, InvalidToken, NotFound),
)
async def get_file(file_id: FileIdDep, principal: PrincipalDep, files: FilesDep) -> FileOut:
    return FileOut.model_validate(await files.get_file(principal, file_id))


@router.delete(
    "/files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a file and its object",
    responses=problem_responses(MissingToken, InvalidToken, NotFound, StorageUnavailable),
)
async def delete_file(file_id: FileIdDep, principal: PrincipalDep, files: FilesDep) -> None:
    """A second delete answers 404."""
    await files.delete_file(principal, file_id)
