from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Access requests"

    def ready(self):
        # The Slack card follows every change of a request, wherever it was made.
        from audit.signals import audit_sink_alert
        from requests_app import signals, tasks

        signals.access_request_status_changed.connect(
            tasks.slack_card_sync_later, dispatch_uid="slack_card_on_status_change"
        )
        signals.access_request_changed.connect(
            tasks.slack_card_sync_later, dispatch_uid="slack_card_on_change"
        )
        # Platform admins hear of an audit forwarding sink that fell behind, and of its
        # catching up, as of overdue revocations (audit cannot reach them itself).
        audit_sink_alert.connect(tasks.audit_sink_alert_later, dispatch_uid="audit_sink_alert")
