"""Fixtures of the REST API tests: clients authenticated each way, Actions OIDC tokens from
the local GitHub's issuer, and requests whose grant is in force."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from grants.models import Grant
from grants.services import grant_create_for_request
from portal.celery import app as celery_app
from requests_app.models import AccessRequest
from requests_app.selectors import approver_identity
from requests_app.tokens import api_token_create
from tests.grants.conftest import gh  # noqa: F401  (the fixture, re-exported here)
from tests.requests_app.factories import AccessPolicyFactory, AccessRequestFactory, UserFactory


@pytest.fixture
def eager_celery():
    """Tasks run where they are sent, for tests about what happens after the commit."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def api():
    return APIClient()


def token_client(user) -> APIClient:
    _, raw = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def oidc(github, settings):
    """Mint Actions ID tokens the portal accepts: the local GitHub is the issuer, the
    audience is the portal's, and the job runs in acme/api's production environment."""
    settings.GITHUB_OIDC_ISSUER = github.oidc_issuer
    settings.AIRLOCK_OIDC_AUDIENCE = "https://airlock.test"
    settings.AIRLOCK_OIDC_JWKS_REFRESH_COOLDOWN_SECONDS = 0

    def mint(claims=None, kid=None, **overrides):
        defaults = {
            "aud": settings.AIRLOCK_OIDC_AUDIENCE,
            "repository": "acme/api",
            "environment": "production",
            "actor": "dave",
        }
        return github.mint_oidc_token({**defaults, **(claims or {})}, kid=kid, **overrides)

    mint.github = github
    return mint


def oidc_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def active_request(
    login="dave",
    *,
    repository="acme/api",
    environment="production",
    expires_in=timedelta(hours=1),
    approvers=(),
    **extra,
) -> AccessRequest:
    """A request whose grant is in force on GitHub, as the engine leaves it: active, with
    granted_at and expires_at, and its grant applied."""
    policy = extra.pop("policy", None) or AccessPolicyFactory(name="api-test-policy")
    access_request = AccessRequestFactory(
        requester=UserFactory(username=login),
        repository=repository,
        environment=environment,
        policy=policy,
        status=AccessRequest.Status.APPROVED,
        decided_at=timezone.now(),
        **extra,
    )
    for login in approvers:
        approver = UserFactory(username=login)
        access_request.approvals.create(
            approver=approver, approver_identity=approver_identity(approver)
        )
    grant = grant_create_for_request(access_request=access_request)
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=AccessRequest.Status.ACTIVE, granted_at=now, expires_at=now + expires_in
    )
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED, applied_at=now, expires_at=now + expires_in
    )
    access_request.refresh_from_db()
    return access_request
