"""Secret grants: an environment secret written while a grant lasts, a repository added
to an organization secret while a grant lasts, and neither touching what was there first."""

import pytest

from audit.models import AuditEvent
from grants.models import EnvironmentSecret, Grant, OrgSecretTarget
from grants.reconciler import reconcile_environment, reconcile_org_secret
from grants.services import grant_reconcile
from requests_app.models import AccessRequest, SecretDefinition
from tests.grants.factories import (
    environment_secret,
    expire_now,
    organization_secret,
    secret_grant,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status


def test_an_environment_secret_is_written_sealed_while_granted_and_deleted_at_expiry(gh):
    gh.add_environment("acme/api", "production", reviewers=["bob"], wait_timer=3)
    secret = environment_secret("DEPLOY_TOKEN", value="tok-4f9a-very-secret")
    grant = secret_grant(secret)

    grant_reconcile(grant=grant)

    # The local GitHub opened the sealed box with the environment's private key.
    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == (
        "tok-4f9a-very-secret"
    )
    put = next(r for r in gh.requests if r.method == "PUT" and "/secrets/" in r.path)
    assert "tok-4f9a-very-secret" not in str(put.json)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == Status.ACTIVE

    reconcile_environment(expire_now(grant).target_id)

    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") is None
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    env = gh.environment("acme/api", "production")
    assert env["reviewers"] == [("User", "bob")] and env["wait_timer"] == 3
    actions = list(
        AuditEvent.objects.filter(action__startswith="github.").values_list("action", flat=True)
    )
    assert actions == ["github.environment_secret_written", "github.environment_secret_deleted"]


def test_the_secret_value_is_encrypted_at_rest_in_our_database():
    secret = environment_secret("DEPLOY_TOKEN", value="tok-4f9a-very-secret")

    stored = SecretDefinition.objects.filter(pk=secret.pk).values_list(
        "encrypted_value", flat=True
    ).get()

    assert b"tok-4f9a-very-secret" not in bytes(stored)
    assert SecretDefinition.objects.get(pk=secret.pk).get_value() == "tok-4f9a-very-secret"
    # Nothing the grant engine stores holds the value either.
    assert "tok-4f9a" not in str(list(EnvironmentSecret.objects.values()))


def test_overlapping_secret_grants_keep_the_secret_until_the_last_one_ends(gh):
    gh.add_environment("acme/api", "production")
    secret = environment_secret()
    first = secret_grant(secret, "alice")
    second = secret_grant(secret, "carol")
    grant_reconcile(grant=first)
    grant_reconcile(grant=second)
    secret_puts = [r for r in gh.requests if r.method == "PUT" and "/secrets/" in r.path]
    assert len(secret_puts) == 1  # the second grant found it already written

    reconcile_environment(expire_now(first).target_id)
    assert gh.environment_secret_value("acme/api", "production", secret.name) == "s3cret-value"

    reconcile_environment(expire_now(second).target_id)
    assert gh.environment_secret_value("acme/api", "production", secret.name) is None


def test_a_secret_that_was_there_before_airlock_is_neither_overwritten_nor_deleted(gh):
    gh.add_environment("acme/api", "production")
    gh.add_environment_secret("acme/api", "production", "DEPLOY_TOKEN", "theirs")
    grant = secret_grant(environment_secret("DEPLOY_TOKEN", value="ours"))

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "Airlock did not write" in grant.last_error
    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == "theirs"
    row = EnvironmentSecret.objects.get()
    assert row.baseline_present is True and row.airlock_wrote is False
    reconcile_environment(grant.target_id, check=True)
    assert gh.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == "theirs"


def test_an_organization_secret_gets_the_repository_while_granted(gh):
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN", repositories=["acme/web"])
    grant = secret_grant(organization_secret("NPM_PUBLISH_TOKEN", org="acme"))

    grant_reconcile(grant=grant)

    assert gh.org_secret_repositories("acme", "NPM_PUBLISH_TOKEN") == ["acme/api", "acme/web"]
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED

    reconcile_org_secret(expire_now(grant).org_secret_id)

    assert gh.org_secret_repositories("acme", "NPM_PUBLISH_TOKEN") == ["acme/web"]
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    target = OrgSecretTarget.objects.get()
    assert target.baseline_repository_ids == [gh.repo("acme/web").id]
    event = AuditEvent.objects.filter(action="github.org_secret_updated").last()
    assert event.detail["before"] == [gh.repo("acme/web").id, gh.repo("acme/api").id]
    assert event.detail["after"] == [gh.repo("acme/web").id]


def test_a_repository_already_on_the_organization_secret_stays_on_it(gh):
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN", repositories=["acme/api"])
    grant = secret_grant(organization_secret("NPM_PUBLISH_TOKEN", org="acme"))

    grant_reconcile(grant=grant)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED

    reconcile_org_secret(expire_now(grant).org_secret_id)

    assert gh.org_secret_repositories("acme", "NPM_PUBLISH_TOKEN") == ["acme/api"]
    assert not [r for r in gh.writes if "/actions/secrets/" in r.path]
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED


def test_overlapping_organization_secret_grants_keep_the_repository_until_the_last_ends(gh):
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN")
    secret = organization_secret("NPM_PUBLISH_TOKEN", org="acme")
    first, second = secret_grant(secret, "alice"), secret_grant(secret, "carol")
    grant_reconcile(grant=first)
    grant_reconcile(grant=second)

    reconcile_org_secret(expire_now(first).org_secret_id)
    assert gh.org_secret_repositories("acme", "NPM_PUBLISH_TOKEN") == ["acme/api"]

    reconcile_org_secret(expire_now(second).org_secret_id)
    assert gh.org_secret_repositories("acme", "NPM_PUBLISH_TOKEN") == []


def test_an_organization_secret_visible_to_all_repositories_cannot_be_granted(gh):
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN", visibility="all")
    grant = secret_grant(organization_secret("NPM_PUBLISH_TOKEN", org="acme"))

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert "selected repositories" in grant.last_error
    assert gh.writes == []
