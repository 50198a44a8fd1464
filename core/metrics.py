"""Airlock's Prometheus metrics: the instruments every process records into, and the text
that GET /metrics serves (multiprocess collection: docs/metrics.md)."""

import functools
import os
import socket
import time
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from core.env import env_str

# The text format every Prometheus reads; the names and labels here need nothing newer.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MULTIPROCESS_DIR = env_str("PROMETHEUS_MULTIPROC_DIR").strip()
# prometheus-client splits its file names on "_".
_HOST = socket.gethostname().replace("_", "-")


def process_identifier(pid: int | None = None) -> str:
    """This process (or `pid` on this host) as named in the multiprocess files."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}"


if MULTIPROCESS_DIR:
    if not os.path.isdir(MULTIPROCESS_DIR):
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR must be an existing directory, got {MULTIPROCESS_DIR!r}"
        )
    # Before the first instrument below is made: each takes its storage from ValueClass.
    values.ValueClass = values.MultiProcessValue(process_identifier)

_registry = CollectorRegistry()

GITHUB_REQUESTS = Counter(
    "airlock_github_requests",
    "GitHub REST requests, each attempt counted, by endpoint family and answer (2xx, 304 for "
    "a conditional read GitHub answered not modified, the error status, or timeout / "
    "connection_error when GitHub did not answer).",
    ["family", "status"],
    registry=_registry,
)
GITHUB_RATE_LIMIT_REMAINING = Gauge(
    "airlock_github_rate_limit_remaining",
    "Requests left in GitHub's hourly quota (x-ratelimit-remaining), as last seen, by client.",
    ["client"],
    multiprocess_mode="mostrecent",
    registry=_registry,
)
RECONCILE_PASSES = Counter(
    "airlock_reconcile_passes",
    "Reconcile passes over one target, by target kind and outcome (ok, or error when the "
    "pass reported a GitHub error or stopped).",
    ["target_kind", "outcome"],
    registry=_registry,
)
RECONCILE_PASS_SECONDS = Histogram(
    "airlock_reconcile_pass_duration_seconds",
    "How long one reconcile pass took, GitHub's answers and retries included.",
    ["target_kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=_registry,
)
REVOCATION_LAG = Histogram(
    "airlock_revocation_lag_seconds",
    "Time from when access should have ended (expires_at, or the early revocation) to its "
    "removal from GitHub being recorded, by end reason.",
    ["end_reason"],
    buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 3600),
    registry=_registry,
)
SWEEP_SECONDS = Histogram(
    "airlock_sweep_duration_seconds",
    "How long one beat sweep took (finding what is due and enqueueing it).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=_registry,
)
SWEEP_COMPLETED_NAME = "airlock_sweep_last_completed_timestamp_seconds"
SWEEP_COMPLETED = Gauge(
    SWEEP_COMPLETED_NAME,
    "When the last sweep completed (Unix time; 0: none since the metrics were reset).",
    multiprocess_mode="max",
    registry=_registry,
)
AUDIT_EVENTS = Counter(
    "airlock_audit_events",
    "Audit events written (committed), by action.",
    ["action"],
    registry=_registry,
)
SWEEP_AGE_NAME = "airlock_sweep_age_seconds"


# --- recording --------------------------------------------------------------------------------


def github_answered(*, family: str, status: str, client: str, remaining: int | None) -> None:
    GITHUB_REQUESTS.labels(family, status).inc()
    if remaining is not None and remaining >= 0:
        GITHUB_RATE_LIMIT_REMAINING.labels(client).set(remaining)


@contextmanager
def reconcile_pass(*, target_kind: str, errors: list):
    """Time one pass and count its outcome: an error when it raised or added to `errors`."""
    before = len(errors)
    started = time.monotonic()
    outcome = "error"
    try:
        yield
        outcome = "ok" if len(errors) == before else "error"
    finally:
        RECONCILE_PASS_SECONDS.labels(target_kind).observe(time.monotonic() - started)
        RECONCILE_PASSES.labels(target_kind, outcome).inc()


def revocation_recorded(*, end_reason: str, lag_seconds: float) -> None:
    """Observed once the revocation commits: a rolled-back one is done again, and counted
    then. (The engine ends a grant up to half a second early: that is no lag.)"""
    lag = max(0.0, lag_seconds)
    transaction.on_commit(
        lambda: REVOCATION_LAG.labels(end_reason).observe(lag), robust=True
    )


def audit_event_written(*, action: str, using: str) -> None:
    # robust: a metrics failure must never stop the callbacks that enqueue the engine's work.
    transaction.on_commit(lambda: AUDIT_EVENTS.labels(action).inc(), using=using, robust=True)


def sweep_observed(sweep):
    """Decorates the sweep: its duration, and when it last completed."""

    @functools.wraps(sweep)
    def observed(*args, **kwargs):
        started = time.monotonic()
        report = sweep(*args, **kwargs)
        SWEEP_SECONDS.observe(time.monotonic() - started)
        SWEEP_COMPLETED.set(time.time())
        return report

    return observed


# --- exposition -------------------------------------------------------------------------------


class _RecordedMetrics:
    """What the instruments hold, in every process (multiprocess) or this one, followed by
    the age of the last completed sweep, worked out at scrape time."""

    def collect(self):
        source = (
            MultiProcessCollector(None, path=MULTIPROCESS_DIR) if MULTIPROCESS_DIR else _registry
        )
        completed = 0.0
        for family in source.collect():
            if family.name == SWEEP_COMPLETED_NAME:
                completed = max((sample.value for sample in family.samples), default=0.0)
            yield family
        # +Inf until a sweep completes, so that "older than" alerts fire on a sweep that
        # never ran as on one that stopped.
        age = max(0.0, time.time() - completed) if completed else float("inf")
        yield GaugeMetricFamily(
            SWEEP_AGE_NAME,
            "Seconds since the last sweep completed (+Inf: none since the metrics were reset).",
            value=age,
        )


def exposition(*collectors) -> bytes:
    """The Prometheus text of the recorded metrics, then of `collectors` (scrape-time facts)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RecordedMetrics())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """gunicorn's child_exit: drop a dead worker's per-process gauges ("live" modes only;
    its counters stay counted, as Prometheus expects of a counter)."""
    if MULTIPROCESS_DIR:
        mark_process_dead(process_identifier(pid), MULTIPROCESS_DIR)
