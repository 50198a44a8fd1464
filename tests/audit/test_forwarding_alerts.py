"""Platform admins are emailed when a forwarding sink's backlog is older than
AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES: once per incident (AuditSink.alerted_at, set and
cleared by compare-and-set), with a "caught up" note when it ends, and again on a new
incident. audit signals the change; requests_app sends the email (audit/forwarding/alerts.py).

The clock is moved by passing `now` to the check: the events are real, written now."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.forwarding import audit_forward_all
from audit.forwarding.alerts import AlertState, audit_sink_alerts_update
from audit.models import AuditSink
from audit.tasks import forward_audit_log
from tests.audit.factories import AuditEventFactory, UserFactory
from tests.fixtures import at_once
from tests.requests_app.test_notifications import SlackHook

pytestmark = pytest.mark.django_db


@pytest.fixture
def admins(settings):
    """Who is told about overdue revocations: active staff with an email, and
    AIRLOCK_ADMIN_EMAILS."""
    settings.AIRLOCK_ADMIN_EMAILS = ["secops@example.com"]
    settings.AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES = 15
    UserFactory(username="root", is_staff=True, email="root@example.com")
    UserFactory(username="dev", is_staff=False, email="dev@example.com")
    return {"root@example.com", "secops@example.com"}


def later(minutes: float):
    return timezone.now() + timedelta(minutes=minutes)


def check(django_capture_on_commit_callbacks, *, now):
    """The check as the task runs it, its after-commit signal delivered."""
    with django_capture_on_commit_callbacks(execute=True):
        return audit_sink_alerts_update(now=now)


def sink_down_with_a_backlog(siem_http, count: int = 3) -> None:
    AuditEventFactory.create_batch(count)
    siem_http.fail_next(1)
    (report,) = audit_forward_all()
    assert report.error  # the events wait


def test_an_old_backlog_emails_the_platform_admins_once_with_the_receivers_error_quoted(
    siem_http, admins, eager_celery, mailoutbox, django_capture_on_commit_callbacks
):
    sink_down_with_a_backlog(siem_http)

    changes = check(django_capture_on_commit_callbacks, now=later(16))

    assert [(c.sink, c.state) for c in changes] == [("http", AlertState.STALE)]
    assert AuditSink.objects.get(name="http").alerted_at is not None
    assert {m.to[0] for m in mailoutbox} == admins
    message = mailoutbox[0]
    assert message.subject.startswith("[Airlock] Audit forwarding to the http sink is behind")
    assert "3 events" in message.subject
    assert siem_http.url.split("/services")[0] in message.body
    assert "  > " + f"{siem_http.url} answered 503 Service Unavailable" in message.body
    assert "/admin/audit/auditsink/" in message.body

    # Still behind at the next rounds: no second email for the same incident.
    assert check(django_capture_on_commit_callbacks, now=later(30)) == []
    assert check(django_capture_on_commit_callbacks, now=later(60)) == []
    assert len(mailoutbox) == len(admins)


def test_a_backlog_younger_than_the_threshold_alerts_nobody(
    siem_http, admins, eager_celery, mailoutbox, django_capture_on_commit_callbacks
):
    sink_down_with_a_backlog(siem_http)

    assert check(django_capture_on_commit_callbacks, now=later(14)) == []

    assert mailoutbox == []
    assert AuditSink.objects.get(name="http").alerted_at is None


def test_catching_up_ends_the_incident_with_a_note_and_a_new_one_alerts_again(
    siem_http, admins, eager_celery, mailoutbox, django_capture_on_commit_callbacks
):
    sink_down_with_a_backlog(siem_http)
    check(django_capture_on_commit_callbacks, now=later(16))
    AuditSink.objects.update(next_attempt_at=timezone.now())  # the backoff is over
    (report,) = audit_forward_all()
    assert report.delivered == 3
    mailoutbox.clear()

    changes = check(django_capture_on_commit_callbacks, now=timezone.now())

    assert [c.state for c in changes] == [AlertState.CAUGHT_UP]
    assert AuditSink.objects.get(name="http").alerted_at is None
    assert {m.to[0] for m in mailoutbox} == admins
    assert mailoutbox[0].subject == "[Airlock] Audit forwarding to the http sink caught up"
    assert "0 events wait now" in mailoutbox[0].body
    # Once: the incident is over, there is nothing more to say.
    assert check(django_capture_on_commit_callbacks, now=timezone.now()) == []

    # A new outage, long enough: a new incident, a new alert.
    mailoutbox.clear()
    sink_down_with_a_backlog(siem_http, count=2)
    changes = check(django_capture_on_commit_callbacks, now=later(20))

    assert [c.state for c in changes] == [AlertState.STALE]
    assert len(mailoutbox) == len(admins) and "2 events" in mailoutbox[0].subject


@pytest.mark.django_db(transaction=True)
def test_two_workers_checking_at_once_alert_once(
    siem_http, admins, eager_celery, mailoutbox, writer_database
):
    writer_database()
    sink_down_with_a_backlog(siem_http)
    when = later(16)

    def check_in_a_worker():
        writer_database()
        return audit_sink_alerts_update(now=when)

    answers = at_once(check_in_a_worker, times=2)

    # Whoever lost the compare-and-set on alerted_at reports (and signals) nothing.
    assert sorted(len(changes) for changes in answers) == [0, 1]
    assert len(mailoutbox) == len(admins)


def test_the_forwarding_task_checks_after_its_round_so_a_sink_that_caught_up_is_cleared(
    siem_http, admins, eager_celery, mailoutbox, django_capture_on_commit_callbacks
):
    sink_down_with_a_backlog(siem_http)
    # The incident as the check of an earlier round left it.
    AuditSink.objects.update(alerted_at=timezone.now(), next_attempt_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        forward_audit_log()

    assert AuditSink.objects.get(name="http").alerted_at is None
    assert [m.subject for m in mailoutbox][:1] == [
        "[Airlock] Audit forwarding to the http sink caught up"
    ]


def test_a_sink_no_longer_configured_is_not_alerted_about(
    siem_http, admins, settings, eager_celery, mailoutbox, django_capture_on_commit_callbacks
):
    sink_down_with_a_backlog(siem_http)
    settings.AIRLOCK_AUDIT_STREAM_URL = ""

    assert check(django_capture_on_commit_callbacks, now=later(60)) == []
    assert mailoutbox == []


def test_the_alert_is_posted_to_the_slack_webhook_too_like_overdue_revocations(
    siem_http, admins, eager_celery, mailoutbox, django_capture_on_commit_callbacks, settings
):
    hook = SlackHook()
    settings.AIRLOCK_SLACK_WEBHOOK_URL = hook.url
    try:
        sink_down_with_a_backlog(siem_http)
        check(django_capture_on_commit_callbacks, now=later(16))
    finally:
        hook.close()

    (text,) = hook.texts()
    assert text.startswith("*[Airlock] Audit forwarding to the http sink is behind")
    assert "/admin/audit/auditsink/|Open in Airlock>" in text
