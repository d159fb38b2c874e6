"""Builds every long-lived resource once per process and disposes of it at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialResolver, Credentials
from fastapi import FastAPI

from app.auth import TokenVerifier
from app.config import Settings
from app.ledger import Ledger
from app.logs import configure_logging, silence_uvicorn_access_log
from app.metrics import worker_started, worker_stopped
from app.profiles import UNKNOWN, StoreProfile, vendor_profile
from app.ratelimit import (
    REDIS_KEY_PREFIX,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    Unlimited,
)
from app.scanner import ClamdScanner, parse_scanner_url
from app.signer import Signer
from app.storage import Storage
from app.usecases import UseCases, build_use_cases
from app.usecases.common import raise_if_cancelled
from app.usecases.dispatch import Dispatcher
from app.usecases.probe import resolve_profile
from app.usecases.reaper import Reaper
from app.webhooks import EVENT_TYPES, WebhookEndpoint, WebhookSender

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("s3gate")

CREDENTIAL_REFRESH_INTERVAL_SECONDS = 60
# S3GATE_STORE_PROFILE=auto: the startup probe's budget (each of its requests times out at 10 s).
PROFILE_PROBE_TIMEOUT_SECONDS = 30.0
SCHEMA_CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    ledger: Ledger
    verifier: TokenVerifier
    use_cases: UseCases
    limiter: RateLimiter


def rate_limiter(settings: Settings) -> RateLimiter:
    """The owners' limit: shared through Redis when configured, per process otherwise, or none."""
    return _limiter(settings, settings.rate_limit_per_minute, settings.rate_limit_burst, "")


def link_rate_limiters(settings: Settings) -> tuple[RateLimiter, RateLimiter]:
    """Share links' limits: per link, and per client address (their own Redis keys)."""
    return (
        _limiter(
            settings, settings.link_rate_limit_per_minute, settings.link_rate_limit_burst, "link"
        ),
        _limiter(
            settings,
            settings.link_address_rate_limit_per_minute,
            settings.link_address_rate_limit_burst,
            "link-address",
        ),
    )


def _limiter(settings: Settings, per_minute: int, burst: int, name: str) -> RateLimiter:
    if not per_minute:
        return Unlimited()
    if settings.redis_url:
        return RedisRateLimiter.from_url(
            settings.redis_url,
            per_minute,
            burst,
            fail_open=settings.rate_limit_fail_open,
            prefix=REDIS_KEY_PREFIX + (f"{name}:" if name else ""),
        )
    return LocalRateLimiter(per_minute, burst)


def s3_clients(settings: Settings) -> tuple[S3Client, S3Client, Credentials | None]:
    """(storage client, signing client, their shared credentials) from boto3's standard chain.

    The chain is asked once. Off EC2 its last step probes instance metadata (botocore's
    AWS_METADATA_SERVICE_TIMEOUT, 1 s, per request; AWS_METADATA_SERVICE_NUM_ATTEMPTS, 1), and
    botocore asks again for every client while nothing was found: one bounded probe, not three.
    """
    core = botocore.session.get_session()
    session = boto3.session.Session(botocore_session=core, region_name=settings.s3_region)
    credentials = session.get_credentials()
    if credentials is None:
        # The answer is known: the clients get an empty chain instead of a second probe.
        core.register_component("credential_provider", CredentialResolver(providers=[]))
    base = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
    )
    storage_client = session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=base.merge(
            Config(
                connect_timeout=settings.storage_connect_timeout_seconds,
                read_timeout=settings.storage_read_timeout_seconds,
                retries={"mode": "standard", "total_max_attempts": settings.storage_max_attempts},
                max_pool_connections=50,
                # botocore's defaults add CRC32 checksums to requests (and validate them on
                # answers) that no operation s3gate calls needs; several S3-compatible stores
                # refuse or mishandle them. Only where the API requires one.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
        ),
    )
    try:
        signing_client = session.client(
            "s3",
            endpoint_url=settings.signing_endpoint_url,
            # Presigned URLs carry exactly the checksum the client declared, nothing the SDK adds.
            config=base.merge(Config(request_checksum_calculation="when_required")),
        )
    except BaseException:
        storage_client.close()
        raise
    return storage_client, signing_client, credentials


def signer_factory(
    signing_client: S3Client, credentials: Credentials | None, settings: Settings
) -> Callable[..., Signer]:
    """Signers of the service's URLs for a profile (and, for the probe's expired URL, a clock;
    then the direct engine, the one that reads it)."""

    def signer_for(*, profile: StoreProfile, clock: Callable[[], float] | None = None) -> Signer:
        return Signer(
            signing_client,
            credentials,
            settings.s3_bucket,
            engine=settings.signer if clock is None else "sigv4",
            clock=clock or time.time,
            profile=profile,
        )

    return signer_for


async def store_profile(
    storage_client: S3Client, signer_for: Callable[..., Signer], settings: Settings
) -> StoreProfile:
    """The configured profile, or for `auto` the one the startup probe measures (in a thread,
    bounded; the vendor's or the prove-everything one when it cannot run)."""
    try:
        profile, how = await asyncio.wait_for(
            anyio.to_thread.run_sync(resolve_profile, storage_client, signer_for, settings),
            PROFILE_PROBE_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        profile = vendor_profile(settings.s3_endpoint_url) or UNKNOWN
        how = f"the probe took over {PROFILE_PROBE_TIMEOUT_SECONDS:.0f} s; using {profile.name}"
    fell_back = settings.store_profile == "auto" and profile.name != "auto"
    log.log(
        logging.WARNING if fell_back else logging.INFO,
        "store profile %s, %s: %s",
        profile.name,
        how,
        profile.summary(),
    )
    return profile


async def _keep_credentials_fresh(credentials: Credentials) -> None:
    # Temporary credentials refresh inside get_frozen_credentials (a network call); doing it here
    # in a thread keeps that call off the request path, which then always finds fresh ones.
    while True:
        await asyncio.sleep(CREDENTIAL_REFRESH_INTERVAL_SECONDS)
        try:
            await anyio.to_thread.run_sync(credentials.get_frozen_credentials)
        except Exception as exc:  # a failed refresh must not end the loop
            log.warning("credential refresh failed: %s", type(exc).__name__)


def scanner_for(settings: Settings) -> ClamdScanner | None:
    """The malware scanner S3GATE_SCANNER names (a connection per scan: nothing to close)."""
    if settings.scanner is None:
        return None
    return ClamdScanner(
        parse_scanner_url(settings.scanner),
        timeout_seconds=settings.scanner_timeout_seconds,
        max_bytes=settings.scanner_max_bytes,
    )


def subscribers_of(endpoints: tuple[WebhookEndpoint, ...]) -> Callable[[str], Sequence[str]]:
    """Which endpoints (by name) each event type is delivered to."""
    routes = {kind: tuple(e.name for e in endpoints if e.matches(kind)) for kind in EVENT_TYPES}
    return lambda event_type: routes.get(event_type, ())


async def _reap_periodically(reaper: Reaper, interval: int, batch_size: int) -> None:
    while True:
        raise_if_cancelled()
        await asyncio.sleep(interval)
        try:
            await reaper.reap(batch_size=batch_size)
        except Exception as exc:  # a failed pass must not end the loop; the next one retries
            log.warning("reaper pass failed: %s", type(exc).__name__)


async def _flush_access_history(use_cases: UseCases) -> None:
    try:
        await use_cases.access.flush()
    except Exception as exc:  # the database is gone: the audit log lines are what is left
        log.warning("access history not flushed at shutdown: %s", type(exc).__name__)


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `work` as a task for the duration of the block; cancel it (and wait) on the way out."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _warn_if_migrations_pending(ledger: Ledger) -> None:
    # A warning, not a failed start: /readyz and every ledger call answer 503 until the
    # operator migrates, and a database that is down now may be up in a second.
    try:
        pending = await asyncio.wait_for(ledger.pending_migrations(), SCHEMA_CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # the database not answering is /readyz's to report
        log.warning("could not read the ledger's schema revision: %s", type(exc).__name__)
        return
    if pending is not None:
        log.warning("%s", pending)


@contextlib.asynccontextmanager
async def open_use_cases(
    settings: Settings, limiter: RateLimiter | None = None
) -> AsyncIterator[tuple[Ledger, UseCases]]:
    """The ledger, S3 clients, signer and use cases: opened together, closed together.

    Everything opened goes on one exit stack as soon as it exists, so a failure at any later
    step closes what came before it. Used by the app's lifespan and by commands that act on
    files (`s3gate reap`).
    """
    async with contextlib.AsyncExitStack() as stack:
        endpoints = settings.webhook_endpoint_list()
        ledger = await Ledger.open(settings, subscribers_of(endpoints))
        stack.push_async_callback(ledger.close)
        dispatcher = None
        if endpoints:
            sender = WebhookSender(timeout_seconds=settings.webhook_timeout_seconds)
            stack.push_async_callback(sender.aclose)
            dispatcher = Dispatcher(ledger.outbox, sender, endpoints, settings)
        storage_client, signing_client, credentials = s3_clients(settings)
        stack.callback(storage_client.close)
        stack.callback(signing_client.close)
        if credentials is None:
            log.warning("no S3 credentials found; URL signing will answer 503")
        signer_for = signer_factory(signing_client, credentials, settings)
        # A ConfigError when the direct engine and botocore disagree: before any URL is
        # signed, the profile probe's included.
        signer_for(profile=UNKNOWN).cross_check()
        signer = signer_for(profile=await store_profile(storage_client, signer_for, settings))
        link_limiters = link_rate_limiters(settings)
        for link_limiter in link_limiters:
            stack.push_async_callback(link_limiter.aclose)
        use_cases = build_use_cases(
            settings,
            ledger,
            signer,
            Storage(storage_client, settings.s3_bucket, hash_concurrency=settings.hash_concurrency),
            dispatcher=dispatcher,
            scanner=scanner_for(settings),
            limiter=limiter,
            link_limiters=link_limiters,
        )
        # Last out, before the ledger closes: the access history this process still holds.
        stack.push_async_callback(_flush_access_history, use_cases)
        if credentials is not None and hasattr(credentials, "_expiry_time"):
            await stack.enter_async_context(_background(_keep_credentials_fresh(credentials)))
        await _warn_if_migrations_pending(ledger)
        yield ledger, use_cases


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the ledger, S3 clients and key cache; close them when the server stops."""
    settings: Settings = app.state.settings
    verifier: TokenVerifier = app.state.verifier
    if not logging.getLogger().handlers:
        # `uvicorn app.main:app` sets up only uvicorn's loggers (`s3gate serve`, `s3gate dev`
        # and test runners set up the root logger): ours would print nothing below WARNING.
        configure_logging(settings.log_level, settings.log_format)
    # Here, not in `s3gate serve` alone: `uvicorn app.main:app` has its access log on.
    silence_uvicorn_access_log()
    async with contextlib.AsyncExitStack() as stack:
        limiter = rate_limiter(settings)
        stack.push_async_callback(limiter.aclose)
        worker_started()
        stack.callback(worker_stopped)
        stack.push_async_callback(verifier.aclose)  # also releases a start that failed half-way
        await verifier.start()
        ledger, use_cases = await stack.enter_async_context(open_use_cases(settings, limiter))
        app.state.s3gate = AppState(settings, ledger, verifier, use_cases, limiter)
        if settings.reaper_interval_seconds:
            reaper = _reap_periodically(
                use_cases.reaper, settings.reaper_interval_seconds, settings.reaper_batch_size
            )
            await stack.enter_async_context(_background(reaper))
        await stack.enter_async_context(_background(use_cases.access.run_forever()))
        if settings.verify_in_process:
            await stack.enter_async_context(_background(use_cases.verification.run_forever()))
        if settings.webhook_dispatch and use_cases.dispatcher is not None:
            ledger.on_delivery = use_cases.dispatcher.wake.set
            await stack.enter_async_context(_background(use_cases.dispatcher.run_forever()))
        # Everything built so far lives as long as the process; freezing it keeps the
        # cyclic GC from rescanning several hundred thousand objects (botocore's S3 model,
        # SQLAlchemy, pydantic schemas) on every full collection under load.
        gc.collect()
        gc.freeze()
        yield
