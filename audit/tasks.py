"""Celery tasks of the audit app: the audit forwarding round, started by beat, and the
check for sinks that fell behind after it; and the seal of events left waiting."""

import logging

from celery import shared_task
from django.conf import settings

from audit.forwarding import audit_forward_all
from audit.forwarding.alerts import audit_sink_alerts_update
from audit.services import audit_pending_seal, audit_tables_vacuum

logger = logging.getLogger(__name__)

# One round's delivery time per sink: a backlog is worked off over several rounds, so that a
# worker slot is never held for long (the sweeps share the workers), and the next round
# (every AIRLOCK_AUDIT_FORWARD_SECONDS, skipped while this one holds the lease) carries on.
ROUND_BUDGET_SECONDS = 20.0


# acks_late: a worker that dies mid-round leaves the message for another (the cursor makes
# the repeat send only what was not accepted). expires: a round nobody started in time is
# superseded by the next one, so a worker back after an outage runs one, not a backlog.
@shared_task(
    acks_late=True,
    ignore_result=True,
    expires=max(2 * settings.AIRLOCK_AUDIT_FORWARD_SECONDS, 10),
)
def forward_audit_log() -> None:
    try:
        reports = audit_forward_all(budget_seconds=ROUND_BUDGET_SECONDS)
    except Exception:
        # Each sink's round is isolated already (audit_forward_all); what is left is the
        # settings or the database failing before any round. The alert check still runs:
        # a sink falling behind is exactly what it is there to tell of.
        logger.exception("Audit forwarding: the round could not start")
        reports = []
    for report in reports:
        if report.delivered or report.error:
            logger.info(
                "Audit forwarding to %s: %d event(s) accepted, cursor %d, %s%s",
                report.sink,
                report.delivered,
                report.cursor,
                report.outcome,
                f": {report.error}" if report.error else "",
            )
    # After the round, so a sink that just caught up is not alerted about, and one that
    # is still behind after its try is. Platform admins hear of it through
    # audit.signals.audit_sink_alert (requests_app sends the email).
    audit_sink_alerts_update()


# Events are sealed as soon as the head is free (audit.services.log_event); this catches the
# few a race leaves waiting, within one sweep interval.
@shared_task(ignore_result=True, expires=max(2 * settings.AIRLOCK_SWEEP_SECONDS, 10))
def seal_audit_log() -> None:
    sealed = audit_pending_seal()
    if sealed:
        logger.info("Audit seal: %d waiting event(s) linked into the chain", sealed)
    # Whatever the writers left since their own last vacuum (audit_tables_vacuum).
    audit_tables_vacuum(force=True)
