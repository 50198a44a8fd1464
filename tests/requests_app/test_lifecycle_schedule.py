"""A scheduled start (the grant begins at starts_at, its duration counted from then) and the
pending TTL (undecided requests time out, and the requester is told)."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from core.errors import WrongState
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grants_sweep
from requests_app.models import AccessRequest
from requests_app.services import access_request_approve
from tests.requests_app.factories import UserFactory
from tests.requests_app.lifecycle import (
    approve,
    environment_puts,
    file_request,
    grant_now,
    policy_and_approvers,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status


@pytest.fixture
def approvers(gh):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    _, users = policy_and_approvers(break_glass=True)
    return users


def test_approved_before_its_start_the_grant_begins_at_the_start_and_lasts_from_then(
    gh, approvers
):
    starts_at = timezone.now() + timedelta(hours=2)
    access_request = approve(file_request(starts_at=starts_at), approvers["alice"])
    assert access_request.status == Status.APPROVED

    grant_now(access_request)  # the apply task after the approval
    grants_sweep()
    grant = Grant.objects.get(access_request=access_request)
    assert grant.state == Grant.State.PENDING and grant.waits_for_start
    assert environment_puts(gh) == []
    assert gh.reviewers("acme/api", "production") == []

    # The start comes (moved here, as time would move).
    start = timezone.now() - timedelta(seconds=1)
    AccessRequest.objects.filter(pk=access_request.pk).update(starts_at=start)
    report = grants_sweep()
    assert f"Target {grant.target_id}" in report.reconciles
    reconcile_environment(grant.target_id)  # what the enqueued reconcile does

    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE
    assert access_request.granted_at >= start
    assert access_request.expires_at == access_request.granted_at + timedelta(minutes=30)
    assert gh.reviewers("acme/api", "production") == ["dave"]


def test_a_start_in_the_past_too_far_ahead_or_with_break_glass_is_refused(gh, approvers):
    now = timezone.now()
    for starts_at, extra in (
        (now - timedelta(hours=1), {}),
        (now + timedelta(days=31), {}),
        (now + timedelta(hours=1), {"break_glass": True}),
    ):
        with pytest.raises(ValidationError) as refused:
            file_request(starts_at=starts_at, **extra)
        assert "starts_at" in refused.value.error_dict
    assert not AccessRequest.objects.exists()


def test_the_request_form_refuses_a_start_in_the_past(gh, approvers, client):
    client.force_login(UserFactory(username="dave"))
    response = client.post(
        reverse("requests_app:new"),
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234 to production",
            "duration_minutes": "30",
            "starts_at": (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert response.status_code == 200
    assert "The start must be in the future." in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_an_undecided_request_times_out_and_the_requester_is_told(
    gh, approvers, eager_celery, django_capture_on_commit_callbacks
):
    access_request = file_request()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        pending_until=timezone.now() - timedelta(seconds=1)
    )
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        report = grants_sweep()

    assert report.timed_out == 1
    access_request.refresh_from_db()
    assert access_request.status == Status.TIMED_OUT
    [message] = mail.outbox
    assert message.to == ["dave@example.com"]
    assert "timed out" in message.subject
    with pytest.raises(WrongState):
        access_request_approve(access_request=access_request, approver=approvers["alice"])


def test_a_request_still_within_its_ttl_does_not_time_out(gh, approvers):
    access_request = file_request()
    assert grants_sweep().timed_out == 0
    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING
