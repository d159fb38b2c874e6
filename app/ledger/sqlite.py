"""The SQLite driver: one stdlib sqlite3 connection on the event loop (see driver.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect

from app.errors import DatabaseUnavailable, MigrationsPending
from app.ledger.driver import DuplicateKey, FollowUp, Params, Row

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


# Group commit: the writes issued in one turn of the event loop run in one transaction. Each
# committed transaction writes every page it changed to the WAL (the files table and its five
# indexes: ~25% of a worker's CPU under a load of inserts, one transaction each); a batch
# shares those pages. Nothing is answered before its COMMIT, and a failing statement is undone
# alone (SQLite's ABORT keeps the transaction and the other statements' changes).
SQLITE_MAX_BATCH = 256


def _is_write(sql: str) -> bool:
    return not sql.startswith(("SELECT", "WITH"))


@dataclass(eq=False)
class _Write:
    work: Callable[[], Any]
    future: asyncio.Future[Any]
    deadline: float
    attempts: int = 0


class SqliteDriver:
    """One stdlib connection, used on the event loop: a statement is a few microseconds.

    It never waits there: busy_timeout is 0 and a locked database (another process writing) is
    retried later, a read with asyncio.sleep and a batch of writes with call_later. The only
    fsyncs, WAL checkpoints, run in a worker thread.
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
        self._loop = asyncio.get_running_loop()
        self._writes = 0
        self._queue: deque[_Write] = deque()
        self._flush_scheduled = False
        self.batches = 0  # transactions committed (the tests read it)
        self._checkpointer = None if self._memory else self._loop.create_task(self._checkpoints())

    async def fetch_one(self, sql: str, params: Params) -> Row | None:
        work = lambda: self._conn.execute(sql, params).fetchone()  # noqa: E731
        row: Row | None = await (self._write(work) if _is_write(sql) else self._read(work))
        return row

    async def fetch_all(self, sql: str, params: Params) -> list[Row]:
        work = lambda: self._conn.execute(sql, params).fetchall()  # noqa: E731
        rows: list[Row] = await (self._write(work) if _is_write(sql) else self._read(work))
        return rows

    async def execute(self, sql: str, params: Params) -> None:
        work = lambda: self._conn.execute(sql, params)  # noqa: E731
        await (self._write(work) if _is_write(sql) else self._read(work))

    async def execute_many(self, sql: str, params: Sequence[Params]) -> None:
        def work() -> None:
            # A savepoint as write_with's: a row that fails undoes this job's earlier rows too.
            self._conn.execute("SAVEPOINT execute_many")
            try:
                self._conn.executemany(sql, params)
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK TO execute_many")
                    self._conn.execute("RELEASE execute_many")
                raise
            self._conn.execute("RELEASE execute_many")

        await self._write(work)

    async def fetch_one_serialized(self, lock: str, sql: str, params: Params) -> Row | None:
        # SQLite runs one write statement at a time, reading everything committed before it.
        return await self.fetch_one(sql, params)

    async def write_with(self, sql: str, params: Params, then: FollowUp) -> list[Row]:
        def work() -> list[Row]:
            # Its own savepoint in the batch's transaction: a failing follow-up undoes the
            # first statement too, and only this job's.
            self._conn.execute("SAVEPOINT write_with")
            try:
                rows: list[Row] = self._conn.execute(sql, params).fetchall()
                for follow_sql, follow_params in then(rows):
                    self._conn.execute(follow_sql, follow_params)
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK TO write_with")
                    self._conn.execute("RELEASE write_with")
                raise
            self._conn.execute("RELEASE write_with")
            return rows

        result: list[Row] = await self._write(work)
        return result

    async def _read(self, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
        delay = 0.001
        while True:
            try:
                return work()
            except sqlite3.Error as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise _translate(exc) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _write(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        self._queue.append(_Write(work, future, time.monotonic() + SQLITE_LOCK_WAIT_SECONDS))
        self._schedule_flush()
        return future

    def _schedule_flush(self, delay: float = 0.0) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        if delay:
            self._loop.call_later(delay, self._flush)
        else:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Run the queued writes in one transaction, then answer each of them."""
        self._flush_scheduled = False
        count = min(len(self._queue), SQLITE_MAX_BATCH)
        # a job whose caller was cancelled before it ran is dropped: nothing was done
        batch = [
            job for job in (self._queue.popleft() for _ in range(count)) if not job.future.done()
        ]
        if self._queue:
            self._schedule_flush()
        if batch:
            try:
                self._run(batch)
            except BaseException as exc:  # a bug, not a database answer: no caller is left waiting
                self._rollback()
                for job in batch:
                    _answer(job, None, exc)
                raise

    def _run(self, batch: list[_Write]) -> None:
        outcomes: list[tuple[_Write, Any, BaseException | None]] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for index, job in enumerate(batch):
                try:
                    outcomes.append((job, job.work(), None))
                except Exception as exc:  # each failure is its own caller's answer
                    if _busy(exc):
                        raise
                    if not self._conn.in_transaction:
                        # an error that ended the transaction: the others run again without it
                        _answer(job, None, _translate(exc))
                        self._retry(batch[:index] + batch[index + 1 :])
                        return
                    outcomes.append((job, None, _translate(exc)))  # undone alone
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:  # locked out (BEGIN, a statement, COMMIT), or COMMIT failed
            self._rollback()
            if _busy(exc):
                self._retry(batch)
                return
            error = _translate(exc)
            for job in batch:
                _answer(job, None, error)
            return
        self._writes += len(batch)
        self.batches += 1
        for job, result, failure in outcomes:
            _answer(job, result, failure)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _retry(self, jobs: list[_Write]) -> None:
        now = time.monotonic()
        waiting = []
        for job in jobs:
            if now > job.deadline:
                log.warning("sqlite write failed: the database stayed locked")
                _answer(job, None, DatabaseUnavailable())
            else:
                job.attempts += 1
                waiting.append(job)
        if not waiting:
            return
        self._queue.extendleft(reversed(waiting))
        attempts = max(job.attempts for job in waiting)
        self._schedule_flush(min(0.001 * 2 ** min(attempts, 6), 0.05))

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
        if self._queue:
            self._flush()  # the server has drained: whatever is left is written, not dropped
        self._conn.close()


def _busy(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _translate(exc: Exception) -> Exception:
    """The ledger's error for a failed statement (other errors are bugs, raised as they are)."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return DuplicateKey()
    if not isinstance(exc, sqlite3.OperationalError):
        return exc  # a bug (or a CHECK or foreign key refusal): raised as it is
    if _SCHEMA_BEHIND.match(str(exc)):
        return MigrationsPending()
    log.warning("sqlite call failed: %s", exc.sqlite_errorname)
    return DatabaseUnavailable()


def _answer(job: _Write, result: Any, error: BaseException | None) -> None:
    if job.future.done():
        return
    if error is None:
        job.future.set_result(result)
    else:
        job.future.set_exception(error)
