"""Reads about the audit log for pages and metrics: how far each forwarding sink is behind."""

from dataclasses import dataclass
from datetime import datetime

from audit.models import AuditEvent, AuditSink


@dataclass(frozen=True)
class SinkBacklog:
    events: int  # events written but not accepted by the sink yet
    oldest_at: datetime | None  # when the oldest of them was written; None when none


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
