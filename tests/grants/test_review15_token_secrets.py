"""Review of issue 15 (failing tests): GitHub token secrets.

A `token` request keeps the permissions its policy offered when it was filed ("what the
approvers approved is what the job gets, whatever the policy says later"), but a GitHub
token secret's grant mints with its SecretDefinition's permissions as they are *now*:
an edit to the definition after approval widens the tokens written for a grant already
in force, at the next refresh, without any approver. And while GitHub refuses the
secret's write, every pass mints another token and leaves the previous ones live."""

from datetime import timedelta

import pytest
from django.utils import timezone

from grants.minted import minted_token_value
from grants.models import Grant, MintedToken
from grants.reconciler import reconcile_environment
from grants.services import grant_reconcile
from requests_app.models import SecretDefinition
from tests.grants.factories import register_token_app, secret_grant
from tests.requests_app.factories import SecretDefinitionFactory

pytestmark = pytest.mark.django_db
SECRET_PATH = "/repos/acme/api/environments/production/secrets/GH_PACKAGES_TOKEN"


@pytest.fixture
def app(gh, settings):
    gh.add_environment("acme/api", "production")
    gh.installation = register_token_app(gh, settings)
    return gh


def secret_value(gh):
    return gh.environment_secret_value("acme/api", "production", "GH_PACKAGES_TOKEN")


def test_editing_a_github_token_secret_after_approval_does_not_widen_the_grants_tokens(app):
    secret = SecretDefinitionFactory(
        name="GH_PACKAGES_TOKEN",
        kind=SecretDefinition.Kind.GITHUB_TOKEN,
        permissions={"contents": "read"},
        value=None,
    )
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


def test_a_secret_write_github_keeps_refusing_does_not_mint_a_live_token_every_pass(app):
    secret = SecretDefinitionFactory(
        name="GH_PACKAGES_TOKEN",
        kind=SecretDefinition.Kind.GITHUB_TOKEN,
        permissions={"contents": "read"},
        value=None,
    )
    grant = secret_grant(secret, "dave")
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


def test_a_secret_deletion_github_refuses_does_not_keep_the_ended_grants_token_live(app):
    """At the end the pass deletes the secret, then revokes the token. The revocation
    needs nothing but the token (DELETE /installation/token), yet a deletion GitHub does
    not answer returns before it: the token a job may already hold stays valid."""
    from tests.grants.factories import expire_now

    secret = SecretDefinitionFactory(
        name="GH_PACKAGES_TOKEN",
        kind=SecretDefinition.Kind.GITHUB_TOKEN,
        permissions={"contents": "read"},
        value=None,
    )
    grant = secret_grant(secret, "dave")
    grant_reconcile(grant=grant)
    value = secret_value(app)
    app.faults.add("DELETE", SECRET_PATH, status=502, times=None)

    reconcile_environment(expire_now(grant).target_id)

    assert Grant.objects.get(pk=grant.pk).state == Grant.State.APPLIED  # overdue, retried
    assert app.installation_token(value).revoked, "the ended grant's token is still valid"
