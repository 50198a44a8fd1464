"""Helpers of the lifecycle tests: access granted on the local GitHub through the real
services and engine, as a requester and approvers would get it."""

from datetime import timedelta

from django.utils import timezone

from grants.models import Grant
from grants.services import grant_apply_request
from requests_app.models import AccessRequest
from requests_app.services import access_request_approve, access_request_create
from tests.requests_app.factories import UserFactory, approver_setup

REASON = "Deploying the hotfix for INC-1234 to production"


def policy_and_approvers(**policy):
    """A policy needing one approval, routed to alice, bob and carol (users with emails)."""
    policy.setdefault("approvals_required", 1)
    policy_obj, group, users = approver_setup(**policy)
    return policy_obj, users


def file_request(login="dave", *, duration_minutes=30, **extra) -> AccessRequest:
    return access_request_create(
        requester=UserFactory(username=login),
        repository=extra.pop("repository", "acme/api"),
        environment=extra.pop("environment", "production"),
        access=extra.pop("access", "reviewer"),
        reason=extra.pop("reason", REASON),
        duration_minutes=duration_minutes,
        **extra,
    )


def approve(access_request, *approvers) -> AccessRequest:
    for approver in approvers:
        access_request_approve(access_request=access_request, approver=approver)
    access_request.refresh_from_db()
    return access_request


def grant_now(access_request) -> AccessRequest:
    """What the apply task does after the approval commits."""
    grant_apply_request(request_id=access_request.pk)
    access_request.refresh_from_db()
    return access_request


def active_on_github(approver, login="dave", **extra) -> AccessRequest:
    access_request = approve(file_request(login, **extra), approver)
    return grant_now(access_request)


def move_expiry(access_request, *, to=None) -> AccessRequest:
    """Move an active request's end (and its grant's) to `to` (a moment ago by default),
    as the passing of time would."""
    when = to or timezone.now() - timedelta(milliseconds=10)
    Grant.objects.filter(access_request=access_request).update(expires_at=when)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=when)
    access_request.refresh_from_db()
    return access_request


def environment_puts(github) -> list:
    return [r for r in github.requests if r.method == "PUT" and "/environments/" in r.path]
