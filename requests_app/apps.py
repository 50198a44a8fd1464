from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Access requests"

    def ready(self):
        # The Slack card follows every change of a request, wherever it was made.
        from requests_app import signals, tasks

        signals.access_request_status_changed.connect(
            tasks.slack_card_sync_later, dispatch_uid="slack_card_on_status_change"
        )
        signals.access_request_changed.connect(
            tasks.slack_card_sync_later, dispatch_uid="slack_card_on_change"
        )
