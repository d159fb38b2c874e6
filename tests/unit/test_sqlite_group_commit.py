"""The SQLite driver's group commit: the writes of one event-loop turn share one transaction,
and each caller still gets its own answer, only after COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.errors import DatabaseUnavailable
from app.ledger import sqlite as sqlite_module
from app.ledger.driver import DuplicateKey
from app.ledger.sqlite import SqliteDriver

INSERT = "INSERT INTO t (k, v) VALUES (:k, :v)"


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    path = str(tmp_path / "ledger.db")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        conn.commit()
    driver = SqliteDriver(path)
    yield driver
    await driver.close()


def _committed(driver: SqliteDriver) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(driver._path)) as conn:  # another connection
        return dict(conn.execute("SELECT k, v FROM t").fetchall())


async def test_concurrent_writes_share_one_transaction(driver: SqliteDriver) -> None:
    await asyncio.gather(*(driver.execute(INSERT, {"k": f"k{n}", "v": n}) for n in range(100)))
    assert driver.batches == 1
    assert _committed(driver) == {f"k{n}": n for n in range(100)}


async def test_a_duplicate_key_fails_alone(driver: SqliteDriver) -> None:
    await driver.execute(INSERT, {"k": "taken", "v": 0})
    results = await asyncio.gather(
        driver.execute(INSERT, {"k": "a", "v": 1}),
        driver.execute(INSERT, {"k": "taken", "v": 2}),
        driver.execute(INSERT, {"k": "b", "v": 3}),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], DuplicateKey)
    assert _committed(driver) == {"taken": 0, "a": 1, "b": 3}


async def test_returning_rows_reach_their_own_callers(driver: SqliteDriver) -> None:
    rows = await asyncio.gather(
        *(
            driver.fetch_one(INSERT + " RETURNING k, v", {"k": f"r{n}", "v": n * 10})
            for n in range(5)
        )
    )
    assert [tuple(row) for row in rows if row is not None] == [(f"r{n}", n * 10) for n in range(5)]


async def test_a_write_waits_for_another_process_lock_then_lands(driver: SqliteDriver) -> None:
    other = sqlite3.connect(driver._path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    write = asyncio.ensure_future(driver.execute(INSERT, {"k": "late", "v": 1}))
    await asyncio.sleep(0.2)
    assert not write.done()  # retried, not failed, and nothing answered before COMMIT
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(write, timeout=2)
    assert _committed(driver) == {"late": 1}


async def test_a_lock_held_past_the_wait_is_a_503_not_a_hang(
    driver: SqliteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "SQLITE_LOCK_WAIT_SECONDS", 0.3)
    other = sqlite3.connect(driver._path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(driver.execute(INSERT, {"k": "x", "v": 1}), timeout=3)
    finally:
        other.execute("ROLLBACK")
        other.close()
    await driver.execute(INSERT, {"k": "after", "v": 2})  # the driver is still usable
    assert _committed(driver) == {"after": 2}


async def test_a_caller_cancelled_before_the_flush_writes_nothing(driver: SqliteDriver) -> None:
    write = asyncio.ensure_future(driver.execute(INSERT, {"k": "gone", "v": 1}))
    await asyncio.sleep(0)  # queued
    write.cancel()
    kept = driver.execute(INSERT, {"k": "kept", "v": 2})
    await kept
    assert _committed(driver) == {"kept": 2}


async def test_a_bug_in_one_statement_does_not_strand_the_others(driver: SqliteDriver) -> None:
    results = await asyncio.gather(
        driver.execute(INSERT, {"k": "ok", "v": 1}),
        driver.execute(INSERT, {"k": "bad"}),  # a missing parameter: ProgrammingError
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], sqlite3.ProgrammingError)
    assert _committed(driver) == {"ok": 1}
