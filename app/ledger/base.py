"""What the ledger's rooms share: compiled statements run through the driver, each call timed
and its failures counted (the `statement` label is the method's name)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, TypeVar, cast

from sqlalchemy import ClauseElement

from app.ledger.driver import Driver, Params, Row
from app.ledger.rows import Compiled, Convert, compile_for
from app.metrics import CallMetrics, metrics

Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])
TIMED: list[str] = []  # the `statement` label values: the timed methods' names


class IdempotencyKeyTaken(Exception):
    """Another request inserted a file with this owner's Idempotency-Key first."""


def timed(method: Method) -> Method:
    """Time each call and count its failures, labelled with the method's name."""
    name = method.__name__
    TIMED.append(name)

    @functools.wraps(method)
    async def timed_call(self: SqlRoom, /, *args: Any, **kwargs: Any) -> Any:
        calls = self._calls[name]
        started = perf_counter()
        try:
            return await method(self, *args, **kwargs)
        except IdempotencyKeyTaken:
            raise  # a concurrent request took the key first: answered as its replay
        except BaseException:  # a call cancelled mid-way (a timed-out readiness check) too
            calls.errors.inc()
            raise
        finally:
            calls.duration.observe(perf_counter() - started)

    return cast(Method, timed_call)


class SqlRoom:
    """Statements compiled once for the driver's dialect, bound and converted by their types."""

    def __init__(self, driver: Driver, statements: Mapping[Any, ClauseElement]) -> None:
        self._driver = driver
        self._calls: dict[str, CallMetrics] = {name: metrics().db_call(name) for name in TIMED}
        self._compiled: dict[Any, Compiled] = {
            name: compile_for(statement, driver.dialect) for name, statement in statements.items()
        }

    def _bind(self, statement: Compiled, params: Params) -> dict[str, Any]:
        """The parameters as the driver takes them: each converted by its type (rows.py)."""
        bound = {**statement.defaults, **params}
        for name, convert in statement.converters:
            value = bound.get(name)
            if value is not None:  # NULL on every dialect: nothing to convert
                bound[name] = convert(value)
        return bound

    def compiled(self, key: Any) -> Compiled:
        """One of this room's statements, for another room to run in its own transaction."""
        return self._compiled[key]

    def _bound(self, key: Any, params: Params) -> tuple[str, dict[str, Any]]:
        statement = self._compiled[key]
        return statement.sql, self._bind(statement, params)


def converted(row: Row, converters: tuple[tuple[int, Convert], ...]) -> list[Any]:
    """The row's values as its record takes them (every column, in the table's order)."""
    values = list(row)
    for index, convert in converters:
        value = values[index]
        if value is not None:
            values[index] = convert(value)
    return values
