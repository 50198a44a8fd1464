"""When to tell platform admins about a sink that fell behind: once per incident. An
incident starts when the oldest event a sink has not accepted is older than
AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES, and ends when the sink caught up.

AuditSink.alerted_at holds the incident: set and cleared by compare-and-set, so two
workers checking at once alert (and say "caught up") once. Telling people is not audit's
job: audit.signals.audit_sink_alert is sent after the change commits, and requests_app,
which knows who the platform admins are, emails them (requests_app.tasks). audit may not
import requests_app (the layers in pyproject.toml), hence the signal.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditSink
from audit.selectors import sink_backlog_is_stale, sink_statuses
from audit.signals import audit_sink_alert


class AlertState:
    STALE = "stale"  # the backlog got older than the threshold: an incident starts
    CAUGHT_UP = "caught_up"  # the sink caught up after an alert: the incident is over


@dataclass(frozen=True)
class SinkAlert:
    sink_id: int
    sink: str
    state: str


def audit_sink_alerts_update(*, now: datetime | None = None) -> list[SinkAlert]:
    """Start or end each configured sink's incident, as its backlog says now; returns (and
    signals) the changes this call made. Run after each delivery round (audit.tasks)."""
    now = now or timezone.now()
    # "Caught up": nothing waits longer than one delivery interval, i.e. what is left was
    # written after the last round. Far below the alert threshold, so a sink whose backlog
    # hovers near it does not flap between alerts.
    caught_up_within = settings.AIRLOCK_AUDIT_FORWARD_SECONDS
    changes = []
    for status in sink_statuses():
        row = status.row
        if row.pk is None:
            continue  # no round has reached it yet; the next one makes its row
        if row.alerted_at is None and sink_backlog_is_stale(status.backlog, now=now):
            marked = AuditSink.objects.filter(pk=row.pk, alerted_at__isnull=True).update(
                alerted_at=now
            )
            # 0: another worker's check started this incident first, and tells of it.
            if marked == 1:
                changes.append(SinkAlert(row.pk, row.name, AlertState.STALE))
        elif row.alerted_at is not None and status.backlog.age_seconds(now) <= caught_up_within:
            cleared = AuditSink.objects.filter(pk=row.pk, alerted_at=row.alerted_at).update(
                alerted_at=None
            )
            if cleared == 1:
                changes.append(SinkAlert(row.pk, row.name, AlertState.CAUGHT_UP))
    for change in changes:
        transaction.on_commit(
            lambda change=change: audit_sink_alert.send(
                sender=AuditSink, sink_id=change.sink_id, state=change.state
            ),
            robust=True,
        )
    return changes
