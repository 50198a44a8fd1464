"""Token grants in the engine: applied with nothing written to GitHub, and every token
minted for one revoked on the local GitHub when it ends (expiry, giving back, an admin's
revocation, the run's end), before the grant is recorded as revoked; an expired token is
erased without a call; GitHub's failures and a worker's crash leave it to the retry."""

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from audit.models import AuditEvent
from grants.minted import minted_token_record, minted_token_value
from grants.models import Grant, MintedToken, Target
from grants.reconciler import reconcile_environment
from grants.services import RunEnd, grant_reconcile, grant_revoke, grants_sweep, run_access_end
from integrations.github.tokens import InstallationToken
from requests_app.models import AccessRequest
from tests.fixtures import database_refuses
from tests.grants.factories import (
    exchange_mint,
    expire_now,
    register_token_app,
    token_grant,
)
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
REVOKE_PATH = "/installation/token"
MINT_PATH = "/app/installations/{}/access_tokens"


@pytest.fixture
def app(gh, settings):
    gh.add_environment("acme/api", "production")
    gh.installation = register_token_app(gh, settings)
    return gh


def applied_token_grant(login="dave", **extra):
    grant = token_grant(login, **extra)
    grant_reconcile(grant=grant)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    return grant


def revocations(gh):
    """The DELETE /installation/token calls: (the token that called, GitHub's status)."""
    return [
        (r.headers.get("authorization", "").split(" ", 1)[-1], r.status)
        for r in gh.requests
        if r.method == "DELETE" and r.path == REVOKE_PATH
    ]


def read_values(records):
    return [minted_token_value(MintedToken.objects.get(pk=r.pk)) for r in records]


def assert_all_revoked(gh, values, records):
    for value in values:
        assert gh.installation_token(value).revoked
    for record in records:
        record.refresh_from_db()
        assert record.is_erased and record.revoked_at is not None
        assert bytes(record.encrypted_token) == b""


# -- applied with no GitHub write -------------------------------------------------------------


def test_a_token_grant_is_applied_with_no_call_to_github(app):
    grant = token_grant("dave")

    result = grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED and grant.expires_at is not None
    access_request = AccessRequest.objects.get(pk=grant.access_request_id)
    assert access_request.status == Status.ACTIVE
    assert access_request.expires_at == grant.expires_at
    assert result.applied == [grant.pk]
    assert app.requests == []  # nothing to write: the job mints on demand
    applied = AuditEvent.objects.get(action="grant.applied")
    assert "minted on demand" in applied.detail["github"]


def test_the_tokens_minted_for_a_grant_are_restricted_to_its_repository(app):
    app.add_repo("acme/web")
    grant = applied_token_grant()

    record = exchange_mint(grant, {"contents": "read", "packages": "write"})

    token = app.installation_token(minted_token_value(record))
    assert app.token_repositories(token) == ["acme/api"]
    assert token.permissions == {"contents": "read", "packages": "write"}
    assert record.permissions == {"contents": "read", "packages": "write"}


# -- every way a grant ends revokes its tokens -----------------------------------------------


def test_at_expiry_every_token_of_the_grant_is_revoked_on_github_then_the_grant(app):
    grant = applied_token_grant()
    records = [exchange_mint(grant), exchange_mint(grant, {"packages": "write"})]
    values = read_values(records)
    calls_before = len(app.requests)

    result = reconcile_environment(expire_now(grant).target_id)

    assert_all_revoked(app, values, records)
    assert revocations(app) == [(values[0], 204), (values[1], 204)]
    assert len(app.requests) - calls_before == 2  # one DELETE per token, nothing else
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED and grant.end_reason == "expired"
    assert result.revoked == [grant.pk]
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == Status.EXPIRED
    revoked = AuditEvent.objects.filter(action="token.revoked").order_by("pk")
    assert [e.detail["minted_token"] for e in revoked] == [r.pk for r in records]
    assert AuditEvent.objects.get(action="grant.revoked").detail["tokens"] == {
        "revoked": 2,
        "expired": 0,
    }
    # The grant's revocation comes after its tokens'.
    order = list(
        AuditEvent.objects.filter(action__in=["token.revoked", "grant.revoked"])
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert order == ["token.revoked", "token.revoked", "grant.revoked"]


def test_giving_access_back_revokes_the_tokens_after_the_commit(
    app, eager_celery, django_capture_on_commit_callbacks
):
    grant = applied_token_grant("dave")
    records = [exchange_mint(grant)]
    values = read_values(records)
    requester = grant.access_request.requester

    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, user=requester, comment="done")

    assert_all_revoked(app, values, records)
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED and grant.end_reason == "revoked"


def test_an_admins_revocation_revokes_the_tokens(app):
    grant = applied_token_grant("dave")
    records = [exchange_mint(grant), exchange_mint(grant)]
    values = read_values(records)
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)

    grant_revoke(grant=grant, user=admin, comment="incident")
    reconcile_environment(grant.target_id)

    assert_all_revoked(app, values, records)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def test_the_runs_end_revokes_the_tokens_of_its_grant(
    app, eager_celery, django_capture_on_commit_callbacks
):
    grant = applied_token_grant(
        "dave",
        run_id=9100,
        run_attempt=1,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main",
        run_sha="0" * 40,
    )
    records = [exchange_mint(grant)]
    values = read_values(records)

    with django_capture_on_commit_callbacks(execute=True):
        report = run_access_end(repository="acme/api", run_id=9100, cause=RunEnd.COMPLETED)

    assert [r.pk for r in report.ended] == [grant.access_request_id]
    assert_all_revoked(app, values, records)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def test_a_token_past_its_expiry_is_erased_without_a_call(app):
    grant = applied_token_grant()
    expired, live = exchange_mint(grant), exchange_mint(grant)
    live_value = minted_token_value(live)
    MintedToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    reconcile_environment(expire_now(grant).target_id)

    assert revocations(app) == [(live_value, 204)]  # the expired one is not called
    expired.refresh_from_db()
    assert expired.is_erased and expired.revoked_at is None
    assert AuditEvent.objects.filter(action="token.expired").count() == 1
    assert AuditEvent.objects.get(action="grant.revoked").detail["tokens"] == {
        "revoked": 1,
        "expired": 1,
    }


def test_the_sweep_erases_tokens_that_expired_while_the_grant_lasts(app, monkeypatch):
    from grants import services

    monkeypatch.setattr(services, "schedule_reconcile", lambda *a, **k: None)
    grant = applied_token_grant()
    record = exchange_mint(grant)
    MintedToken.objects.filter(pk=record.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    report = grants_sweep()

    record.refresh_from_db()
    assert report.tokens_expired == 1
    assert record.is_erased and record.revoked_at is None
    assert revocations(app) == []
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED


def test_a_grant_without_tokens_ends_with_no_call(app):
    grant = applied_token_grant()

    reconcile_environment(expire_now(grant).target_id)

    assert app.requests == []
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def test_in_dry_run_nothing_is_called_and_the_token_is_erased(github, settings):
    settings.AIRLOCK_DRY_RUN = True
    grant = token_grant("dave")
    grant_reconcile(grant=grant)
    record = minted_token_record(
        grant=grant,
        purpose=MintedToken.Purpose.EXCHANGE,
        repository="acme/api",
        dry_run=True,
        minted=InstallationToken(
            token="dry-run-simulated",
            expires_at=timezone.now() + timedelta(hours=1),
            permissions={"contents": "read"},
            repositories=("acme/api",),
        ),
    )

    reconcile_environment(expire_now(grant).target_id)

    record.refresh_from_db()
    assert record.is_erased and record.revoked_at is not None
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED
    assert github.requests == []


# -- GitHub failing -----------------------------------------------------------------------------


def test_a_revocation_github_does_not_answer_leaves_the_grant_applied_and_overdue(
    app, eager_celery
):
    grant = applied_token_grant()
    records = [exchange_mint(grant), exchange_mint(grant)]
    values = read_values(records)
    expire_now(grant)
    app.faults.add("DELETE", REVOKE_PATH, status=502, times=None)

    reconcile_environment(grant.target_id)
    reconcile_environment(grant.target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert "502" in grant.last_error
    assert grant.revocation_overdue_since == grant.expires_at
    assert AuditEvent.objects.filter(action="grant.revocation_overdue").count() == 1
    assert MintedToken.objects.filter(grant=grant, erased_at__isnull=True).count() == 2
    assert not any(app.installation_token(v).revoked for v in values)

    app.faults.clear()
    grants_sweep()  # the sweep finds the revocation due and retries it

    assert_all_revoked(app, values, records)
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED and grant.revocation_overdue_since is None
    assert AuditEvent.objects.get(action="grant.revoked").detail["overdue_since"] is not None


def test_the_sweep_marks_a_token_grant_overdue_one_interval_after_it_was_due(
    app, settings, eager_celery
):
    settings.AIRLOCK_SWEEP_SECONDS = 15
    grant = applied_token_grant()
    records = [exchange_mint(grant)]
    values = read_values(records)
    due = timezone.now() - timedelta(seconds=20)
    Grant.objects.filter(pk=grant.pk).update(expires_at=due)
    app.faults.add("DELETE", REVOKE_PATH, status=502, times=None)

    first = grants_sweep()
    second = grants_sweep()

    grant.refresh_from_db()
    assert (first.newly_overdue, second.newly_overdue) == (1, 0)
    assert grant.state == Grant.State.APPLIED and grant.revocation_overdue_since == due
    assert AuditEvent.objects.filter(action="grant.revocation_overdue").count() == 1

    app.faults.clear()
    grants_sweep()

    assert_all_revoked(app, values, records)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


# -- a worker that crashes ----------------------------------------------------------------------


def refusing_to_erase_tokens():
    """A trigger that makes the database refuse any token's erasure: the worker's outcome
    is lost after GitHub revoked the token, as if it died right after the DELETE."""
    return database_refuses(
        MintedToken,
        on="UPDATE",
        when="NEW.erased_at IS NOT NULL",
        reason="worker died after the DELETE",
    )


def test_a_worker_that_dies_after_github_revoked_is_followed_by_a_revocation_github_no_longer_needs(
    app,
):
    grant = applied_token_grant()
    records = [exchange_mint(grant)]
    values = read_values(records)
    expire_now(grant)

    with refusing_to_erase_tokens():
        with pytest.raises(DatabaseError, match="worker died after the DELETE"):
            reconcile_environment(grant.target_id)
    assert app.installation_token(values[0]).revoked  # GitHub did it
    assert not MintedToken.objects.get(pk=records[0].pk).is_erased  # we never recorded it
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED

    reconcile_environment(grant.target_id)

    # GitHub no longer knows the token (401): that counts as done.
    assert revocations(app) == [(values[0], 204), (values[0], 401)]
    assert_all_revoked(app, values, records)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def test_a_worker_that_dies_before_revoking_is_caught_by_the_sweep(app, eager_celery):
    grant = applied_token_grant()
    records = [exchange_mint(grant), exchange_mint(grant)]
    values = read_values(records)
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    # The revocation is recorded, but its message is lost (no commit hook runs here), and
    # the worker that had taken the environment died holding its lease, now run out.
    grant_revoke(grant=grant, user=admin)
    Target.objects.filter(pk=grant.target_id).update(
        lease_owner="dead-worker", lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert revocations(app) == []

    report = grants_sweep()

    assert report.reconciles == [f"Target {grant.target_id}"]
    assert_all_revoked(app, values, records)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def test_a_token_recorded_as_its_grant_ended_is_revoked_by_the_sweep(app, eager_celery):
    grant = applied_token_grant()
    reconcile_environment(expire_now(grant).target_id)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED
    # The exchange checked the grant in force, then GitHub answered its mint only after
    # the pass that ended the grant had listed the grant's tokens.
    records = [exchange_mint(Grant.objects.get(pk=grant.pk))]
    values = read_values(records)

    report = grants_sweep()

    assert report.reconciles == [f"Target {grant.target_id}"]
    assert_all_revoked(app, values, records)


def _continuing_extension(gh, *, token_permissions=None, extension_permissions=None):
    """dave's token grant with a token minted under it, and an extension approved while it
    is in force (so it continues without a gap); the policy's permissions may change in
    between (extension_permissions)."""
    from requests_app.services import access_request_extend
    from tests.requests_app.lifecycle import approve, file_request, grant_now, policy_and_approvers

    gh.add_user("dave")
    policy, users = policy_and_approvers(
        access_kinds=["token"], token_permissions=token_permissions or {"contents": "read"}
    )
    original = grant_now(approve(file_request("dave", access="token"), users["alice"]))
    record = exchange_mint(Grant.objects.get(access_request=original))
    if extension_permissions is not None:
        type(policy).objects.filter(pk=policy.pk).update(token_permissions=extension_permissions)
    extension = access_request_extend(
        original=original, requester=original.requester, reason="The release needs longer",
        duration_minutes=45,
    )
    extension = grant_now(approve(extension, users["bob"]))
    assert extension.continues_original is True
    return original, extension, record


def test_an_extension_continuing_a_token_grant_keeps_the_job_s_token(app):
    from tests.requests_app.lifecycle import move_expiry

    original, extension, record = _continuing_extension(app)
    value = minted_token_value(record)

    reconcile_environment(move_expiry(original).grant.target_id)

    assert app.installation_token(value) is not None
    assert not app.installation_token(value).revoked, (
        "access continues without a break, but the job's token was revoked"
    )
    ended = Grant.objects.get(access_request=original)
    assert ended.state == Grant.State.REVOKED
    carried = AuditEvent.objects.get(action="token.carried_over")
    assert carried.target_id == str(extension.grant.pk)
    assert carried.detail["from_grant"] == ended.pk
    assert carried.detail["token"] == record.digest
    revoked = AuditEvent.objects.filter(action="grant.revoked", target_id=str(ended.pk)).get()
    assert revoked.detail["tokens"]["carried_over"] == 1

    # It now belongs to the extension, whose end revokes it.
    assert MintedToken.objects.get(pk=record.pk).grant_id == extension.grant.pk
    reconcile_environment(expire_now(extension.grant).target_id)
    assert app.installation_token(value).revoked


def test_an_extension_approved_for_less_does_not_carry_a_wider_token(app):
    from tests.requests_app.lifecycle import move_expiry

    original, extension, record = _continuing_extension(
        app,
        token_permissions={"contents": "write"},
        extension_permissions={"contents": "read"},
    )
    MintedToken.objects.filter(pk=record.pk).update(permissions={"contents": "write"})
    value = minted_token_value(record)

    reconcile_environment(move_expiry(original).grant.target_id)

    assert app.installation_token(value).revoked
    assert not AuditEvent.objects.filter(action="token.carried_over").exists()


def test_revoking_the_original_early_revokes_its_tokens_even_with_an_extension(app):
    original, extension, record = _continuing_extension(app)
    value = minted_token_value(record)

    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    grant_revoke(grant=Grant.objects.get(access_request=original), user=admin, comment="incident")
    reconcile_environment(extension.grant.target_id)

    assert app.installation_token(value).revoked
