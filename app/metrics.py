"""Prometheus metrics: every s3gate metric family, the /metrics exposition, worker accounting.

No web framework here (the request observer that feeds the HTTP metrics is app/http/observer.py).

Metric families are built on first use, not at import. Under `s3gate serve --workers N` (N > 1)
PROMETHEUS_MULTIPROC_DIR names an empty directory before the workers start; each worker then
writes its samples to files there and /metrics merges them, so whichever worker answers a
scrape reports the totals of all.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.config import ConfigError

log = logging.getLogger("s3gate.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# SQLite answers in tens of microseconds, PostgreSQL in a few hundred.
DB_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

URL_KINDS = ("put", "post", "part", "get")
LINK_OUTCOMES = ("redirected", "refused")
# What a call to POST /uploads/{id}/complete answered.
COMPLETION_OUTCOMES = (
    "available",  # verified now
    "already_available",  # a repeat: answered from the ledger
    "verifying",  # 202: left to the background worker (a whole read, a scan)
    "rejected",  # 422 upload_rejected (now, or repeated for a file rejected before)
    "not_uploaded",  # 409 upload_incomplete: the object (or a part) is not in the store yet
    "in_progress",  # 409 upload_incomplete: another completion is verifying the file
    "expired",  # 409 upload_expired
    "not_found",  # 404
    "error",  # 5xx: the store or the ledger failed
)
QUOTA_KINDS = ("bytes", "pending_uploads")


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """The latency histogram and error counter of one operation (one label value)."""

    duration: Histogram
    errors: Counter


class Metrics:
    """Every s3gate metric, with the children for fixed label values made once."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._registry = registry
        self.http_requests = Counter(
            "s3gate_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        )
        self.http_duration = Histogram(
            "s3gate_http_request_duration_seconds",
            "Time from the first byte of the request to the end of the answer.",
            ("route", "method"),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        urls_issued = Counter(
            "s3gate_urls_issued",
            "Presigned URLs handed out: put, post (form), part (multipart) and get.",
            ("kind",),
            registry=registry,
        )
        completions = Counter(
            "s3gate_completions",
            "Calls to complete an upload, by what they answered.",
            ("outcome",),
            registry=registry,
        )
        self._storage_duration = Histogram(
            "s3gate_storage_call_duration_seconds",
            "Object store calls, including the wait for a worker thread.",
            ("operation",),
            buckets=STORAGE_BUCKETS,
            registry=registry,
        )
        self._storage_errors = Counter(
            "s3gate_storage_errors",
            "Object store calls that failed (answered 503 storage_unavailable).",
            ("operation",),
            registry=registry,
        )
        self._db_duration = Histogram(
            "s3gate_db_call_duration_seconds",
            "Ledger statements, by the Ledger method that ran them.",
            ("statement",),
            buckets=DB_BUCKETS,
            registry=registry,
        )
        self._db_errors = Counter(
            "s3gate_db_errors",
            "Ledger statements that failed (the database refused, dropped or timed out).",
            ("statement",),
            registry=registry,
        )
        self.rate_limited = Counter(
            "s3gate_rate_limited",
            "Requests refused with 429 by the per-owner rate limit.",
            registry=registry,
        )
        self.access_dropped = Counter(
            "s3gate_access_history_dropped",
            "Access-history rows dropped because the ledger refused them for too long.",
            registry=registry,
        )
        link_uses = Counter(
            "s3gate_share_link_uses",
            "Share-link requests: redirected to a download, or refused with the one 404.",
            ("outcome",),
            registry=registry,
        )
        quota_refusals = Counter(
            "s3gate_quota_refusals",
            "Uploads refused with 403 quota_exceeded, by the quota that was full.",
            ("kind",),
            registry=registry,
        )
        self.workers = Gauge(
            "s3gate_workers",
            "Worker processes serving the API (live ones, summed over the server's workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.webhook_deliveries = Counter(
            "s3gate_webhook_deliveries",
            "Webhook delivery attempts, by endpoint and outcome (delivered, retry, failed).",
            ("endpoint", "outcome"),
            registry=registry,
        )
        # Read from the ledger by each dispatcher pass: the same value in every process that
        # dispatches, hence "max" across processes.
        self.webhook_queue_depth = Gauge(
            "s3gate_webhook_queue_depth",
            "Webhook deliveries still to make (pending, in every replica's ledger view).",
            registry=registry,
            multiprocess_mode="max",
        )
        self.webhook_oldest_pending = Gauge(
            "s3gate_webhook_oldest_pending_seconds",
            "Age of the oldest webhook delivery still to make (0 when none).",
            registry=registry,
            multiprocess_mode="max",
        )
        # Made up front: the series exist (at 0) before the first event, so rate() sees it.
        self.urls_issued = {kind: urls_issued.labels(kind) for kind in URL_KINDS}
        self.completions = {outcome: completions.labels(outcome) for outcome in COMPLETION_OUTCOMES}
        self.quota_refusals = {kind: quota_refusals.labels(kind) for kind in QUOTA_KINDS}
        self.link_uses = {outcome: link_uses.labels(outcome) for outcome in LINK_OUTCOMES}
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._calls: dict[tuple[str, str], CallMetrics] = {}

        directory = os.environ.get(MULTIPROC_ENV)
        self.multiprocess_dir: str | None = None
        self._merged: CollectorRegistry | None = None
        if directory and getattr(values.ValueClass, "_multiprocess", False):
            self.multiprocess_dir = directory
            self._merged = CollectorRegistry()
            MultiProcessCollector(self._merged, path=directory)  # type: ignore[no-untyped-call]
        elif directory:
            log.warning(
                "%s was set after prometheus_client was imported; /metrics reports this "
                "process only",
                MULTIPROC_ENV,
            )

    def http(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and latency histogram children for one label combination."""
        key = (route, method, status)
        children = self._http.get(key)
        if children is None:
            children = (
                self.http_requests.labels(route, method, str(status)),
                self.http_duration.labels(route, method),
            )
            self._http[key] = children
        return children

    def storage_call(self, operation: str) -> CallMetrics:
        return self._call("storage", operation)

    def db_call(self, statement: str) -> CallMetrics:
        return self._call("db", statement)

    def _call(self, kind: str, name: str) -> CallMetrics:
        calls = self._calls.get((kind, name))
        if calls is None:
            duration, errors = (
                (self._storage_duration, self._storage_errors)
                if kind == "storage"
                else (self._db_duration, self._db_errors)
            )
            calls = CallMetrics(duration.labels(name), errors.labels(name))
            self._calls[(kind, name)] = calls
        return calls

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's files merged."""
        if self._merged is None or self.multiprocess_dir is None:
            return generate_latest(self._registry)
        _forget_dead_workers(self.multiprocess_dir)
        return generate_latest(self._merged)


@functools.cache
def metrics() -> Metrics:
    """This process's metrics (built on first use)."""
    # No `*_created` series: they double the exposition and only single-process mode has them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return Metrics()


def exposition() -> tuple[bytes, str]:
    """The body and content type of a /metrics answer."""
    return metrics().exposition(), CONTENT_TYPE_LATEST


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: the pid was reused, so ours is gone
        return False
    return True


def _forget_dead_workers(directory: str) -> None:
    # A worker that exits cleanly marks itself dead (worker_stopped); one that was killed
    # cannot, so its live gauges are dropped here. Its counters stay: totals never go back.
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _uvicorn_workers() -> int:
    """How many workers the uvicorn supervisor that started this process runs; 1 when none
    did (a single process, `--reload`, another server).

    uvicorn gives a worker no sign of its siblings but the Config it was started with: a local
    of `uvicorn._subprocess.subprocess_started`, the worker's entry point, which is on this
    thread's stack below the event loop for as long as the worker runs. (Its argv and
    WEB_CONCURRENCY miss `uvicorn.run(workers=N)`, and `--reload` also spawns a child.)"""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "subprocess_started" and frame.f_globals.get("__name__") == (
            "uvicorn._subprocess"
        ):
            workers = getattr(frame.f_locals.get("config"), "workers", 1)
            return workers if isinstance(workers, int) else 1
        frame = frame.f_back  # type: ignore[assignment]
    return 1


def worker_started() -> None:
    """Count this process among the live workers; warn when it is one of several that keep
    their metrics apart (each scrape would count only the worker that answers it)."""
    current = metrics()
    current.workers.inc()
    if current.multiprocess_dir is None and (workers := _uvicorn_workers()) > 1:
        log.warning(
            "uvicorn runs %d workers but %s is not set: /metrics reports only the worker "
            "that answers; set it to an empty directory before starting uvicorn, or run "
            "`s3gate serve --workers %d`",
            workers,
            MULTIPROC_ENV,
            workers,
        )


def worker_stopped() -> None:
    """The reverse of worker_started, at shutdown."""
    current = metrics()
    current.workers.dec()
    if current.multiprocess_dir is not None:
        mark_process_dead(os.getpid(), current.multiprocess_dir)  # type: ignore[no-untyped-call]


def share_metrics_between_workers(workers: int) -> str | None:
    """Before uvicorn starts `workers` processes: point PROMETHEUS_MULTIPROC_DIR at an existing,
    empty directory (a new private temp dir, removed at exit, unless the variable names one);
    the directory, or None when one process serves alone with its own registry."""
    configured = os.environ.get(MULTIPROC_ENV, "").strip()
    if configured:
        path = Path(configured)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            for stale in path.glob("*.db"):  # a previous run's samples would add to ours
                stale.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{MULTIPROC_ENV}: cannot use {configured} ({exc.strerror})"
            ) from None
        return configured
    os.environ.pop(MULTIPROC_ENV, None)  # set but empty would mean "the working directory"
    if workers <= 1:
        return None
    # tempfile honours TMPDIR: on a read-only root filesystem that is the writable tmpfs.
    created = tempfile.mkdtemp(prefix="s3gate-metrics-")
    os.environ[MULTIPROC_ENV] = created
    atexit.register(shutil.rmtree, created, ignore_errors=True)
    return created
