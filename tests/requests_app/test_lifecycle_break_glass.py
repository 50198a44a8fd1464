"""Break-glass: access at once without approval where the policy allows it, with a reason and
a short maximum; approvers are told at once; the grant is flagged until an approver records
an after-the-fact review (acknowledged or escalated) in the admin. One at a time per person
and target: no second break-glass while the first is open or unreviewed."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEvent
from core.errors import NotAllowed, WrongState
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_cancel,
    access_request_end_early,
    access_request_review_break_glass,
)
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


# --- one break-glass at a time per person and target -----------------------------------------


def test_break_glass_cannot_be_chained_while_an_earlier_one_is_open_or_unreviewed(approvers):
    first = break_glass()
    assert first.status == Status.APPROVED

    with pytest.raises(ValidationError) as refused:
        break_glass()
    [message] = refused.value.error_dict["break_glass"][0].messages
    assert f"#{first.pk}" in message
    assert "normal request" in message and "review" in message

    # Ended, but nobody has reviewed it yet: still refused.
    access_request_end_early(access_request=first, user=first.requester, comment="done")
    with pytest.raises(ValidationError, match=f"#{first.pk}"):
        break_glass()

    # What the refusal says to do instead works: a normal request for approval.
    normal = file_request("dave", reason=URGENT)
    assert normal.status == Status.PENDING
    assert AccessRequest.objects.filter(break_glass=True).count() == 1
    access_request_cancel(access_request=normal, user=normal.requester)

    access_request_review_break_glass(
        access_request=first, reviewer=approvers["alice"], outcome="acknowledged"
    )
    again = break_glass()
    assert again.status == Status.APPROVED and again.pk != first.pk


def test_a_reviewed_break_glass_still_blocks_another_while_it_is_active(approvers):
    first = break_glass()
    access_request_review_break_glass(
        access_request=first, reviewer=approvers["bob"], outcome="acknowledged"
    )
    with pytest.raises(ValidationError, match=f"#{first.pk}"):
        break_glass(environment="PRODUCTION")  # the same target, however it is spelled


def test_the_limit_is_per_person_and_target(approvers):
    AccessPolicyFactory(
        name="staging",
        environment_patterns=["staging"],
        break_glass=True,
        break_glass_max_duration=timedelta(minutes=30),
    )
    break_glass("dave")
    assert break_glass("erin").status == Status.APPROVED  # someone else, same target
    assert break_glass("dave", environment="staging").status == Status.APPROVED


def test_a_chained_break_glass_is_refused_on_the_api_and_the_form(approvers, client):
    first = break_glass()
    api = APIClient()
    api.force_authenticate(first.requester)
    response = api.post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": URGENT,
            "duration_minutes": 20,
            "break_glass": True,
        },
        format="json",
    )
    assert response.status_code == 400, response.json()
    body = response.json()
    assert f"#{first.pk}" in body["message"] and "break_glass" in body["errors"]

    client.force_login(first.requester)
    page = client.post(
        reverse("requests_app:new"),
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": URGENT,
            "duration_minutes": 20,
            "break_glass": "on",
        },
    )
    assert page.status_code == 200
    [error] = page.context["form"].errors["break_glass"]
    assert f"#{first.pk}" in error and error in page.content.decode()
    assert AccessRequest.objects.filter(break_glass=True).count() == 1

