"""Asking for more time: an extension goes through the policy again and, once approved while
the original is in force, access continues from the original's expiry with no removal and
re-adding on GitHub. Approved after the original expired, it is a new grant and says so."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from core.errors import NotAllowed, WrongState
from grants.check import grant_check, grant_check_scope
from grants.models import Grant
from grants.reconciler import reconcile_environment
from requests_app.models import AccessRequest
from requests_app.services import access_request_extend
from tests.requests_app.factories import SecretDefinitionFactory
from tests.requests_app.lifecycle import (
    REASON,
    active_on_github,
    approve,
    environment_puts,
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


def extend(original, minutes=45, reason="The migration needs another 45 minutes"):
    return access_request_extend(
        original=original, requester=original.requester, reason=reason, duration_minutes=minutes
    )


def test_an_extension_approved_in_time_continues_without_a_gap_or_a_github_write(
    gh, approvers
):
    original = active_on_github(approvers["alice"])
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    puts_before = len(environment_puts(gh))

    extension = extend(original)
    assert extension.status == Status.PENDING and extension.extends_id == original.pk
    extension = grant_now(approve(extension, approvers["bob"]))

    assert extension.status == Status.ACTIVE
    assert extension.continues_original is True
    assert extension.expires_at == original.expires_at + timedelta(minutes=45)
    assert len(environment_puts(gh)) == puts_before  # dave is already a reviewer
    grant = Grant.objects.get(access_request=extension)
    assert grant.expires_at == extension.expires_at
    # The check (and so the Action) answers with the new end.
    scope = grant_check_scope(
        caller=extension.requester,
        repository="acme/api",
        environment="production",
        access="reviewer",
    )
    assert grant_check(scope=scope).grant.request == extension.pk

    # The original ends: the reviewer stays, shared with the extension. Nothing is written.
    reconcile_environment(move_expiry(original).grant.target_id)
    original.refresh_from_db()
    assert original.status == Status.EXPIRED
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    assert len(environment_puts(gh)) == puts_before

    # The extension ends: now the reviewer goes.
    reconcile_environment(move_expiry(extension).grant.target_id)
    extension.refresh_from_db()
    assert extension.status == Status.EXPIRED
    assert gh.reviewers("acme/api", "production") == ["bob"]

    applied = AuditEvent.objects.get(action="grant.applied", target_id=str(grant.pk))
    assert applied.detail["extends"] == original.pk
    assert applied.detail["continues_original"] is True
    activated = AuditEvent.objects.get(action="request.activated", target_id=str(extension.pk))
    assert activated.detail["extends"] == original.pk
    filed = AuditEvent.objects.get(action="request.extension_filed")
    assert (filed.target_id, filed.detail["extension"]) == (str(original.pk), extension.pk)
    requested = AuditEvent.objects.get(action="request.extension_requested")
    assert (requested.target_id, requested.detail["extends"]) == (str(extension.pk), original.pk)


def test_an_extension_approved_after_the_original_expired_is_a_new_grant_and_says_so(
    gh, approvers, client
):
    original = active_on_github(approvers["alice"])
    extension = extend(original)
    reconcile_environment(move_expiry(original).grant.target_id)
    assert gh.reviewers("acme/api", "production") == ["bob"]  # the original is gone

    before = timezone.now()
    extension = grant_now(approve(extension, approvers["bob"]))

    assert extension.status == Status.ACTIVE
    assert extension.continues_original is False
    assert extension.granted_at >= before
    assert extension.expires_at == extension.granted_at + timedelta(minutes=45)
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    grant = Grant.objects.get(access_request=extension)
    applied = AuditEvent.objects.get(action="grant.applied", target_id=str(grant.pk))
    assert applied.detail["continues_original"] is False
    assert applied.detail["note"] == "the original had already expired; this is a new grant"

    client.force_login(extension.requester)
    page = client.get(reverse("requests_app:detail", args=[extension.pk])).content.decode()
    assert "the original had already expired; this is a new grant" in page


def test_the_original_expiring_as_the_extension_is_approved_never_removes_and_re_adds(
    gh, approvers
):
    """The apply task for the extension has not run (its message is late or lost) when the
    original's expiry reconcile comes: that pass must see the extension and keep dave."""
    original = active_on_github(approvers["alice"])
    extension = approve(extend(original), approvers["bob"])  # approved, no grant yet
    assert not Grant.objects.filter(access_request=extension).exists()
    # Approved a minute ago, while the original was in force; it has ended since.
    AccessRequest.objects.filter(pk=extension.pk).update(
        decided_at=timezone.now() - timedelta(minutes=1)
    )
    puts_before = len(environment_puts(gh))

    reconcile_environment(move_expiry(original).grant.target_id)

    original.refresh_from_db()
    extension.refresh_from_db()
    assert original.status == Status.EXPIRED
    assert extension.status == Status.ACTIVE
    assert extension.continues_original is True  # approved while the original was in force
    assert extension.expires_at == original.expires_at + timedelta(minutes=45)
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    assert len(environment_puts(gh)) == puts_before


def test_approved_at_the_instant_the_original_ends_keeps_access_on_github_as_a_new_grant(
    gh, approvers
):
    original = active_on_github(approvers["alice"])
    extension = approve(extend(original), approvers["bob"])
    # The approval and the expiry at the same instant: the original is no longer in force.
    original = move_expiry(original, to=extension.decided_at)
    puts_before = len(environment_puts(gh))

    reconcile_environment(original.grant.target_id)

    extension.refresh_from_db()
    assert extension.status == Status.ACTIVE
    assert extension.continues_original is False
    assert extension.expires_at == extension.granted_at + timedelta(minutes=45)
    assert gh.reviewers("acme/api", "production") == ["bob", "dave"]
    assert len(environment_puts(gh)) == puts_before  # one pass: no removal, no re-adding


def test_an_extension_of_an_extension_continues_from_the_last_end(gh, approvers):
    original = active_on_github(approvers["alice"])
    first = grant_now(approve(extend(original, 30), approvers["bob"]))
    second = grant_now(approve(extend(first, 20), approvers["carol"]))

    assert second.continues_original is True
    assert second.expires_at == original.expires_at + timedelta(minutes=50)


def test_extensions_are_refused_for_others_for_ended_access_and_twice(gh, approvers):
    original = active_on_github(approvers["alice"])
    with pytest.raises(NotAllowed):
        access_request_extend(
            original=original, requester=approvers["bob"], reason=REASON, duration_minutes=10
        )

    pending = file_request("erin", duration_minutes=10)
    with pytest.raises(WrongState, match="only active access can be extended"):
        extend(pending)

    open_extension = extend(original)
    with pytest.raises(WrongState, match=f"already has extension #{open_extension.pk}"):
        extend(original)

    gh.add_user("frank")
    other = active_on_github(approvers["alice"], login="frank")
    move_expiry(other)  # past its end, though the sweep has not ended it yet
    with pytest.raises(WrongState, match="expired at"):
        extend(other)
    assert AccessRequest.objects.filter(extends__isnull=False).count() == 1


def test_an_extension_keeps_to_the_policy_and_saves_nothing_when_refused(gh, approvers):
    original = active_on_github(approvers["alice"])
    with pytest.raises(ValidationError) as refused:
        extend(original, minutes=5 * 60)  # the policy allows 4 hours
    assert "duration_minutes" in refused.value.error_dict
    with pytest.raises(ValidationError) as refused:
        extend(original, reason="more")
    assert "reason" in refused.value.error_dict
    assert not AccessRequest.objects.filter(extends=original).exists()


def test_asking_for_more_time_on_the_request_page(gh, approvers, client):
    original = active_on_github(approvers["alice"])
    client.force_login(original.requester)
    detail = reverse("requests_app:detail", args=[original.pk])

    page = client.get(detail).content.decode()
    assert "Ask for more time" in page and "Give access back" in page

    refused = client.post(
        reverse("requests_app:extend", args=[original.pk]),
        {"reason": "short", "duration_minutes": "30"},
    )
    assert refused.status_code == 400
    assert "at least 10 characters" in refused.content.decode()

    response = client.post(
        reverse("requests_app:extend", args=[original.pk]),
        {"reason": "The migration needs another half hour", "duration_minutes": "30"},
    )
    extension = AccessRequest.objects.get(extends=original)
    assert response.status_code == 302
    assert response["Location"] == reverse("requests_app:detail", args=[extension.pk])
    shown = client.get(response["Location"]).content.decode()
    assert f'href="{detail}"' in shown  # linked back to the original

    grant_now(approve(extension, approvers["bob"]))
    page = client.get(detail).content.decode()
    assert reverse("requests_app:detail", args=[extension.pk]) in page
    assert "extended until" in page
    mine = client.get(reverse("requests_app:my-requests")).content.decode()
    assert "extended until" in mine and f"extends #{original.pk}" in mine


def test_someone_elses_request_cannot_be_extended_from_the_web(gh, approvers, client):
    original = active_on_github(approvers["alice"])
    client.force_login(approvers["bob"])  # may see it (routed), but it is not theirs
    response = client.post(
        reverse("requests_app:extend", args=[original.pk]),
        {"reason": "The migration needs another half hour", "duration_minutes": "30"},
    )
    assert response.status_code == 403
    assert not AccessRequest.objects.filter(extends=original).exists()


def test_the_api_extends_a_request_and_lists_its_extensions(gh, approvers):
    original = active_on_github(approvers["alice"])
    api = APIClient()
    api.force_authenticate(original.requester)

    response = api.post(
        f"/api/v1/requests/{original.pk}/extend",
        {"reason": "The migration needs another half hour", "duration_minutes": 30},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["extends"] == original.pk
    assert response.json()["status"] == "pending"

    again = api.post(
        f"/api/v1/requests/{original.pk}/extend",
        {"reason": "The migration needs another half hour"},
        format="json",
    )
    assert again.status_code == 409
    shown = api.get(f"/api/v1/requests/{original.pk}/").json()
    assert [e["id"] for e in shown["extensions"]] == [response.json()["id"]]

    bad = api.post(f"/api/v1/requests/{original.pk}/extend", {"reason": 5}, format="json")
    assert bad.status_code in (400, 409)


def test_an_extended_environment_secret_stays_written_with_no_delete_or_rewrite(gh):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    secret = SecretDefinitionFactory(name="DEPLOY_TOKEN", value="tok-4f9a-very-secret")
    _, users = policy_and_approvers(secrets=[secret])
    original = grant_now(
        approve(file_request("dave", access="secret", secret_name="DEPLOY_TOKEN"), users["alice"])
    )
    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == (
        "tok-4f9a-very-secret"
    )
    writes_before = len(gh.writes)

    extension = grant_now(approve(extend(original), users["bob"]))
    reconcile_environment(move_expiry(original).grant.target_id)

    extension.refresh_from_db()
    assert extension.continues_original is True and extension.secret == secret
    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == (
        "tok-4f9a-very-secret"
    )
    assert len(gh.writes) == writes_before
