"""Setting a sink's cursor by hand: back-fill a new receiver from some seq, or send again
what a receiver lost. The change is audited like any other."""

from django.db import transaction

from audit.actions import AuditAction
from audit.forwarding.delivery import sink_row
from audit.models import AuditEvent, AuditSink
from audit.services import log_event
from integrations.siem import Sink


class ForwardingRewindError(ValueError):
    """The seq to deliver from is not one the log can start from."""


def audit_sink_rewind(*, sink: Sink, from_seq: int, actor=None, actor_label: str = "") -> AuditSink:
    """Make `sink` deliver from `from_seq` on: its cursor becomes from_seq - 1.

    from_seq runs from 1 (the whole log again) to the newest seq + 1 (nothing old, only
    what is written from now on). A delivery in flight when this commits does not write
    over it: delivery advances the cursor only from the value it read.
    """
    newest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    if from_seq < 1 or from_seq > newest + 1:
        raise ForwardingRewindError(
            f"the seq to deliver from must be between 1 and {newest + 1} (the newest event is "
            f"seq {newest}), got {from_seq}"
        )
    row = sink_row(sink)
    with transaction.atomic():
        row = AuditSink.objects.select_for_update().get(pk=row.pk)
        before = row.cursor
        # A by-hand start also ends the backoff: whoever ran this wants delivery now.
        AuditSink.objects.filter(pk=row.pk).update(
            cursor=from_seq - 1, failures=0, next_attempt_at=None
        )
        row.refresh_from_db()
        log_event(
            action=AuditAction.AUDIT_FORWARDING_REWOUND,
            actor=actor,
            actor_label=actor_label,
            target=row,
            reason=f"deliver to the {sink.name} sink from seq {from_seq}",
            detail={
                "sink": sink.name,
                "target": sink.target,
                "from_seq": from_seq,
                "cursor_before": before,
                "cursor_after": row.cursor,
            },
        )
    return row
