"""Delivering the audit log to one sink: batches of the events after its cursor, in seq
order, the cursor advanced only once the sink accepted a batch (at least once, never
skipping). Nothing here touches the chain head or log_event(): writing the log never
waits for a sink."""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from audit.export import event_record
from audit.forwarding.configuration import configured_sinks
from audit.forwarding.lease import SinkLease, in_seconds
from audit.models import AuditEvent, AuditSink
from core.durations import exponential_backoff
from integrations.siem import Sink, SinkError, printable_text

logger = logging.getLogger(__name__)

# How long one call keeps delivering before it lets the next beat round carry on; well
# under the task's soft time limit even with a batch in flight.
DEFAULT_BUDGET_SECONDS = 60.0
# The longest wait between two tries at a failing sink. Short: a try costs one connection,
# and once the SIEM is back, delivery resumes within this (benchmark 6 measured the
# catch-up after a 60 s outage as almost all backoff with a 5-minute cap).
BACKOFF_CAP = timedelta(minutes=1)
# The most of an error kept in AuditSink.last_error: a sink's own words plus the receiver's
# (bounded by the sink), with room to spare.
ERROR_LIMIT = 1000


class Outcome:
    """How a round ended (ForwardReport.outcome)."""

    CAUGHT_UP = "caught_up"  # every event was accepted
    BUDGET_SPENT = "budget_spent"  # events remain; the next round carries on
    FAILED = "failed"  # the sink refused a batch; backing off
    LEASED = "leased"  # another worker is delivering to this sink
    BACKING_OFF = "backing_off"  # the last try failed and its wait is not over
    GAP = "gap"  # the event after the cursor is missing: stopped rather than skip
    INTERRUPTED = "interrupted"  # the lease or the cursor changed hands meanwhile


@dataclass
class ForwardReport:
    """What one audit_forward() call did to one sink."""

    sink: str
    target: str
    outcome: str
    # The sink's cursor afterwards, the highest seq it accepted; -1 when the round failed
    # before it could read it (audit_forward_all).
    cursor: int
    delivered: int = 0  # events accepted in this round
    batches: int = 0  # batches accepted in this round
    error: str = ""  # the sink's refusal, when outcome is FAILED
    missing_seq: int | None = None  # the seq not found, when outcome is GAP


def sink_row(sink: Sink) -> AuditSink:
    """The sink's row, created on first use with cursor 0 (a new sink starts from the first
    event), its target kept up to date with the settings."""
    row, created = AuditSink.objects.get_or_create(name=sink.name, defaults={"target": sink.target})
    if not created and row.target != sink.target:
        AuditSink.objects.filter(pk=row.pk).update(target=sink.target)
        row.target = sink.target
    return row


def audit_forward(
    *, sink: Sink, batch_size: int | None = None, budget_seconds: float = DEFAULT_BUDGET_SECONDS
) -> ForwardReport:
    """Deliver the events `sink` has not accepted yet, a batch at a time, until it caught up,
    refused a batch, or `budget_seconds` ran out. Call it outside any transaction: the
    network call must not hold one open."""
    batch_size = batch_size or settings.AIRLOCK_AUDIT_FORWARD_BATCH
    row = sink_row(sink)
    lease = SinkLease(row.pk)
    if not lease.acquire():
        row.refresh_from_db()
        leased = row.leased_until is not None and row.leased_until > timezone.now()
        outcome = Outcome.LEASED if leased else Outcome.BACKING_OFF
        return ForwardReport(sink=sink.name, target=sink.target, outcome=outcome, cursor=row.cursor)

    # What the lease holder reads is its own until it lets go: nobody else writes the
    # cursor or the failure count meanwhile except a rewind by hand, which the
    # compare-and-set on the cursor below notices.
    row.refresh_from_db()
    report = ForwardReport(
        sink=sink.name, target=sink.target, outcome=Outcome.CAUGHT_UP, cursor=row.cursor
    )
    deadline = time.monotonic() + budget_seconds
    try:
        while True:
            if time.monotonic() >= deadline:
                report.outcome = Outcome.BUDGET_SPENT
                break
            events = _contiguous_after(report.cursor, batch_size)
            if events is None:
                report.outcome = Outcome.GAP
                report.missing_seq = report.cursor + 1
                logger.error(
                    "Audit forwarding to %s stopped: seq %d is missing after the cursor",
                    sink.name,
                    report.missing_seq,
                )
                break
            if not events:
                break
            try:
                sink.send([event_record(event) for event in events])
            except SinkError as error:
                report.outcome = Outcome.FAILED
                report.error = printable_text(str(error), ERROR_LIMIT)
                _record_failure(lease, failures=row.failures + 1, error=report.error)
                logger.warning(
                    "Audit forwarding to %s failed at seq %d (try %d): %s",
                    sink.name,
                    events[0].seq,
                    row.failures + 1,
                    report.error,
                )
                return report
            except Exception as error:
                # A sink's bug (or an event it cannot handle) is that sink's failure, backed
                # off like a refusal, never a crashed round: the other sinks and the alert
                # check still run (audit_forward_all, audit.tasks). Only the exception's type
                # is stored: its text may quote the URL, and with it a token.
                report.outcome = Outcome.FAILED
                report.error = (
                    f"unexpected {type(error).__name__} while sending (see the worker's log)"
                )
                _record_failure(lease, failures=row.failures + 1, error=report.error)
                logger.exception(
                    "Audit forwarding to %s failed unexpectedly at seq %d (try %d)",
                    sink.name,
                    events[0].seq,
                    row.failures + 1,
                )
                return report
            last = events[-1].seq
            advanced = (
                lease.held()
                .filter(cursor=report.cursor)
                .update(
                    cursor=last,
                    last_delivered_at=Now(),
                    failures=0,
                    next_attempt_at=None,
                    leased_until=in_seconds(SinkLease.seconds()),
                )
            )
            if advanced != 1:
                # The lease ran out and another worker took over, or someone set the
                # cursor by hand meanwhile: theirs stands. The batch went out anyway; at
                # worst it is sent again, which a receiver drops by seq.
                report.outcome = Outcome.INTERRUPTED
                break
            row.failures = 0
            report.cursor = last
            report.delivered += len(events)
            report.batches += 1
    finally:
        lease.release()
    return report


def audit_forward_all(**options) -> list[ForwardReport]:
    """One delivery round for every configured sink; nothing (not even a query) when none is.
    Each sink's round is its own: whatever one raises is logged and reported as its failure,
    and the next sink still gets its round."""
    reports = []
    for sink in configured_sinks():
        try:
            reports.append(audit_forward(sink=sink, **options))
        except Exception as error:
            # Outside the send (the database, the lease): nothing could be recorded on the
            # row, so the log and the report say it; the next round tries again.
            logger.exception("Audit forwarding to %s: the round failed", sink.name)
            reports.append(
                ForwardReport(
                    sink=sink.name,
                    target=sink.target,
                    outcome=Outcome.FAILED,
                    cursor=-1,
                    error=f"unexpected {type(error).__name__} (see the worker's log)",
                )
            )
    return reports


def _contiguous_after(cursor: int, batch_size: int) -> list[AuditEvent] | None:
    """The next events after `cursor`, as a run with no seq missing, up to batch_size;
    None when the very next seq is missing (sending what follows would skip it).

    Today a gap cannot be seen (seq is taken under the chain lock held to commit, so a
    visible seq N+1 means every seq up to N committed), but forwarding must not start to
    skip should that ever change.
    """
    events = list(AuditEvent.objects.filter(seq__gt=cursor).order_by("seq")[:batch_size])
    run = []
    for expected, event in enumerate(events, start=cursor + 1):
        if event.seq != expected:
            break
        run.append(event)
    if events and not run:
        return None
    return run


def _record_failure(lease: SinkLease, *, failures: int, error: str) -> None:
    # A sink makes its errors safe already; this is the last line before the database
    # (PostgreSQL refuses a NUL) and the admin, whatever sink wrote the text.
    error = printable_text(error, ERROR_LIMIT)
    wait = exponential_backoff(
        failures, base=timedelta(seconds=settings.AIRLOCK_AUDIT_FORWARD_SECONDS), cap=BACKOFF_CAP
    )
    lease.held().update(
        failures=F("failures") + 1,
        last_error=error,
        last_error_at=Now(),
        next_attempt_at=in_seconds(wait.total_seconds()),
    )
