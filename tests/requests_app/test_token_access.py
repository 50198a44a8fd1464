"""Token access for people: asked for in the portal and the API like reviewer access (no
secret), the policy panel showing what a token may do, and the tokens minted for a grant
listed on the request pages and in the admin: when, which permissions, until when, and
whether revoked, expired or live; never a value."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from grants.minted import minted_token_erase, minted_token_record, token_digest
from grants.models import Grant, MintedToken
from integrations.github.tokens import InstallationToken
from requests_app.models import AccessPolicy, AccessRequest
from tests.fixtures import active_request, oidc_client, token_client
from tests.requests_app.factories import (
    AccessPolicyFactory,
    ApproverGroupFactory,
    SecretDefinitionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NEW = reverse("requests_app:new")
LIVE = "ghs_live0000000000000000000000000000000"
EXPIRED = "ghs_expired00000000000000000000000000000"
REVOKED = "ghs_revoked00000000000000000000000000000"


@pytest.fixture
def token_policy():
    return AccessPolicyFactory(
        name="publish",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions={"packages": "write", "contents": "read"},
        approver_groups=[ApproverGroupFactory(name="release", members=["alice"])],
        approvals_required=1,
    )


def form_data(**overrides):
    data = {
        "repository": "acme/api",
        "environment": "production",
        "access": "token",
        "secret": "",
        "reason": "Publishing the 2.4 packages by hand",
        "duration_minutes": "60",
        "starts_at": "",
    }
    data.update(overrides)
    return data


def test_the_policy_panel_shows_the_permissions_a_token_would_have(client, dev, token_policy):
    response = client.get(
        NEW, {"repository": "acme/api", "environment": "production", "access": "token"}
    )

    page = response.content.decode()
    assert "Policy <strong>publish</strong> covers token access" in page
    assert "<dt>Token permissions</dt><dd><code>contents: read, packages: write</code>" in page


def test_the_panel_of_a_policy_without_token_access_names_no_token_permissions(client, dev):
    AccessPolicyFactory(name="reviewers", access_kinds=["reviewer"])
    response = client.get(
        NEW, {"repository": "acme/api", "environment": "production", "access": "reviewer"}
    )
    assert "Policy <strong>reviewers</strong> covers" in response.content.decode()
    assert "Token permissions" not in response.content.decode()


def test_token_access_is_filed_in_the_portal_without_a_secret(client, dev, token_policy):
    response = client.post(NEW, form_data())

    access_request = AccessRequest.objects.get()
    assert response.status_code == 302
    assert (access_request.access, access_request.secret, access_request.policy) == (
        "token", None, token_policy
    )
    assert access_request.status == AccessRequest.Status.PENDING


def test_token_access_with_a_secret_is_refused_beside_the_field(client, dev, token_policy):
    SecretDefinitionFactory(name="DEPLOY_TOKEN")

    response = client.post(NEW, form_data(secret="DEPLOY_TOKEN"))

    assert response.status_code == 200
    assert response.context["form"].errors["secret"] == ["Only secret access takes a secret."]
    assert not AccessRequest.objects.exists()


def test_token_access_under_a_policy_without_it_is_refused(client, dev):
    AccessPolicyFactory(name="reviewers", access_kinds=["reviewer"])

    response = client.post(NEW, form_data())

    assert response.status_code == 200
    assert "No access policy covers token access" in " ".join(
        str(e) for errors in response.context["form"].errors.values() for e in errors
    )
    assert not AccessRequest.objects.exists()


def test_a_token_request_over_the_api_is_filed(token_policy):
    client = token_client(UserFactory(username="dave"))

    response = client.post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "token",
            "reason": "Publishing the 2.4 packages by hand",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["access"], body["secret"], body["policy"]) == ("token", None, "publish")


def test_the_check_answers_about_token_access(oidc, token_policy):
    active_request("dave", access="token", policy=token_policy)

    allowed = oidc_client(oidc(actor="dave")).get("/api/v1/grants/check", {"access": "token"})
    reviewer = oidc_client(oidc(actor="dave")).get(
        "/api/v1/grants/check", {"access": "reviewer"}
    )

    assert allowed.status_code == 200, allowed.json()
    assert allowed.json()["allowed"] is True
    assert allowed.json()["grant"]["access"] == "token"
    assert reviewer.json()["allowed"] is False


# --- the tokens minted for a grant -------------------------------------------------------------


def mint(grant, value, *, expires_in=timedelta(hours=1), permissions=None):
    return minted_token_record(
        grant=grant,
        purpose=MintedToken.Purpose.EXCHANGE,
        repository="acme/api",
        minted=InstallationToken(
            token=value,
            expires_at=timezone.now() + expires_in,
            permissions=permissions or {"packages": "write"},
            repositories=("acme/api",),
        ),
    )


@pytest.fixture
def minted(token_policy):
    """dave's token grant with a live, an expired and a revoked token."""
    access_request = active_request(
        "dave",
        access="token",
        policy=token_policy,
        token_permissions=dict(token_policy.token_permissions),  # as filing records them
    )
    grant = access_request.grant
    assert grant.kind == Grant.Kind.TOKEN
    mint(grant, LIVE, permissions={"contents": "read", "packages": "write"})
    expired = mint(grant, EXPIRED, expires_in=timedelta(minutes=-5))
    minted_token_erase(expired, revoked=False)
    minted_token_erase(mint(grant, REVOKED), revoked=True)
    return access_request


def assert_lists_the_tokens_without_values(page: str):
    assert "Tokens minted" in page
    assert token_digest(LIVE)[:12] in page
    assert token_digest(EXPIRED)[:12] in page
    assert token_digest(REVOKED)[:12] in page
    assert "<code>contents: read, packages: write</code>" in page
    assert '<span class="badge badge-active">live</span>' in page
    assert '<span class="badge badge-expired">expired</span>' in page
    assert '<span class="badge badge-revoked">revoked</span>' in page
    for value in (LIVE, EXPIRED, REVOKED):
        assert value not in page
        assert token_digest(value) not in page  # the first characters name it, no more


def test_the_request_page_lists_the_tokens_minted_for_its_grant(client, minted):
    client.force_login(minted.requester)

    page = client.get(reverse("requests_app:detail", args=[minted.pk])).content.decode()

    assert_lists_the_tokens_without_values(page)
    assert "Handed to a job (POST /api/v1/tokens), <code>acme/api</code>" in page


def test_a_token_grant_without_tokens_says_how_one_is_minted(client, token_policy):
    access_request = active_request("dave", access="token", policy=token_policy)
    client.force_login(access_request.requester)

    page = client.get(reverse("requests_app:detail", args=[access_request.pk])).content.decode()

    assert "None yet: a token is minted when a job of the environment asks" in page


def test_a_reviewer_grant_lists_no_tokens(client):
    access_request = active_request("dave")
    client.force_login(access_request.requester)
    page = client.get(reverse("requests_app:detail", args=[access_request.pk])).content.decode()
    assert "Tokens minted" not in page


def test_the_admins_request_page_lists_them_too(client, platform_admin, minted):
    change = reverse("admin:requests_app_accessrequest_change", args=[minted.pk])

    page = client.get(change).content.decode()

    assert_lists_the_tokens_without_values(page)


def test_the_minted_token_admin_is_read_only_and_shows_no_value(client, platform_admin, minted):
    changelist = reverse("admin:grants_mintedtoken_changelist")

    page = client.get(changelist).content.decode()

    assert token_digest(LIVE)[:12] in page
    assert "contents: read, packages: write" in page
    for value in (LIVE, EXPIRED, REVOKED):
        assert value not in page
        assert token_digest(value) not in page
    record = MintedToken.objects.get(digest=token_digest(LIVE))
    detail = client.get(reverse("admin:grants_mintedtoken_change", args=[record.pk]))
    assert detail.status_code == 200
    assert LIVE not in detail.content.decode()
    assert "encrypted_token" not in detail.content.decode()
    assert client.get(reverse("admin:grants_mintedtoken_add")).status_code == 403
    delete = reverse("admin:grants_mintedtoken_delete", args=[record.pk])
    assert client.post(delete).status_code == 403
    change = reverse("admin:grants_mintedtoken_change", args=[record.pk])
    client.post(change, {"repository": "x/y"})
    record.refresh_from_db()
    assert record.repository == "acme/api"


@pytest.mark.parametrize(
    "state, value", [("live", LIVE), ("expired", EXPIRED), ("revoked", REVOKED)]
)
def test_the_minted_token_admin_filters_by_state(client, platform_admin, minted, state, value):
    response = client.get(reverse("admin:grants_mintedtoken_changelist"), {"state": state})

    listed = list(response.context["cl"].result_list)
    assert [record.digest for record in listed] == [token_digest(value)]


def test_approvers_see_the_token_permissions_they_would_grant(client, platform_admin, minted):
    change = reverse("admin:requests_app_accessrequest_change", args=[minted.pk])

    page = client.get(change).content.decode()

    assert "Token permissions: contents: read, packages: write." in page


def test_the_request_page_shows_the_permissions_it_was_filed_with(client, dev, token_policy):
    client.post(NEW, form_data())
    access_request = AccessRequest.objects.get()
    AccessPolicy.objects.filter(pk=token_policy.pk).update(token_permissions={"contents": "read"})

    page = client.get(reverse("requests_app:detail", args=[access_request.pk])).content.decode()

    assert "<code>contents: read, packages: write</code>, in <code>acme/api</code> only" in page
    assert "a policy edit since does not change it" in page


def test_a_workflow_files_token_access_for_its_run(oidc, token_policy):
    AccessPolicy.objects.filter(pk=token_policy.pk).update(workflow_requests=True)
    UserFactory(username="dave")
    token = oidc(
        actor="dave",
        run_id="4242",
        run_attempt="1",
        sha="a1" * 20,
        ref="refs/heads/main",
        job_workflow_ref="acme/api/.github/workflows/publish.yml@refs/heads/main",
    )

    response = oidc_client(token).post(
        "/api/v1/requests/",
        {"access": "token", "reason": "Publishing the 2.4 packages", "duration_minutes": 30},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["access"], body["secret"], body["run"]["id"]) == ("token", None, 4242)


def _token_secret_policy(permissions):
    secret = SecretDefinitionFactory(
        name="GH_PACKAGES_TOKEN",
        kind="github_token",
        permissions=permissions,
        value=None,
    )
    return AccessPolicyFactory(
        name="packages",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["secret"],
        secrets=[secret],
        approver_groups=[ApproverGroupFactory(name="release", members=["alice"])],
        approvals_required=1,
    )


def test_a_github_token_secret_request_keeps_the_definitions_permissions_as_filed():
    from audit.models import AuditEvent
    from requests_app.models import SecretDefinition
    from requests_app.services import access_request_create

    _token_secret_policy({"packages": "write", "contents": "read"})

    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="secret",
        secret_name="GH_PACKAGES_TOKEN",
        reason="Publishing the 2.4 packages",
    )
    SecretDefinition.objects.update(permissions={"packages": "write", "secrets": "write"})

    access_request.refresh_from_db()
    assert access_request.token_permissions == {"packages": "write", "contents": "read"}
    created = AuditEvent.objects.get(action="request.created", target_id=str(access_request.pk))
    assert created.detail["token_permissions"] == {"packages": "write", "contents": "read"}


def test_a_github_token_secret_without_permissions_is_refused_at_filing():
    from django.core.exceptions import ValidationError

    from requests_app.services import access_request_create

    _token_secret_policy({})

    with pytest.raises(ValidationError) as refused:
        access_request_create(
            requester=UserFactory(username="dave"),
            repository="acme/api",
            environment="production",
            access="secret",
            secret_name="GH_PACKAGES_TOKEN",
            reason="Publishing the 2.4 packages",
        )
    assert "names no permissions yet" in str(refused.value.message_dict["secret"])
    assert not AccessRequest.objects.exists()
