"""What platform admins see of audit forwarding: the dashboard's "Audit forwarding" card and
the read-only "Audit sinks" admin, each sink's target, backlog, last delivery, last error
(the receiver's words, escaped) and backoff; approvers see neither."""

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.forwarding import audit_forward_all
from audit.models import AuditSink
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")
CHANGELIST = reverse("admin:audit_auditsink_changelist")
# What a hostile or broken receiver may put in its status line.
REASON = "<script>alert(1)</script> Busy"


def card(response):
    return next(
        (s for s in response.context["airlock_dashboard"] if s["key"] == "audit_forwarding"),
        None,
    )


@pytest.fixture
def failing_sink(siem_http):
    AuditEventFactory.create_batch(4)
    siem_http.fail_next(1, status=503, reason=REASON)
    (report,) = audit_forward_all()
    assert REASON in report.error
    return siem_http


def test_the_card_shows_each_sinks_backlog_error_and_backoff_with_the_error_escaped(
    client, platform_admin, failing_sink
):
    response = client.get(INDEX)

    section = card(response)
    assert section["style"] == "alert" and section["count"] == 1
    (sink,) = section["rows"]
    row = AuditSink.objects.get(name="http")
    assert (sink.name, sink.target, sink.backlog.events) == ("http", row.target, 4)
    assert sink.backing_off_until == row.next_attempt_at
    page = response.content.decode()
    assert "backlog: 4 events, the oldest written" in page
    assert "last delivered: never" in page
    assert "backing off until" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Busy" in page
    assert REASON not in page


def test_once_caught_up_the_card_says_so_and_is_no_longer_an_alert(
    client, platform_admin, failing_sink
):
    AuditSink.objects.update(next_attempt_at=timezone.now())
    audit_forward_all()

    response = client.get(INDEX)

    section = card(response)
    assert section["style"] == ""
    page = response.content.decode()
    assert "backlog: 0 events, caught up" in page
    assert "backing off until" not in page


def test_with_no_sink_configured_the_card_says_so(client, platform_admin, settings):
    settings.AIRLOCK_AUDIT_STREAM_URL = ""
    settings.AIRLOCK_AUDIT_SYSLOG_URL = ""

    response = client.get(INDEX)

    assert card(response)["rows"] == []
    assert "No sink configured: the audit log is not forwarded" in response.content.decode()


def test_approvers_see_neither_the_card_nor_the_sinks(client, failing_sink):
    from tests.requests_app.factories import approver_setup

    _, _, users = approver_setup()
    client.force_login(users["alice"])

    assert card(client.get(INDEX)) is None
    assert client.get(CHANGELIST).status_code == 403


def test_the_sinks_admin_lists_the_same_read_only_and_escaped(client, platform_admin, failing_sink):
    row = AuditSink.objects.get(name="http")

    listing = client.get(CHANGELIST)

    assert listing.status_code == 200
    page = listing.content.decode()
    assert row.target in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Busy" in page and REASON not in page
    assert reverse("admin:audit_auditsink_add") not in page
    assert client.get(reverse("admin:audit_auditsink_add")).status_code == 403
    change = reverse("admin:audit_auditsink_change", args=[row.pk])
    assert client.get(change).status_code == 200  # viewable
    assert client.post(change, {"cursor": "3"}).status_code == 403
    assert client.post(reverse("admin:audit_auditsink_delete", args=[row.pk])).status_code == 403
    row.refresh_from_db()
    assert row.cursor == 0 and AuditSink.objects.count() == 1
