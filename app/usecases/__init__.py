"""Use cases, one room each: uploads, completion, files, reaper, events. Routers call these and
nothing else; the pure decisions they make are in plans.py and verdict.py.

Order of steps is chosen so that a crash or a store outage between two steps never leaves a row
that says `available` without its object, nor an object that no row accounts for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from app.config import Settings
from app.ledger import Ledger
from app.ratelimit import RateLimiter, Unlimited
from app.scanner import ClamdScanner
from app.signer import Signer
from app.storage import Storage
from app.usecases.access import AccessRecorder
from app.usecases.common import Clock, Lookup, Removal
from app.usecases.completion import VERIFY_LEASE_SECONDS, Completion
from app.usecases.dispatch import Dispatcher
from app.usecases.events import EventFeed
from app.usecases.files import Files
from app.usecases.reaper import Reaper
from app.usecases.sharing import Sharing
from app.usecases.uploads import Uploads
from app.usecases.verification import BackgroundVerification


@dataclass(frozen=True, slots=True)
class UseCases:
    uploads: Uploads
    completion: Completion
    verification: BackgroundVerification
    files: Files
    reaper: Reaper
    events: EventFeed
    sharing: Sharing
    access: AccessRecorder
    signer: Signer
    dispatcher: Dispatcher | None = None  # None: no webhook endpoint is configured


def build_use_cases(
    settings: Settings,
    ledger: Ledger,
    signer: Signer,
    storage: Storage,
    *,
    clock: Clock = time.time,
    verify_lease_seconds: float = VERIFY_LEASE_SECONDS,
    dispatcher: Dispatcher | None = None,
    scanner: ClamdScanner | None = None,
    limiter: RateLimiter | None = None,
    link_limiters: tuple[RateLimiter, RateLimiter] | None = None,
) -> UseCases:
    """Each use case with only the concerns of the settings it reads. `limiter` is the
    owners' (batch downloads count against it), `link_limiters` share links' (per link, per
    client address)."""
    lookup = Lookup(ledger, clock)
    recorder = AccessRecorder(ledger, lookup)
    files = Files(
        lookup, removal := Removal(lookup, storage, settings), signer, settings, recorder, limiter
    )
    per_link, per_address = link_limiters or (Unlimited(), Unlimited())
    completion = Completion(
        lookup,
        storage,
        settings,
        settings,
        settings,
        profile=signer.profile,
        scanner=scanner,
        verify_lease_seconds=verify_lease_seconds,
    )
    return UseCases(
        uploads=Uploads(
            lookup,
            removal,
            signer,
            storage,
            uploads=settings,
            urls=settings,
            quotas=settings,
            key_prefix=settings.s3_key_prefix,
            profile=signer.profile,
            recorder=recorder,
            limiter=limiter,
            rates=settings,
            verification=settings,
        ),
        completion=completion,
        verification=BackgroundVerification(
            completion, lookup, settings, timedelta(seconds=verify_lease_seconds)
        ),
        files=files,
        reaper=Reaper(lookup, removal, settings, settings, settings, recorder),
        events=EventFeed(ledger),
        sharing=Sharing(
            lookup,
            files,
            recorder,
            settings,
            settings,
            link_limiter=per_link,
            address_limiter=per_address,
            groups_enabled=settings.group_claim is not None,
        ),
        access=recorder,
        signer=signer,
        dispatcher=dispatcher,
    )
