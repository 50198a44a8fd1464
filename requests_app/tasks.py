"""Celery tasks of the requests app: notifications (one task per email and one for Slack, so a
retry re-sends only what failed), expiry reminders, approver team sync."""

import logging
import smtplib
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from core.durations import exponential_backoff
from integrations.slack import SlackError, slack_configured
from requests_app import notifications, services, slack

logger = logging.getLogger(__name__)

MAX_SEND_RETRIES = 5
SEND_RETRY_BASE = timedelta(seconds=30)
SEND_RETRY_CAP = timedelta(minutes=10)


def _backoff(retries: int) -> int:
    # Celery counts retries from 0; the first retry waits the base.
    delay = exponential_backoff(retries + 1, base=SEND_RETRY_BASE, cap=SEND_RETRY_CAP)
    return int(delay.total_seconds())


@shared_task(acks_late=True, ignore_result=True)
def send_notification(event: str, request_id=None, grant_id=None) -> None:
    message = notifications.build_message(event, request_id=request_id, grant_id=grant_id)
    if message is None:
        return
    _send_message(message)


def audit_sink_alert_later(sender=None, *, sink_id: int, state: str, **kwargs) -> None:
    """The receiver of audit.signals.audit_sink_alert (after the commit): platform admins
    are told in a task of their own, so the forwarding round is not held up by it."""
    _send_later(send_audit_sink_alert, kwargs={"sink_id": sink_id, "state": state})


@shared_task(acks_late=True, ignore_result=True)
def send_audit_sink_alert(*, sink_id: int, state: str) -> None:
    """Email the platform admins (and post to the Slack webhook) about a forwarding sink,
    as is done for overdue revocations: one email task per person."""
    message = notifications.build_audit_sink_message(sink_id=sink_id, state=state)
    if message is None:
        return
    _send_message(message)


def _send_message(message) -> None:
    if not message.recipients:
        logger.info("Notification %s (%s): nobody to email", message.event, message.link)
    for to in message.recipients:
        _send_later(
            send_email,
            kwargs={
                "subject": message.subject,
                "body": message.body,
                "html": message.html,
                "to": to,
            },
        )
    if message.slack and settings.AIRLOCK_SLACK_WEBHOOK_URL:
        _send_later(post_to_slack, kwargs={"text": message.slack_text})


def _send_later(task, *, kwargs) -> None:
    try:
        task.apply_async(kwargs=kwargs)
    except Exception:
        logger.exception("Could not enqueue %s", task.name)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def send_email(self, *, subject: str, body: str, html=None, to: str) -> None:
    try:
        notifications.send_email(subject=subject, body=body, html=html, to=to)
    except OSError as exc:  # smtplib's errors, connection refused, timeouts
        if _smtp_refused_for_good(exc):
            # A 5xx answer: the server will refuse it again. Say so, do not retry.
            logger.error("Email %r to %s refused: %s", subject, to, exc)
            return
        if self.request.retries >= self.max_retries:
            logger.error("Email %r to %s not sent after %d tries: %s",
                         subject, to, self.request.retries + 1, exc)
            return
        logger.warning("Email %r to %s failed, retrying: %s", subject, to, exc)
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc


def _smtp_refused_for_good(exc: OSError) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
    elif isinstance(exc, smtplib.SMTPResponseException):
        codes = [exc.smtp_code]
    else:
        return False
    return bool(codes) and all(500 <= code < 600 for code in codes)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def post_to_slack(self, *, text: str) -> None:
    try:
        notifications.post_to_slack(text)
    except notifications.SlackError as exc:
        if not exc.transient or self.request.retries >= self.max_retries:
            logger.error("Slack message not posted: %s", exc)
            return
        logger.warning("Slack message failed, retrying: %s", exc)
        countdown = exc.retry_after or _backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def slack_card_sync(self, request_id: int) -> None:
    """Post or update the request's Slack cards (requests_app.slack). Transient errors retry
    with backoff, or after the Retry-After Slack asked for; the decision never waits."""
    try:
        slack.slack_cards_sync(request_id)
    except SlackError as exc:
        if self.request.retries >= self.max_retries:
            logger.error("Slack card of request #%s not synced after %d tries: %s",
                         request_id, self.request.retries + 1, exc)
            slack.slack_card_error_record(request_id, exc)
            return
        logger.warning("Slack card of request #%s failed, retrying: %s", request_id, exc)
        countdown = exc.retry_after or _backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc


def slack_card_sync_later(sender=None, *, request_id: int, **kwargs) -> None:
    """The receiver of every change of a request (requests_app.signals, after the commit):
    its card follows. A failed publish is logged; the change stands."""
    if not slack_configured():
        return
    _send_later(slack_card_sync, kwargs={"request_id": request_id})


# The longest one Slack card sweep runs: it shares the airlock.notify workers with the emails
# and audit forwarding, and beat expires a sweep nobody ran within two intervals.
SWEEP_BUDGET_SECONDS = 30


@shared_task(acks_late=True, ignore_result=True)
def slack_cards_sweep() -> None:
    """Bring every card that may be stale up to date (slack.slack_cards_due): what a lost
    after-commit message missed. A transient Slack error (a 429, a 5xx, a timeout) ends the
    sweep at the request it failed, and so does the time budget: the rest is left to the
    next sweep, which takes the requests it did not reach first."""
    if not slack_configured():
        return
    budget = min(SWEEP_BUDGET_SECONDS, settings.AIRLOCK_SWEEP_SECONDS)
    deadline = time.monotonic() + budget
    due = slack.slack_cards_due()
    for done, request_id in enumerate(due):
        if time.monotonic() > deadline:
            logger.warning("Slack card sweep: out of its %ss, %d requests left for the next "
                           "sweep", budget, len(due) - done)
            return
        try:
            slack.slack_cards_sync(request_id)
        except SlackError as exc:
            logger.warning("Slack card of request #%s not synced by the sweep: %s; %d "
                           "requests left for the next sweep", request_id, exc,
                           len(due) - done - 1)
            return


@shared_task(acks_late=True, ignore_result=True)
def remind_expiring() -> None:
    sent = services.access_requests_remind_expiring()
    if sent:
        logger.info("Expiry reminders: %d sent", sent)


@shared_task(acks_late=True, ignore_result=True)
def sync_approver_groups() -> None:
    for report in services.approver_groups_sync_all():
        logger.info("Approver group sync: %s", report)
