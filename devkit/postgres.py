"""Throwaway PostgreSQL databases: a uniquely named database created from an admin URL, its
URL handed out, the database dropped (with its connections) at the end."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

import psycopg
from sqlalchemy.engine import make_url


class PostgresUnreachable(RuntimeError):
    """No connection to the admin URL's server (the message names its error, not its URL)."""


def libpq_url(url: str) -> str:
    """`url` (a SQLAlchemy URL, any PostgreSQL driver) as psycopg.connect takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(
    admin_url: str, *, prefix: str, name: str | None = None, connect_timeout: int | None = None
) -> str:
    """A new, empty database on `admin_url`'s server, named `name` or `prefix` and a random
    suffix; its URL (admin_url with that database, same driver). PostgresUnreachable if the
    server does not answer."""
    name = name or f"{prefix}_{secrets.token_hex(6)}"
    try:
        # (psycopg leaves out a parameter that is None: libpq's default wait then)
        admin = psycopg.connect(
            libpq_url(admin_url), autocommit=True, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        raise PostgresUnreachable(f"PostgreSQL not reachable ({type(exc).__name__})") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop `url`'s database on `admin_url`'s server, closing its connections."""
    name = make_url(url).database
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_database(
    admin_url: str,
    *,
    prefix: str,
    name: str | None = None,
    connect_timeout: int | None = None,
    on_drop_error: Callable[[str, psycopg.Error], None] | None = None,
) -> Iterator[str]:
    """create_database, yield its URL, drop_database at the end. A failed drop raises, or goes
    to `on_drop_error(database name, error)` when given."""
    url = create_database(admin_url, prefix=prefix, name=name, connect_timeout=connect_timeout)
    try:
        yield url
    finally:
        try:
            drop_database(admin_url, url)
        except psycopg.Error as exc:
            if on_drop_error is None:
                raise
            on_drop_error(make_url(url).database or "", exc)
