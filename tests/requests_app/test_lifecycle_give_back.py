"""Giving access back early: the requester ends their own grant from its page; the check
says no at once and the reconciler takes it off GitHub as soon as the commit is done. A
grant and its extensions are one stretch of access and end together."""

import pytest
from django.urls import reverse

from core.errors import NotAllowed, WrongState
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_revoke
from requests_app.models import AccessRequest
from requests_app.services import access_request_extend
from tests.requests_app.lifecycle import (
    active_on_github,
    approve,
    file_request,
    grant_now,
    move_expiry,
    policy_and_approvers,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status


@pytest.fixture
def approvers(gh):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    _, users = policy_and_approvers()
    return users


def give_back_url(access_request):
    return reverse("requests_app:give-back", args=[access_request.pk])


def test_giving_access_back_on_the_request_page_removes_it_from_github_at_once(
    gh, approvers, client, eager_celery, django_capture_on_commit_callbacks
):
    access_request = active_on_github(approvers["alice"])
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    client.force_login(access_request.requester)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(give_back_url(access_request), {"comment": "Done early"})

    assert response.status_code == 302
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    assert access_request.close_comment == "Done early"
    grant = Grant.objects.get(access_request=access_request)
    assert grant.state == Grant.State.REVOKED
    assert grant.end_reason == Grant.EndReason.REVOKED
    assert gh.reviewers("acme/api", "production") == ["bob"]
    page = client.get(response["Location"]).content.decode()
    assert "is given back" in page
    assert "Give access back now" not in page  # nothing left to give back


def test_giving_back_an_extended_grant_ends_its_extension_too(gh, approvers, client):
    original = active_on_github(approvers["alice"])
    extension = grant_now(
        approve(
            access_request_extend(
                original=original,
                requester=original.requester,
                reason="The migration needs another half hour",
                duration_minutes=30,
            ),
            approvers["bob"],
        )
    )
    assert extension.status == Status.ACTIVE
    client.force_login(original.requester)

    client.post(give_back_url(original))

    original.refresh_from_db()
    extension.refresh_from_db()
    assert (original.status, extension.status) == (Status.REVOKED, Status.REVOKED)
    reconcile_environment(original.grant.target_id)
    assert gh.reviewers("acme/api", "production") == ["bob"]


def test_giving_back_withdraws_a_pending_extension(gh, approvers):
    original = active_on_github(approvers["alice"])
    pending = access_request_extend(
        original=original,
        requester=original.requester,
        reason="The migration needs another half hour",
        duration_minutes=30,
    )

    grant_revoke(grant=original.grant, user=original.requester, comment="")

    pending.refresh_from_db()
    assert pending.status == Status.CANCELLED
    assert f"Ended with request #{original.pk}" in pending.close_comment


def test_only_the_requester_gives_access_back_and_only_once(gh, approvers, client):
    access_request = active_on_github(approvers["alice"])
    client.force_login(approvers["bob"])  # an approver who sees it, not its requester
    assert client.post(give_back_url(access_request)).status_code == 403
    with pytest.raises(NotAllowed):
        grant_revoke(grant=access_request.grant, user=approvers["bob"])
    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE

    client.force_login(access_request.requester)
    client.post(give_back_url(access_request))
    second = client.post(give_back_url(access_request), follow=True)
    assert "there is nothing to revoke" in second.content.decode()
    with pytest.raises(WrongState):
        grant = Grant.objects.get(access_request=access_request)
        grant_revoke(grant=grant, user=access_request.requester)


def test_a_pending_request_has_nothing_to_give_back(gh, approvers, client):
    pending = file_request("dave")
    client.force_login(pending.requester)
    assert (
        "Give access back"
        not in client.get(reverse("requests_app:detail", args=[pending.pk])).content.decode()
    )
    response = client.post(give_back_url(pending), follow=True)
    assert "has no access to give back" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == Status.PENDING


def test_access_past_its_expiry_offers_nothing_to_give_back_while_it_is_removed(
    gh, approvers, client
):
    access_request = move_expiry(active_on_github(approvers["alice"]))
    assert access_request.status == Status.ACTIVE  # the engine has not removed it yet
    client.force_login(access_request.requester)

    page = client.get(reverse("requests_app:detail", args=[access_request.pk])).content.decode()

    assert "Give access back now" not in page
    assert "Ask for more time" not in page
