"""Error tracking: Sentry when SENTRY_DSN is set, every event masked by the logs' redaction
before it leaves the process (docs/operations.md)."""

import sentry_sdk
from django.core.exceptions import ImproperlyConfigured
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.utils import BadDsn, Dsn

from portal.logging import redact_value


def scrub_event(event: dict, hint: dict) -> dict:
    """before_send: the event as the logs would write it, secrets masked."""
    return redact_value(event)


def error_tracking_init(*, dsn: str) -> None:
    try:
        Dsn(dsn)
    except BadDsn as exc:
        # The DSN itself is not repeated: it holds the project's key.
        raise ImproperlyConfigured(f"SENTRY_DSN is not a Sentry DSN: {exc}") from None
    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        send_default_pii=False,
        max_request_body_size="never",
    )
