"""Startup: whatever step fails, everything opened before it is closed again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app import lifespan
from app.config import Settings
from app.main import create_app
from tests.support import offline_settings


class Boom(Exception):
    """The injected failure of one startup step."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return offline_settings(tmp_path, reaper_interval_seconds=60)


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the resources open_use_cases built and then closed, in closing order."""
    closed: list[str] = []
    open_ledger, make_clients = lifespan.Ledger.open, lifespan.s3_clients

    async def ledger_open(settings: Settings, *args: Any) -> Any:
        ledger = await open_ledger(settings, *args)
        close = ledger.close

        async def recorded_close() -> None:
            closed.append("ledger")
            await close()

        monkeypatch.setattr(ledger, "close", recorded_close)
        return ledger

    def clients(settings: Settings) -> Any:
        storage_client, signing_client, credentials = make_clients(settings)
        for name, client in (
            ("storage client", storage_client),
            ("signing client", signing_client),
        ):
            monkeypatch.setattr(client, "close", _recorder(closed, name, client.close))
        return storage_client, signing_client, credentials

    monkeypatch.setattr(lifespan.Ledger, "open", staticmethod(ledger_open))
    monkeypatch.setattr(lifespan, "s3_clients", clients)
    return closed


def _recorder(log: list[str], name: str, close: Callable[[], Any]) -> Callable[[], Any]:
    def recorded() -> Any:
        log.append(name)
        return close()

    return recorded


def _failing(*_: Any, **__: Any) -> Any:
    raise Boom


@pytest.mark.parametrize(
    ("step", "opened_before"),
    [
        ("s3_clients", ["ledger"]),
        ("Signer", ["signing client", "storage client", "ledger"]),
        ("Storage", ["signing client", "storage client", "ledger"]),
        ("build_use_cases", ["signing client", "storage client", "ledger"]),
    ],
)
async def test_a_failed_step_of_open_use_cases_closes_what_was_opened_before_it(
    settings: Settings,
    closed: list[str],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    opened_before: list[str],
) -> None:
    if step == "s3_clients":  # fails after the ledger opened, before any client exists
        monkeypatch.setattr(lifespan, "s3_clients", _failing)
    else:
        monkeypatch.setattr(lifespan, step, _failing)
    with pytest.raises(Boom):
        async with lifespan.open_use_cases(settings):
            pytest.fail("the service must not start")
    assert closed == opened_before


async def test_open_use_cases_closes_everything_on_the_way_out(
    settings: Settings, closed: list[str]
) -> None:
    async with lifespan.open_use_cases(settings):
        assert closed == []
    assert closed == ["signing client", "storage client", "ledger"]


@pytest.mark.parametrize("step", ["verifier", "ledger", "reaper"])
async def test_a_failed_start_of_the_app_closes_the_limiter_verifier_and_service(
    settings: Settings, closed: list[str], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_per_minute": 60}))
    limiter = lifespan.rate_limiter(app.state.settings)
    monkeypatch.setattr(lifespan, "rate_limiter", lambda settings: limiter)
    monkeypatch.setattr(limiter, "aclose", _async_recorder(closed, "limiter", limiter.aclose))
    verifier = app.state.verifier
    monkeypatch.setattr(verifier, "aclose", _async_recorder(closed, "verifier", verifier.aclose))
    if step == "verifier":
        monkeypatch.setattr(verifier, "start", _async_failing)
    elif step == "ledger":
        monkeypatch.setattr(lifespan.Ledger, "open", staticmethod(_async_failing))
    else:
        monkeypatch.setattr(lifespan, "_reap_periodically", _failing)
    with pytest.raises(Boom):
        async with app.router.lifespan_context(app):
            pytest.fail("the app must not start")
    service = ["signing client", "storage client", "ledger"] if step == "reaper" else []
    assert closed[: len(service)] == service
    assert sorted(closed[len(service) :]) == ["limiter", "verifier"]


def _async_recorder(log: list[str], name: str, close: Callable[[], Any]) -> Callable[[], Any]:
    async def recorded() -> None:
        log.append(name)
        await close()

    return recorded


async def _async_failing(*_: Any, **__: Any) -> Any:
    raise Boom
