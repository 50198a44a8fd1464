"""Test data for the grant engine: approved requests, and their grants."""

from datetime import timedelta

from django.utils import timezone

from grants.services import grant_create_for_request
from requests_app.models import AccessRequest, SecretDefinition
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    SecretDefinitionFactory,
    UserFactory,
)


def approved_request(login="alice", *, repository="acme/api", environment="production", **extra):
    """An approved request, as the request services leave it (made directly in the
    database: the approval rules are tested in tests/requests_app)."""
    policy = extra.pop("policy", None) or AccessPolicyFactory(name="grants-test-policy")
    return AccessRequestFactory(
        requester=UserFactory(username=login),
        repository=repository,
        environment=environment,
        policy=policy,
        status=AccessRequest.Status.APPROVED,
        decided_at=timezone.now(),
        **extra,
    )


def reviewer_grant(login="alice", **extra):
    return grant_create_for_request(access_request=approved_request(login, **extra))


def environment_secret(name="DEPLOY_TOKEN", value="s3cret-value"):
    return SecretDefinitionFactory(name=name, kind=SecretDefinition.Kind.ENVIRONMENT, value=value)


def organization_secret(name="NPM_PUBLISH_TOKEN", org="acme"):
    return SecretDefinitionFactory(
        name=name, kind=SecretDefinition.Kind.ORGANIZATION, org=org, value=None
    )


def secret_grant(secret, login="alice", **extra):
    if secret.kind == secret.Kind.GITHUB_TOKEN:
        # As filing leaves it: the request keeps the permissions its definition had then.
        extra.setdefault("token_permissions", dict(secret.permissions))
    access_request = approved_request(login, access="secret", secret=secret, **extra)
    return grant_create_for_request(access_request=access_request)


def expire_now(grant):
    """Move an applied grant's end (and its request's) to a moment ago, as time would."""
    past = timezone.now() - timedelta(milliseconds=10)
    grant.__class__.objects.filter(pk=grant.pk).update(expires_at=past)
    AccessRequest.objects.filter(pk=grant.access_request_id).update(expires_at=past)
    grant.refresh_from_db()
    return grant


def token_grant(login="alice", **extra):
    """The grant of an approved `token` request (under a policy offering token access)."""
    policy = extra.pop("policy", None) or AccessPolicyFactory(
        name="grants-token-policy",
        access_kinds=["token"],
        token_permissions={"contents": "read", "packages": "write"},
    )
    # As filing leaves it: the request keeps the permissions its policy offered then.
    extra.setdefault("token_permissions", dict(policy.token_permissions))
    access_request = approved_request(login, access="token", policy=policy, **extra)
    return grant_create_for_request(access_request=access_request)


# The permissions Airlock's GitHub App holds on the local GitHub in the minted-token tests.
TOKEN_APP_PERMISSIONS = {
    "contents": "write",
    "packages": "write",
    "environments": "write",
    "secrets": "write",
    "metadata": "read",
}


def register_token_app(github, settings, *, permissions=None) -> int:
    """Airlock's GitHub App on the local GitHub, installed on acme, its credentials in the
    settings: what minting tokens needs. The engine's other calls keep GITHUB_TOKEN."""
    from tests.github_fake.keys import new_app_private_key_pem

    key = new_app_private_key_pem()
    installation = github.register_app(
        4242, key, account="acme", permissions=permissions or TOKEN_APP_PERMISSIONS
    )
    settings.GITHUB_APP_ID = "4242"
    settings.GITHUB_APP_PRIVATE_KEY = key
    settings.GITHUB_APP_INSTALLATION_ID = str(installation)
    return installation


def exchange_mint(grant, permissions=None):
    """Mint a token for a token grant and keep it, as the exchange (POST /api/v1/tokens)
    does: restricted to the grant's repository."""
    from grants.minted import minted_token_record
    from grants.models import MintedToken
    from integrations.github.tokens import AppTokenClient

    repository = grant.target.repository
    minted = AppTokenClient().installation_token_mint(
        repository=repository, permissions=permissions or {"contents": "read"}
    )
    return minted_token_record(
        grant=grant,
        purpose=MintedToken.Purpose.EXCHANGE,
        repository=repository,
        minted=minted,
    )
