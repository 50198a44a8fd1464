"""GitHub token secrets (`kind: github_token`): the environment secret holds a token the
local GitHub minted for the grant, restricted to the target's repository with the
definition's permissions; it is replaced before it expires (the old one revoked), left
alone while fresh, and deleted and revoked at the end. The tests count the calls to GitHub
for each step (docs/reconciler.md "GitHub token secrets")."""

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils import timezone

from audit.models import AuditEvent
from grants import reconciler, services
from grants.minted import minted_token_value
from grants.models import EnvironmentSecret, Grant, MintedToken
from grants.reconciler import reconcile_environment
from grants.services import grant_reconcile, grants_sweep
from requests_app.models import AccessRequest, SecretDefinition
from requests_app.services import access_request_create
from tests.fixtures import database_refuses
from tests.grants.factories import expire_now, register_token_app, secret_grant
from tests.requests_app.factories import SecretDefinitionFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db
PERMISSIONS = {"contents": "read", "packages": "write"}
SECRET_PATH = "/repos/acme/api/environments/production/secrets/GH_PACKAGES_TOKEN"
KEY_PATH = "/repos/acme/api/environments/production/secrets/public-key"
MINT_PATH = "/app/installations/{}/access_tokens"
REVOKE_PATH = "/installation/token"


@pytest.fixture
def app(gh, settings):
    gh.add_environment("acme/api", "production")
    gh.installation = register_token_app(gh, settings)
    return gh


def token_secret(name="GH_PACKAGES_TOKEN", permissions=None):
    return SecretDefinitionFactory(
        name=name,
        kind=SecretDefinition.Kind.GITHUB_TOKEN,
        permissions=permissions or PERMISSIONS,
        value=None,
    )


def calls(gh, since=0):
    """The calls GitHub received since `since`, in the tests' shorthand."""
    names = {
        SECRET_PATH: "secret",
        KEY_PATH: "public-key",
        MINT_PATH.format(gh.installation): "mint",
        REVOKE_PATH: "token",
    }
    return [f"{r.method} {names.get(r.path, r.path)}" for r in gh.requests[since:]]


def secret_value(gh):
    return gh.environment_secret_value("acme/api", "production", "GH_PACKAGES_TOKEN")


def current_record(value):
    return next(r for r in MintedToken.objects.all() if minted_token_value(r) == value)


def applied(gh, login="dave", secret=None):
    grant = secret_grant(secret or token_secret(), login)
    grant_reconcile(grant=grant)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    return grant


def near_expiry(value, minutes=5):
    """Move time on: the secret's token now expires in a few minutes."""
    record = current_record(value)
    MintedToken.objects.filter(pk=record.pk).update(
        expires_at=timezone.now() + timedelta(minutes=minutes)
    )
    return record


def test_the_secret_holds_a_token_minted_for_the_grant_restricted_to_the_repository(app):
    app.add_repo("acme/web")
    secret = token_secret()
    grant = secret_grant(secret, "dave")

    grant_reconcile(grant=grant)

    value = secret_value(app)
    token = app.installation_token(value)
    assert token is not None and not token.revoked
    assert app.token_repositories(token) == ["acme/api"]
    assert token.permissions == PERMISSIONS
    record = current_record(value)
    assert (record.grant_id, record.purpose) == (grant.pk, MintedToken.Purpose.SECRET)
    assert record.repository == "acme/api" and record.permissions == PERMISSIONS
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == "active"
    # Apply: is a secret of that name there already, the mint, the key, the write.
    assert calls(app) == ["GET secret", "POST mint", "GET public-key", "PUT secret"]
    written = AuditEvent.objects.get(action="github.environment_secret_written")
    assert written.detail["token"] == record.digest
    assert value not in json.dumps(list(AuditEvent.objects.values("detail", "reason")), default=str)
    # The secret row names the token written, never its value.
    assert EnvironmentSecret.objects.get().written_digest == record.digest


def test_a_reconcile_while_the_token_is_fresh_makes_no_call(app):
    applied(app)
    before = len(app.requests)

    reconcile_environment(Grant.objects.get().target_id)
    reconcile_environment(Grant.objects.get().target_id)

    assert calls(app, before) == []
    assert MintedToken.objects.count() == 1


def test_near_its_expiry_the_token_is_replaced_and_the_old_one_revoked(app):
    grant = applied(app)
    old_value = secret_value(app)
    old = near_expiry(old_value)
    before = len(app.requests)

    reconcile_environment(grant.target_id)

    # Refresh: the mint, the key, the write, then the old token's revocation.
    assert calls(app, before) == ["POST mint", "GET public-key", "PUT secret", "DELETE token"]
    new_value = secret_value(app)
    assert new_value != old_value
    new = app.installation_token(new_value)
    assert not new.revoked and app.token_repositories(new) == ["acme/api"]
    assert new.permissions == PERMISSIONS
    assert app.installation_token(old_value).revoked
    old.refresh_from_db()
    assert old.is_erased and old.revoked_at is not None
    assert current_record(new_value).grant_id == grant.pk
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED

    before = len(app.requests)
    reconcile_environment(grant.target_id)
    assert calls(app, before) == []  # the new one is fresh: nothing to do


def test_a_token_that_outlives_every_grant_of_its_secret_is_not_replaced(app):
    grant = applied(app)
    value = secret_value(app)
    near_expiry(value, minutes=5)
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(minutes=2))
    before = len(app.requests)

    reconcile_environment(grant.target_id)

    assert calls(app, before) == []  # the grant's end revokes it in two minutes


def test_at_the_end_the_secret_is_deleted_and_its_token_revoked(app):
    grant = applied(app)
    value = secret_value(app)
    record = current_record(value)
    before = len(app.requests)

    reconcile_environment(expire_now(grant).target_id)

    # End: the secret's deletion, then the token's revocation.
    assert calls(app, before) == ["DELETE secret", "DELETE token"]
    assert secret_value(app) is None
    assert app.installation_token(value).revoked
    record.refresh_from_db()
    assert record.is_erased and record.revoked_at is not None
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    revoked = AuditEvent.objects.get(action="grant.revoked")
    assert revoked.detail["tokens"] == {"revoked": 1, "expired": 0}


def test_when_the_grant_whose_token_it_holds_ends_the_next_grant_gets_its_own(app):
    secret = token_secret()
    first = applied(app, "dave", secret)
    second = applied(app, "erin", secret)
    first_value = secret_value(app)
    assert MintedToken.objects.count() == 1  # the second grant found it written and fresh

    reconcile_environment(expire_now(first).target_id)

    second_value = secret_value(app)
    assert second_value not in (None, first_value)
    assert current_record(second_value).grant_id == second.pk
    assert app.installation_token(first_value).revoked
    assert Grant.objects.get(pk=first.pk).state == Grant.State.REVOKED
    assert Grant.objects.get(pk=second.pk).state == Grant.State.APPLIED


def test_a_permission_the_app_does_not_hold_fails_the_grant_with_githubs_answer(app):
    grant = secret_grant(token_secret(permissions={"administration": "write"}), "dave")

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "not granted to this installation" in grant.last_error
    assert secret_value(app) is None
    assert MintedToken.objects.count() == 0


def test_a_write_github_never_confirmed_is_made_again_with_the_token_recorded_for_it(app):
    grant = secret_grant(token_secret(), "dave")
    app.faults.add("PUT", SECRET_PATH, status=502, times=None)

    grant_reconcile(grant=grant)

    assert secret_value(app) is None
    orphan = MintedToken.objects.get()  # recorded before the write: it will be revoked
    orphan_value = minted_token_value(orphan)
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.PENDING

    app.faults.clear()
    start = len(app.requests)
    grant_reconcile(grant=grant)

    # Still fresh: written again, not a second token minted.
    assert calls(app, start) == ["GET public-key", "PUT secret"]
    assert secret_value(app) == orphan_value
    assert not app.installation_token(orphan_value).revoked
    assert MintedToken.objects.get().digest == orphan.digest
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED


def test_an_unconfirmed_token_near_its_expiry_is_replaced_and_revoked(app):
    grant = secret_grant(token_secret(), "dave")
    app.faults.add("PUT", SECRET_PATH, status=502, times=None)
    grant_reconcile(grant=grant)
    orphan = MintedToken.objects.get()
    orphan_value = minted_token_value(orphan)
    MintedToken.objects.filter(pk=orphan.pk).update(
        expires_at=timezone.now() + timedelta(minutes=5)
    )

    app.faults.clear()
    grant_reconcile(grant=grant)

    value = secret_value(app)
    assert value and value != orphan_value
    assert app.installation_token(orphan_value).revoked
    assert MintedToken.objects.filter(erased_at__isnull=True).get().digest == (
        current_record(value).digest
    )
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED


def test_a_refresh_github_refuses_keeps_the_old_token_and_tries_again(app):
    grant = applied(app)
    old_value = secret_value(app)
    near_expiry(old_value)
    app.faults.add("POST", MINT_PATH.format(app.installation), status=502, times=None)

    reconcile_environment(grant.target_id)

    assert secret_value(app) == old_value
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED and "502" in grant.last_error

    app.faults.clear()
    reconcile_environment(grant.target_id)

    assert secret_value(app) != old_value
    assert app.installation_token(old_value).revoked
    assert Grant.objects.get(pk=grant.pk).last_error == ""


def test_in_dry_run_the_secret_holds_a_stand_in_and_nothing_is_called(github, settings):
    settings.AIRLOCK_DRY_RUN = True
    grant = secret_grant(token_secret(), "dave")

    grant_reconcile(grant=grant)
    record = MintedToken.objects.get()
    assert record.dry_run and record.grant_id == grant.pk
    reconcile_environment(expire_now(grant).target_id)

    record.refresh_from_db()
    assert record.is_erased
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED
    assert github.requests == []


# -- the sweep schedules the refresh -------------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch):
    sent = []
    monkeypatch.setattr(
        services,
        "schedule_reconcile",
        lambda model, pk, eta=None, check=False: sent.append((model.__name__, pk, eta)),
    )
    return sent


def test_the_sweep_asks_for_the_refresh_margin_before_the_expiry(app, settings, enqueued):
    settings.AIRLOCK_SWEEP_SECONDS = 15
    grant = applied(app)
    record = current_record(secret_value(app))
    expires_at = timezone.now() + reconciler.REFRESH_MARGIN + timedelta(seconds=10)
    MintedToken.objects.filter(pk=record.pk).update(expires_at=expires_at)

    grants_sweep()

    assert enqueued == [("Target", grant.target_id, expires_at - reconciler.REFRESH_MARGIN)]


def test_the_sweep_leaves_a_refresh_beyond_its_next_run_to_that_run(app, settings, enqueued):
    settings.AIRLOCK_SWEEP_SECONDS = 15
    applied(app)
    record = current_record(secret_value(app))
    MintedToken.objects.filter(pk=record.pk).update(
        expires_at=timezone.now() + reconciler.REFRESH_MARGIN + timedelta(seconds=40)
    )

    grants_sweep()

    assert enqueued == []


def test_a_refresh_that_is_due_is_asked_for_by_every_sweep_until_done(app, settings, enqueued):
    grant = applied(app)
    near_expiry(secret_value(app))

    grants_sweep()
    grants_sweep()

    assert enqueued == [("Target", grant.target_id, None)] * 2

    reconcile_environment(grant.target_id)  # the refresh
    enqueued.clear()
    grants_sweep()
    assert enqueued == []


def test_the_sweeps_reconcile_replaces_the_token_before_it_expires(app, eager_celery):
    grant = applied(app)
    old_value = secret_value(app)
    near_expiry(old_value)

    grants_sweep()

    assert secret_value(app) != old_value
    assert app.installation_token(old_value).revoked
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED


# -- filing a request for one -----------------------------------------------------------------


def test_a_github_token_secret_is_requested_without_any_stored_value():
    stored = SecretDefinitionFactory(
        name="DEPLOY_KEY", kind=SecretDefinition.Kind.ENVIRONMENT, value=None
    )
    minted = token_secret()
    approver_setup(secrets=[stored, minted])
    requester = UserFactory(username="dave")
    filing = {
        "requester": requester,
        "repository": "acme/api",
        "environment": "production",
        "access": "secret",
        "reason": "publish the release packages",
    }

    with pytest.raises(ValidationError, match="has no value yet"):
        access_request_create(**filing, secret_name="DEPLOY_KEY")
    access_request = access_request_create(**filing, secret_name="GH_PACKAGES_TOKEN")

    assert access_request.secret == minted
    assert not minted.has_value


def test_the_token_minted_for_a_grant_github_then_refused_is_revoked(app):
    grant = secret_grant(token_secret(), "dave")
    app.faults.add("PUT", SECRET_PATH, status=422, times=None)

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    record = MintedToken.objects.get()
    assert record.is_erased and record.revoked_at is not None
    assert [r.status for r in app.requests if r.path == REVOKE_PATH] == [204]


def refusing_to_confirm_secret_writes():
    """A trigger that makes the database refuse to record a secret's write as confirmed:
    the outcome is lost after GitHub took the PUT, as if the worker died right after it."""
    return database_refuses(
        EnvironmentSecret,
        on="UPDATE",
        when="NEW.written_at IS NOT NULL",
        reason="worker died after the PUT",
    )


# Committed transactions: the refused update is a statement of its own, as in a worker.
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_dies_after_writing_a_token_is_followed_by_the_same_token_written_again(
    app,
):
    grant = secret_grant(token_secret(), "dave")

    with refusing_to_confirm_secret_writes():
        with pytest.raises(DatabaseError, match="worker died after the PUT"):
            grant_reconcile(grant=grant)
    first_value = secret_value(app)
    assert first_value and not app.installation_token(first_value).revoked

    grant_reconcile(grant=grant)

    # The write nobody confirmed is made again with its own (still fresh) token.
    assert secret_value(app) == first_value
    assert not app.installation_token(first_value).revoked
    assert MintedToken.objects.filter(erased_at__isnull=True).count() == 1
    assert MintedToken.objects.count() == 1
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED

# What was approved: a GitHub token secret's grant mints with the permissions its request
# kept at filing; a later edit of the definition may narrow them, never widen them.


def test_editing_a_github_token_secret_after_approval_does_not_widen_the_grants_tokens(app):
    secret = token_secret(permissions={"contents": "read"})
    grant = secret_grant(secret, "dave")
    grant_reconcile(grant=grant)
    assert app.installation_token(secret_value(app)).permissions == {"contents": "read"}

    # An admin edits the definition while dave's approved grant is in force.
    SecretDefinition.objects.filter(pk=secret.pk).update(
        permissions={"contents": "write", "secrets": "write", "environments": "write"}
    )
    reconcile_environment(grant.target_id)

    held = app.installation_token(secret_value(app))
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED
    # What was approved was contents: read; nobody approved secrets/environments: write.
    assert held.permissions == {"contents": "read"}, held.permissions


def test_narrowing_a_github_token_secret_narrows_the_grants_next_token(app):
    secret = token_secret(permissions={"contents": "write", "packages": "write"})
    grant = secret_grant(secret, "dave")
    grant_reconcile(grant=grant)
    old_value = secret_value(app)

    # contents drops to read, packages is removed, secrets is added (never approved).
    SecretDefinition.objects.filter(pk=secret.pk).update(
        permissions={"contents": "read", "secrets": "write"}
    )
    reconcile_environment(grant.target_id)

    assert app.installation_token(secret_value(app)).permissions == {"contents": "read"}
    assert app.installation_token(old_value).revoked
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED


def test_a_definition_left_with_none_of_the_approved_permissions_mints_nothing(app):
    secret = token_secret(permissions={"contents": "read"})
    grant = secret_grant(secret, "dave")
    SecretDefinition.objects.filter(pk=secret.pk).update(permissions={"secrets": "write"})
    start = len(app.requests)

    grant_reconcile(grant=grant)

    assert "POST mint" not in calls(app, start)
    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "no longer include any of those its grant was approved for" in grant.last_error
    assert not grant.last_error.startswith("GitHub refused")


def test_a_secret_write_github_keeps_refusing_does_not_mint_a_live_token_every_pass(app):
    grant = secret_grant(token_secret(permissions={"contents": "read"}), "dave")
    grant_reconcile(grant=grant)
    # The token nears its expiry; GitHub's secrets API then answers 502 for a while.
    MintedToken.objects.update(expires_at=timezone.now() + timedelta(minutes=5))
    app.faults.add("PUT", SECRET_PATH, status=502, times=None)

    for _ in range(3):
        reconcile_environment(grant.target_id)

    live = [
        r
        for r in MintedToken.objects.filter(erased_at__isnull=True)
        if not app.installation_token(minted_token_value(r)).revoked
    ]
    # The one in the secret, plus at most one waiting for GitHub to take it.
    assert len(live) <= 2, f"{len(live)} live tokens after 3 passes"
    assert MintedToken.objects.count() == 2  # one mint for the three refused writes


def test_a_secret_deletion_github_refuses_does_not_keep_the_ended_grants_token_live(app):
    """At the end the pass deletes the secret, then revokes the token. The revocation
    needs nothing but the token (DELETE /installation/token), so a deletion GitHub does
    not answer must not keep the token a job may already hold valid."""
    grant = secret_grant(token_secret(permissions={"contents": "read"}), "dave")
    grant_reconcile(grant=grant)
    value = secret_value(app)
    app.faults.add("DELETE", SECRET_PATH, status=502, times=None)

    reconcile_environment(expire_now(grant).target_id)

    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED  # overdue, retried
    assert app.installation_token(value).revoked, "the ended grant's token is still valid"

    app.faults.clear()
    reconcile_environment(grant.target_id)
    assert secret_value(app) is None
    assert Grant.objects.get(pk=grant.pk).state == Grant.State.REVOKED


def refusing_to_record_tokens():
    return database_refuses(MintedToken, on="INSERT", reason="database went away")


def test_a_token_the_engine_minted_but_could_not_record_is_revoked_at_once(app):
    grant = secret_grant(token_secret(), "dave")

    with refusing_to_record_tokens():
        with pytest.raises(DatabaseError, match="database went away"):
            grant_reconcile(grant=grant)

    minted = app.state.installation_tokens
    assert len(minted) == 1
    assert MintedToken.objects.count() == 0
    assert minted[0].revoked, "a minted token no row records is live on GitHub"
    assert secret_value(app) is None  # never written


def test_an_extension_continuing_a_token_secrets_grant_keeps_the_secrets_token(app):
    from requests_app.services import access_request_extend
    from tests.requests_app.lifecycle import (
        approve,
        file_request,
        grant_now,
        move_expiry,
        policy_and_approvers,
    )

    secret = token_secret()
    _, users = policy_and_approvers(access_kinds=["secret"], secrets=[secret])
    original = grant_now(
        approve(file_request("dave", access="secret", secret_name=secret.name), users["alice"])
    )
    value = secret_value(app)
    extension = access_request_extend(
        original=original, requester=original.requester, reason="The release needs longer",
        duration_minutes=45,
    )
    extension = grant_now(approve(extension, users["bob"]))
    assert extension.continues_original is True
    start = len(app.requests)

    reconcile_environment(move_expiry(original).grant.target_id)

    # The secret keeps its token (now the extension's): nothing written, nothing revoked.
    assert calls(app, start) == []
    assert secret_value(app) == value and not app.installation_token(value).revoked
    assert current_record(value).grant_id == extension.grant.pk
    assert Grant.objects.get(access_request=original).state == Grant.State.REVOKED
