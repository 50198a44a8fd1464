"""Break-glass: access at once without approval where the policy allows it, with a reason and
a short maximum; approvers are told at once; the grant is flagged until an approver records
an after-the-fact review (acknowledged or escalated) in the admin."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from requests_app.exceptions import NotAllowed, WrongState
from requests_app.models import AccessRequest
from requests_app.services import access_request_review_break_glass
from tests.requests_app.factories import AccessPolicyFactory, UserFactory
from tests.requests_app.lifecycle import file_request, grant_now, policy_and_approvers

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")
URGENT = "Production is down (INC-999); rolling back the release now"


@pytest.fixture
def approvers():
    _, users = policy_and_approvers(
        approvals_required=2, break_glass=True, break_glass_max_duration=timedelta(minutes=30)
    )
    return users


def break_glass(login="dave", minutes=20, **extra):
    return file_request(login, duration_minutes=minutes, break_glass=True, reason=URGENT, **extra)


def review_url(access_request):
    return reverse("admin:requests_app_accessrequest_review", args=[access_request.pk])


def test_break_glass_grants_at_once_and_tells_the_approvers_at_once(
    gh, approvers, eager_celery, django_capture_on_commit_callbacks
):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        access_request = break_glass()

    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE  # no approval was needed
    assert access_request.approvals_required == 0
    assert gh.reviewers("acme/api", "production") == ["dave"]
    alerts = [m for m in mail.outbox if "BREAK-GLASS" in m.subject]
    assert sorted(m.to[0] for m in alerts) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert URGENT in alerts[0].body
    assert reverse("admin:requests_app_accessrequest_change", args=[access_request.pk]) in (
        alerts[0].body
    )
    assert AuditEvent.objects.filter(action="request.break_glass").exists()


def test_break_glass_is_refused_where_the_policy_forbids_it_or_beyond_its_maximum(approvers):
    with pytest.raises(ValidationError) as refused:
        break_glass(minutes=45)
    assert "duration_minutes" in refused.value.error_dict
    with pytest.raises(ValidationError) as refused:
        file_request(duration_minutes=10, break_glass=True, reason="urgent")
    assert "reason" in refused.value.error_dict

    AccessPolicyFactory(
        name="staging", environment_patterns=["staging"], break_glass=False
    )
    with pytest.raises(ValidationError) as refused:
        break_glass(environment="staging")
    assert "break_glass" in refused.value.error_dict
    assert not AccessRequest.objects.exists()


def test_an_approver_records_the_review_once_and_it_is_audited(approvers):
    access_request = break_glass()

    access_request_review_break_glass(
        access_request=access_request,
        reviewer=approvers["alice"],
        outcome="acknowledged",
        comment="Matches INC-999",
    )

    access_request.refresh_from_db()
    assert access_request.review_outcome == "acknowledged"
    assert access_request.reviewed_by == approvers["alice"]
    assert access_request.reviewed_at is not None
    event = AuditEvent.objects.get(action="request.break_glass_reviewed")
    assert event.actor_label == "alice" and event.detail["outcome"] == "acknowledged"
    with pytest.raises(WrongState, match="already reviewed"):
        access_request_review_break_glass(
            access_request=access_request, reviewer=approvers["bob"], outcome="escalated",
            comment="I disagree",
        )


def test_the_requester_and_outsiders_cannot_review_and_escalating_needs_a_reason(approvers):
    access_request = break_glass("alice")  # an approver using break-glass herself
    with pytest.raises(NotAllowed, match="your own request"):
        access_request_review_break_glass(
            access_request=access_request, reviewer=approvers["alice"], outcome="acknowledged"
        )
    with pytest.raises(NotAllowed, match="Only members"):
        access_request_review_break_glass(
            access_request=access_request,
            reviewer=UserFactory(username="mallory"),
            outcome="acknowledged",
        )
    with pytest.raises(ValidationError):
        access_request_review_break_glass(
            access_request=access_request, reviewer=approvers["bob"], outcome="escalated"
        )
    ordinary = file_request("erin")
    with pytest.raises(NotAllowed, match="not break-glass"):
        access_request_review_break_glass(
            access_request=ordinary, reviewer=approvers["bob"], outcome="acknowledged"
        )
    access_request.refresh_from_db()
    assert access_request.review_outcome == ""


def test_break_glass_stands_out_in_the_admin_until_reviewed_there(approvers, client):
    access_request = break_glass()
    file_request("erin")
    client.force_login(approvers["bob"])

    listed = client.get(CHANGELIST + "?awaiting=all&lifecycle=break_glass_review")
    page = listed.content.decode()
    assert listed.status_code == 200
    assert "BREAK-GLASS" in page and "awaiting review" in page
    assert list(listed.context["cl"].queryset) == [access_request]

    change = client.get(
        reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    ).content.decode()
    assert "Awaiting your review." in change and review_url(access_request) in change

    form = client.get(review_url(access_request))
    assert form.status_code == 200 and "acknowledged" in form.content.decode()
    refused = client.post(review_url(access_request), {"post": "yes", "outcome": "escalated"})
    assert refused.status_code == 302  # recorded nothing: the message says why
    access_request.refresh_from_db()
    assert access_request.review_outcome == ""

    done = client.post(
        review_url(access_request),
        {"post": "yes", "outcome": "escalated", "comment": "No incident ticket was opened"},
        follow=True,
    )
    assert "review recorded (Escalated)" in done.content.decode()
    access_request.refresh_from_db()
    assert access_request.review_outcome == "escalated"
    after = client.get(CHANGELIST + "?awaiting=all&lifecycle=break_glass_review")
    assert list(after.context["cl"].queryset) == []


def test_the_review_action_on_the_list_refuses_the_requesters_own(approvers, client):
    own = break_glass("alice")
    other = break_glass("dave")
    client.force_login(approvers["alice"])
    ids = [str(own.pk), str(other.pk)]

    response = client.post(
        CHANGELIST + "?awaiting=all",
        {
            "action": "review_break_glass_selected",
            ACTION_CHECKBOX_NAME: ids,
            "post": "yes",
            "outcome": "acknowledged",
        },
        follow=True,
    )

    text = response.content.decode()
    assert "You cannot decide on your own request." in text
    own.refresh_from_db()
    other.refresh_from_db()
    assert (own.review_outcome, other.review_outcome) == ("", "acknowledged")


def test_a_break_glass_grant_shows_its_review_on_the_requesters_page(gh, approvers, client):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    access_request = grant_now(break_glass())
    client.force_login(access_request.requester)
    detail = reverse("requests_app:detail", args=[access_request.pk])
    assert "awaiting an approver's review" in client.get(detail).content.decode()
    access_request_review_break_glass(
        access_request=access_request, reviewer=approvers["bob"], outcome="acknowledged"
    )
    assert "Acknowledged" in client.get(detail).content.decode()
