"""A ledger row in Python (FileRecord) and each dialect's conversions, all from files_table.

FileRecord is written out rather than generated from the table because mypy must see its typed
fields; the check at import below refuses to load it if they ever differ from the columns.

The conversions are the column types' own, SQLAlchemy's bind and result processors for the
driver's dialect (Uuid as hex on SQLite, UtcDateTime's naive-UTC text there, aware UTC
everywhere), looked up once per dialect and statement. They run here, not through SQLAlchemy's
result machinery, so a row costs a few microseconds; and since they are the conversions the
SQLAlchemy engine uses (migrations, tools), both read and write the same stored values.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import ClauseElement, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from app.models import files_table

COLUMNS: tuple[str, ...] = tuple(files_table.c.keys())
Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: uuid.UUID
    owner_id: str
    object_key: str
    filename: str
    content_type: str
    size: int
    checksum_sha256: str | None
    status: str
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    upload_expires_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    purged_at: datetime | None
    upload_method: str
    multipart_upload_id: str | None
    part_size: int | None
    upload_key: str | None
    verify_lease_until: datetime | None
    part_urls_signed: int = 0


def _check_record_follows_table() -> None:
    """Rows are unpacked by position: the fields must be the columns, in order, typed alike."""
    fields = tuple(field.name for field in dataclasses.fields(FileRecord))
    if fields != COLUMNS:
        raise TypeError(f"FileRecord's fields {fields} are not files_table's columns {COLUMNS}")
    hints = typing.get_type_hints(FileRecord)
    for column in files_table.c:
        expected: Any = column.type.python_type
        if column.nullable:
            expected = expected | None
        if hints[column.name] != expected:
            raise TypeError(f"FileRecord.{column.name} is {hints[column.name]}, not {expected}")


_check_record_follows_table()


def result_converters(
    dialect: Dialect, table: Table = files_table
) -> tuple[tuple[int, Convert], ...]:
    """(position, conversion) for each column of the table whose values the dialect's driver
    returns in another form than its record's; the other columns are taken as they come."""
    converters = []
    for index, column in enumerate(table.c):
        convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if convert is not None:
            converters.append((index, convert))
    return tuple(converters)


class Compiled(NamedTuple):
    """A statement compiled for one dialect, with what binding its parameters takes."""

    sql: str
    defaults: dict[str, Any]  # literal values (status names, OFFSET 0) as bound parameters
    converters: tuple[tuple[str, Convert], ...]  # (parameter, conversion), if it needs one


def compile_for(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """The SQL, and each parameter's conversion from its type (a column's, where it is compared
    with or assigned to one: `file_id` is converted as `id` is)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    # A value written into the statement (`.values(x=None)`, a status name) is a default; a
    # bindparam() without one is the caller's to give.
    defaults = {k: v for k, v in compiled.params.items() if not compiled.binds[k].required}
    converters = []
    for name, bind in compiled.binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converters.append((name, convert))
    return Compiled(str(compiled), defaults, tuple(converters))


def column_values(record: FileRecord) -> dict[str, Any]:
    """The record as parameters named after the columns (an insert's)."""
    return {name: getattr(record, name) for name in COLUMNS}
