"""Signals the audit app sends, with primary keys only, for the layers above to react to:
audit cannot reach the people to tell (requests_app.notifications knows who the platform
admins are and how to email them), so it says what happened and they listen."""

from django.dispatch import Signal

# A forwarding sink's backlog got older than AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES (state
# "stale"), or a sink that was alerted about caught up again (state "caught_up"). Sent once
# per change, after the compare-and-set on AuditSink.alerted_at committed
# (audit.forwarding.alerts). Sent with sender=AuditSink, sink_id (int) and state (str).
audit_sink_alert = Signal()
