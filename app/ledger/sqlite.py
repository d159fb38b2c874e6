"""The SQLite driver: one stdlib sqlite3 connection on the event loop (see driver.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect

from app.errors import DatabaseUnavailable, MigrationsPending
from app.ledger.driver import DuplicateKey, Params, Row

log = logging.getLogger("s3gate.ledger")
T = TypeVar("T")

SQLITE_LOCK_WAIT_SECONDS = 5.0
SQLITE_CHECKPOINT_INTERVAL_SECONDS = 1.0
# Under sustained writes a PASSIVE checkpoint never catches up with the writer, so the WAL
# only grows (823 MB in 30 s was measured). Past SQLITE_WAL_TRUNCATE_BYTES the checkpointer
# runs a TRUNCATE checkpoint instead, which makes the writer wait (asynchronously: it sees
# SQLITE_BUSY and retries) while the WAL is copied back and emptied. The WAL is looked at every
# SQLITE_WAL_CHECK_SECONDS, so at full write speed it stays far below SQLITE_WAL_LIMIT_BYTES,
# which is also SQLite's journal_size_limit (the size a reset WAL file is cut back to).
SQLITE_WAL_CHECK_SECONDS = 0.25
SQLITE_WAL_TRUNCATE_BYTES = 4 * 1024 * 1024
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024
# What SQLite says to a statement naming a table or column that no migration has created yet.
_SCHEMA_BEHIND = re.compile(r"no such (table|column)|table \S+ has no column named")


class SqliteDriver:
    """One stdlib connection, used on the event loop: a statement is a few microseconds.

    It never waits there: busy_timeout is 0 and a locked database (another process writing) is
    retried with asyncio.sleep. The only fsyncs, WAL checkpoints, run in a worker thread.
    """

    dialect: Dialect = sqlite_dialect.dialect(paramstyle="named")

    def __init__(self, path: str) -> None:
        self._path = path
        self._memory = path in ("", ":memory:")
        self._conn = sqlite3.connect(
            path or ":memory:", isolation_level=None, check_same_thread=False, timeout=0
        )
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA foreign_keys=ON")
        if not self._memory:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only checkpoints fsync.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn.execute(f"PRAGMA journal_size_limit={int(SQLITE_WAL_LIMIT_BYTES)}")
        self._writes = 0
        self._checkpointer = (
            None if self._memory else asyncio.get_running_loop().create_task(self._checkpoints())
        )

    async def fetch_one(self, sql: str, params: Params) -> Row | None:
        row: Row | None = await self._call(lambda: self._conn.execute(sql, params).fetchone())
        return row

    async def fetch_all(self, sql: str, params: Params) -> list[Row]:
        rows: list[Row] = await self._call(lambda: self._conn.execute(sql, params).fetchall())
        return rows

    async def execute(self, sql: str, params: Params) -> None:
        await self._call(lambda: self._conn.execute(sql, params))

    async def fetch_one_serialized(self, lock: str, sql: str, params: Params) -> Row | None:
        # SQLite runs one write statement at a time, reading everything committed before it.
        return await self.fetch_one(sql, params)

    async def _call(self, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
        delay = 0.001
        while True:
            try:
                result = work()
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise DuplicateKey from None
                raise
            except sqlite3.OperationalError as exc:
                if _SCHEMA_BEHIND.match(str(exc)):
                    raise MigrationsPending() from None
                busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    log.warning("sqlite call failed: %s", exc.sqlite_errorname)
                    raise DatabaseUnavailable() from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            self._writes += 1
            return result

    async def _checkpoints(self) -> None:
        wal = f"{self._path}-wal"
        last_passive = time.monotonic()
        while True:
            await asyncio.sleep(SQLITE_WAL_CHECK_SECONDS)
            try:
                size = os.stat(wal).st_size  # one stat: cheap enough for the event loop
            except OSError:
                size = 0
            if size > SQLITE_WAL_TRUNCATE_BYTES:
                mode = "TRUNCATE"
            elif self._writes and time.monotonic() - last_passive >= (
                SQLITE_CHECKPOINT_INTERVAL_SECONDS
            ):
                mode = "PASSIVE"
            else:
                continue
            self._writes = 0
            last_passive = time.monotonic()
            try:
                await anyio.to_thread.run_sync(self._checkpoint, mode)
            except sqlite3.Error as exc:  # retried at the next interval
                log.warning("sqlite checkpoint failed: %s", type(exc).__name__)

    def _checkpoint(self, mode: str = "PASSIVE") -> None:
        with contextlib.closing(sqlite3.connect(self._path, timeout=5)) as conn:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            await anyio.to_thread.run_sync(self._checkpoint)
        self._conn.close()
