"""Reads about the audit log for pages and metrics: how far each forwarding sink is behind."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from audit.forwarding.configuration import configured_sinks
from audit.models import AuditEvent, AuditPendingEvent, AuditSink


@dataclass(frozen=True)
class SinkBacklog:
    events: int  # events written but not accepted by the sink yet
    oldest_at: datetime | None  # when the oldest of them was written; None when none

    def age_seconds(self, now: datetime) -> float:
        """How long the oldest unaccepted event has waited; 0 when the sink caught up."""
        if self.oldest_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_at).total_seconds())


def pending_seal_backlog() -> SinkBacklog:
    """The events committed but not yet linked into the chain (audit.services), and when
    the oldest of them happened: sealed within moments, or by beat's "airlock: audit
    seal"; an old one means nothing is sealing."""
    pending = AuditPendingEvent.objects.order_by("id")
    oldest = pending.values_list("created_at", flat=True).first()
    return SinkBacklog(events=pending.count() if oldest else 0, oldest_at=oldest)


@dataclass(frozen=True)
class SinkStatus:
    """One configured sink as the dashboard, the admin and /metrics show it."""

    name: str
    target: str  # from the settings, as the sink shows it (no credentials)
    row: AuditSink  # its row; an unsaved one at cursor 0 when no round has run yet
    backlog: SinkBacklog

    @property
    def backing_off_until(self) -> datetime | None:
        """When the next try at a failing sink may start; None when it is not failing."""
        return self.row.next_attempt_at if self.row.failures else None


def sink_backlog(sink_row: AuditSink) -> SinkBacklog:
    """How far `sink_row` is behind, in two indexed reads (newest seq, then the first event
    after the cursor), whatever the size of the log."""
    newest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    events = max(0, newest - sink_row.cursor)
    if not events:
        return SinkBacklog(events=0, oldest_at=None)
    oldest_at = (
        AuditEvent.objects.filter(seq__gt=sink_row.cursor)
        .order_by("seq")
        .values_list("created_at", flat=True)
        .first()
    )
    return SinkBacklog(events=events, oldest_at=oldest_at)


def sink_statuses() -> list[SinkStatus]:
    """Each configured sink (HTTP first) with its row and backlog: one read of the rows,
    then two indexed reads per sink. Nothing is written: a sink no round has reached yet
    is shown at cursor 0, where its first round starts."""
    sinks = configured_sinks()
    if not sinks:
        return []
    rows = {row.name: row for row in AuditSink.objects.filter(name__in=[s.name for s in sinks])}
    statuses = []
    for sink in sinks:
        row = rows.get(sink.name) or AuditSink(name=sink.name, target=sink.target)
        statuses.append(
            SinkStatus(name=sink.name, target=sink.target, row=row, backlog=sink_backlog(row))
        )
    return statuses


def sink_backlog_is_stale(backlog: SinkBacklog, *, now: datetime | None = None) -> bool:
    """Whether the oldest unaccepted event waited longer than
    AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES: what platform admins are alerted about."""
    now = now or timezone.now()
    return backlog.age_seconds(now) > settings.AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES * 60
