"""Reviewer grants on the faithful local GitHub: added when applied, removed when they end,
and nothing else about the environment changed."""

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from audit.models import AuditEvent
from grants.models import Grant, Target
from grants.reconciler import reconcile_environment
from grants.services import grant_apply_request, grant_reconcile, grant_revoke
from requests_app.models import AccessRequest
from tests.fixtures import database_refuses
from tests.grants.factories import approved_request, expire_now, reviewer_grant
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status

PROTECTED = {
    "reviewers": [("User", "bob"), ("Team", "acme/sre")],
    "wait_timer": 30,
    "prevent_self_review": True,
    "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
    "can_admins_bypass": False,
}


def refusing_to_apply_grants():
    """A trigger that makes the database refuse any grant's move to applied."""
    return database_refuses(
        Grant,
        on="UPDATE",
        when="NEW.state = 'applied'",
        reason="worker died after the PUT",
    )


def environment_calls(github, method):
    return [
        r for r in github.requests if r.method == method and "/environments/production" in r.path
    ]


def test_grant_then_expiry_adds_then_removes_the_reviewer_and_keeps_every_other_setting(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", **PROTECTED)
    before = gh.environment("acme/api", "production")
    access_request = approved_request("alice", duration_minutes=30)

    started = timezone.now()
    grant_apply_request(request_id=access_request.pk)

    during = gh.environment("acme/api", "production")
    assert during["reviewers"] == [("User", "bob"), ("Team", "acme/sre"), ("User", "alice")]
    assert {k: v for k, v in during.items() if k != "reviewers"} == {
        k: v for k, v in before.items() if k != "reviewers"
    }
    grant = Grant.objects.get(access_request=access_request)
    access_request.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert access_request.status == Status.ACTIVE
    assert started <= grant.applied_at <= timezone.now()
    assert grant.expires_at == grant.applied_at + timedelta(minutes=30)
    assert access_request.granted_at == grant.applied_at
    assert access_request.expires_at == grant.expires_at

    reconcile_environment(expire_now(grant).target_id)

    assert gh.environment("acme/api", "production") == before
    grant.refresh_from_db()
    access_request.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.end_reason == Grant.EndReason.EXPIRED
    assert access_request.status == Status.EXPIRED
    assert access_request.ended_at == grant.revoked_at
    # Each of the two writes sent every setting as it was, only the reviewers changed.
    puts = environment_calls(gh, "PUT")
    assert len(puts) == 2
    for put in puts:
        assert put.json["wait_timer"] == 30
        assert put.json["prevent_self_review"] is True
        assert put.json["deployment_branch_policy"] == PROTECTED["deployment_branch_policy"]


def test_every_github_write_is_audited_with_the_state_before_and_after(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)
    reconcile_environment(expire_now(grant).target_id)

    writes = AuditEvent.objects.filter(action="github.environment_updated").order_by("seq")
    assert [[r["login"] for r in e.detail["before"]["reviewers"]] for e in writes] == [
        ["bob"],
        ["bob", "alice"],
    ]
    assert [[r["login"] for r in e.detail["after"]["reviewers"]] for e in writes] == [
        ["bob", "alice"],
        ["bob"],
    ]
    assert [e.detail["added"] for e in writes] == [["alice"], []]
    assert [e.detail["removed"] for e in writes] == [[], ["alice"]]
    baseline = AuditEvent.objects.get(action="target.baseline_recorded")
    assert [r["login"] for r in baseline.detail["environment"]["reviewers"]] == ["bob"]
    actions = list(
        AuditEvent.objects.filter(target_type="grants.grant").values_list("action", flat=True)
    )
    assert actions == ["grant.created", "grant.applied", "grant.revoked"]


def test_a_permanent_reviewer_who_also_gets_a_grant_stays_a_reviewer_afterwards(gh):
    gh.add_environment("acme/api", "production", reviewers=[("User", "alice"), ("User", "bob")])
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert environment_calls(gh, "PUT") == []  # she was already there: nothing to write

    reconcile_environment(expire_now(grant).target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert gh.reviewers("acme/api", "production") == ["alice", "bob"]
    assert environment_calls(gh, "PUT") == []


def test_overlapping_grants_for_the_same_person_last_until_the_last_one_ends(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    first = reviewer_grant("alice", duration_minutes=30)
    grant_reconcile(grant=first)
    second = reviewer_grant("alice", duration_minutes=120)
    grant_reconcile(grant=second)
    assert gh.reviewers("acme/api", "production") == ["bob", "alice"]

    reconcile_environment(expire_now(first).target_id)

    first.refresh_from_db()
    assert first.state == Grant.State.REVOKED
    assert gh.reviewers("acme/api", "production") == ["bob", "alice"]

    reconcile_environment(expire_now(second).target_id)

    second.refresh_from_db()
    assert second.state == Grant.State.REVOKED
    assert gh.reviewers("acme/api", "production") == ["bob"]


def test_six_reviewers_already_fails_the_grant_with_githubs_reason_and_changes_nothing(gh):
    gh.add_user("alice")
    six = [("User", f"user{i}") for i in range(4)] + [("Team", "acme/sre"), ("Team", "acme/ops")]
    gh.add_environment("acme/api", "production", reviewers=six, wait_timer=5)
    before = gh.environment("acme/api", "production")
    access_request = approved_request("alice")

    grant_apply_request(request_id=access_request.pk)

    grant = Grant.objects.get(access_request=access_request)
    access_request.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert access_request.status == Status.FAILED
    assert "Only 6 reviewers" in grant.last_error  # the local GitHub's 422 message
    assert "alice" in grant.last_error
    assert access_request.close_comment == grant.last_error
    assert gh.environment("acme/api", "production") == before
    event = AuditEvent.objects.get(action="grant.failed")
    assert event.reason == grant.last_error


# GitHub's answer to required reviewers on a private or internal repository outside GitHub
# Enterprise (README "What works on which GitHub plan").
PLAN_REFUSAL = (
    "Failed to create the environment protection rule. Please ensure the billing plan "
    "supports the required reviewers protection rule."
)


def test_a_plan_without_required_reviewers_fails_the_grant_with_githubs_message(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.add(
        "PUT", "/repos/acme/api/environments/production", status=422, times=None,
        body={"message": PLAN_REFUSAL, "documentation_url": "https://docs.github.com/rest"},
    )
    access_request = approved_request("alice")

    grant_apply_request(request_id=access_request.pk)

    grant = Grant.objects.get(access_request=access_request)
    access_request.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert access_request.status == Status.FAILED
    assert PLAN_REFUSAL in grant.last_error
    assert PLAN_REFUSAL in access_request.close_comment
    assert gh.reviewers("acme/api", "production") == []


def test_a_refused_reviewer_fails_only_their_own_grant(gh):
    for login in ("alice", "carol", "dave"):
        gh.add_user(login)
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    gh.deny_read_access("acme/api", "carol")
    grants = [reviewer_grant(login) for login in ("alice", "carol", "dave")]

    reconcile_environment(grants[0].target_id)

    states = {g.login: Grant.objects.get(pk=g.pk) for g in grants}
    assert states["alice"].state == Grant.State.APPLIED
    assert states["dave"].state == Grant.State.APPLIED
    assert states["carol"].state == Grant.State.FAILED
    assert "doesn't have access to the repository" in states["carol"].last_error
    assert gh.reviewers("acme/api", "production") == ["bob", "alice", "dave"]


def test_grants_starting_or_ending_together_take_one_read_and_one_write(gh):
    logins = ["alice", "carol", "dave", "erin", "frank"]
    for login in logins:
        gh.add_user(login, id=5000 + len(login) * 10 + ord(login[0]))
    gh.add_environment("acme/api", "production")
    grants = [reviewer_grant(login) for login in logins]
    before = len(gh.requests)

    result = reconcile_environment(grants[0].target_id)

    new = gh.requests[before:]
    env = [r for r in new if "/environments/" in r.path]
    assert [r.method for r in env] == ["GET", "PUT"]
    assert result.applied and len(result.applied) == 5
    assert gh.reviewers("acme/api", "production") == logins[:5]

    for grant in grants:
        expire_now(grant)
    before = len(gh.requests)
    result = reconcile_environment(grants[0].target_id)

    env = [r for r in gh.requests[before:] if "/environments/" in r.path]
    assert [r.method for r in env] == ["GET", "PUT"]
    assert len(result.revoked) == 5
    assert gh.reviewers("acme/api", "production") == []


def test_reconciling_again_changes_nothing(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[("Team", "acme/sre")])
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    writes = len(gh.writes)

    quiet = reconcile_environment(grant.target_id)
    checked = reconcile_environment(grant.target_id, check=True)

    assert (quiet.github_reads, quiet.github_writes) == (0, 0)
    assert (checked.github_reads, checked.github_writes) == (1, 0)
    assert len(gh.writes) == writes
    assert not checked.drift


def test_a_reviewer_added_by_hand_meanwhile_is_never_removed(gh):
    gh.add_user("alice")
    gh.add_user("carol")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    # Someone adds carol on GitHub while alice's grant lasts.
    gh.add_environment("acme/api", "production", reviewers=["bob", "alice", "carol"])

    reconcile_environment(expire_now(grant).target_id)

    assert gh.reviewers("acme/api", "production") == ["bob", "carol"]
    drift = AuditEvent.objects.get(action="target.drift")
    assert [r["login"] for r in drift.detail["found"]["reviewers"]] == ["bob", "alice", "carol"]


def test_the_drift_check_puts_back_a_granted_reviewer_removed_by_hand_and_audits_it(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")], wait_timer=10)
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    gh.add_environment("acme/api", "production", reviewers=["bob"], wait_timer=10)

    result = reconcile_environment(grant.target_id, check=True)

    assert result.drift
    assert gh.reviewers("acme/api", "production") == ["bob", "alice"]
    assert gh.environment("acme/api", "production")["wait_timer"] == 10
    drift = AuditEvent.objects.get(action="target.drift")
    assert drift.detail["repaired"]["added"] == ["alice"]
    assert Target.objects.get().last_checked_at is not None


def test_revoking_early_ends_the_request_at_once_and_removes_the_reviewer(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)

    grant_revoke(grant=grant, user=admin, comment="incident over")

    access_request = AccessRequest.objects.get(pk=grant.access_request_id)
    assert access_request.status == Status.REVOKED
    assert gh.reviewers("acme/api", "production") == ["alice"]  # GitHub follows the commit

    reconcile_environment(grant.target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.end_reason == Grant.EndReason.REVOKED
    assert gh.reviewers("acme/api", "production") == []


def test_a_missing_environment_fails_the_grant_with_githubs_404_and_creates_nothing(gh):
    gh.add_user("alice")
    grant = reviewer_grant("alice", environment="prodution")

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "404" in grant.last_error and "prodution" in grant.last_error
    assert gh.environment("acme/api", "prodution") is None
    assert len([r for r in gh.requests if "/environments/" in r.path]) == 1  # not retried


def test_a_login_github_does_not_know_fails_its_grant(gh):
    gh.add_environment("acme/api", "production")
    grant = reviewer_grant("nobody-here")

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "no user named nobody-here" in grant.last_error
    assert gh.writes == []


def test_a_reviewer_written_just_before_a_crash_is_still_removed(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    grant = reviewer_grant("alice")

    # GitHub accepts the PUT, then the database refuses to record the grant as applied:
    # the outcome transaction fails as it would if the worker died right after the PUT.
    with refusing_to_apply_grants():
        with pytest.raises(DatabaseError, match="worker died after the PUT"):
            reconcile_environment(grant.target_id)
    assert gh.reviewers("acme/api", "production") == ["bob", "alice"]
    # The request is revoked before the grant was ever recorded as applied.
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    grant_revoke(grant=grant, user=admin)

    reconcile_environment(grant.target_id)

    assert gh.reviewers("acme/api", "production") == ["bob"]
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
