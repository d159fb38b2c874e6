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
from app.scanner import ClamdScanner
from app.signer import Signer
from app.storage import Storage
from app.usecases.common import Clock, Lookup, Removal
from app.usecases.completion import VERIFY_LEASE_SECONDS, Completion
from app.usecases.dispatch import Dispatcher
from app.usecases.events import EventFeed
from app.usecases.files import Files
from app.usecases.reaper import Reaper
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
) -> UseCases:
    """Each use case with only the concerns of the settings it reads."""
    lookup = Lookup(ledger, clock)
    removal = Removal(lookup, storage, settings)
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
        ),
        completion=completion,
        verification=BackgroundVerification(
            completion, lookup, settings, timedelta(seconds=verify_lease_seconds)
        ),
        files=Files(lookup, removal, signer, settings),
        reaper=Reaper(lookup, removal, settings, settings),
        events=EventFeed(ledger),
        signer=signer,
        dispatcher=dispatcher,
    )
