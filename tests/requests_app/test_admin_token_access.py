"""The admin's policy and secret forms for token access: token permissions edited as
"contents: write, packages: read", read strictly and checked by the policy file's rules."""

import pytest
from django.urls import reverse

from requests_app.models import AccessPolicy, SecretDefinition
from requests_app.services import access_request_create
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    ApproverGroupFactory,
    SecretDefinitionFactory,
    UserFactory,
)
from tests.requests_app.test_admin import policy_form

pytestmark = pytest.mark.django_db

POLICY_ADD = reverse("admin:requests_app_accesspolicy_add")
SECRET_ADD = reverse("admin:requests_app_secretdefinition_add")


def form_errors(response) -> dict:
    assert response.status_code == 200
    return response.context["adminform"].form.errors


def test_a_token_policy_is_saved_with_its_permissions(client, platform_admin):
    response = client.post(
        POLICY_ADD,
        policy_form(access_kinds=["token"], token_permissions="contents: write, packages: read"),
    )

    assert response.status_code == 302, response.content.decode()
    policy = AccessPolicy.objects.get(name="staging")
    assert policy.access_kinds == ["token"]
    assert policy.token_permissions == {"contents": "write", "packages": "read"}
    page = client.get(reverse("admin:requests_app_accesspolicy_change", args=[policy.pk]))
    assert 'value="contents: write, packages: read"' in page.content.decode()


def test_permissions_may_be_given_one_a_line_or_as_json(client, platform_admin):
    lines = "contents: read\npages: write"
    client.post(POLICY_ADD, policy_form(access_kinds=["token"], token_permissions=lines))
    assert AccessPolicy.objects.get().token_permissions == {"contents": "read", "pages": "write"}
    policy = AccessPolicy.objects.get()
    change = reverse("admin:requests_app_accesspolicy_change", args=[policy.pk])

    as_json = '{"actions": "read"}'
    client.post(change, policy_form(access_kinds=["token"], token_permissions=as_json))

    policy.refresh_from_db()
    assert policy.token_permissions == {"actions": "read"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("payroll: write", "'payroll' is not a GitHub App repository permission"),
        ("workflows: read", "Workflows takes write, not 'read'."),
        ("contents write", "'contents write' is not “permission: level”"),
        ("contents: read, contents: write", "contents is given twice."),
        ("{not json", "Not a JSON object"),
        ('["contents"]', "'[\"contents\"]' is not “permission: level”"),
        ('{"contents": 1}', "Contents takes read or write, not 1."),
        ("[" * 50_000 + "]" * 50_000, "is not “permission: level”"),
        ("{" * 50_000, "Not a JSON object"),
    ],
)
def test_bad_permissions_are_a_form_error_naming_the_problem(
    client, platform_admin, text, message
):
    response = client.post(POLICY_ADD, policy_form(access_kinds=["token"], token_permissions=text))

    assert message in " ".join(form_errors(response)["token_permissions"])
    assert not AccessPolicy.objects.exists()


def test_token_access_needs_permissions_and_only_it_takes_them(client, platform_admin):
    response = client.post(POLICY_ADD, policy_form(access_kinds=["token"]))
    assert form_errors(response)["token_permissions"] == [
        "Token access needs the token's permissions, e.g. {contents: read}."
    ]

    response = client.post(
        POLICY_ADD, policy_form(access_kinds=["reviewer"], token_permissions="contents: read")
    )
    assert form_errors(response)["token_permissions"] == [
        "Token_permissions need 'token' in access."
    ]
    assert not AccessPolicy.objects.exists()


def test_the_policy_list_shows_token_permissions(client, platform_admin):
    AccessPolicyFactory(
        name="publish", access_kinds=["token"], token_permissions={"packages": "write"}
    )

    page = client.get(reverse("admin:requests_app_accesspolicy_changelist")).content.decode()

    assert "Token permissions" in page
    assert "packages: write" in page


def secret_form(**overrides):
    data = {"name": "PACKAGES_TOKEN", "kind": "github_token", "org": "", "new_value": ""}
    data.update(overrides)
    return data


def test_a_github_token_secret_is_saved_with_permissions_and_no_value(client, platform_admin):
    response = client.post(SECRET_ADD, secret_form(permissions="packages: write"))

    assert response.status_code == 302, response.content.decode()
    secret = SecretDefinition.objects.get()
    assert (secret.kind, secret.permissions, secret.has_value) == (
        "github_token", {"packages": "write"}, False
    )
    page = client.get(reverse("admin:requests_app_secretdefinition_changelist")).content.decode()
    assert "packages: write" in page
    assert "a token minted for each grant; none is stored here" in page


def test_a_github_token_secret_refuses_a_value_an_org_and_missing_permissions(
    client, platform_admin
):
    errors = form_errors(client.post(SECRET_ADD, secret_form(new_value="ghp_x", org="acme")))

    assert errors["new_value"] == [
        "A GitHub token secret's value is a token minted for each grant; it takes no value."
    ]
    assert errors["org"] == ["Only organization secrets take an organization."]
    assert errors["permissions"] == [
        "A github_token secret needs the token's permissions, e.g. {contents: read}."
    ]
    assert not SecretDefinition.objects.exists()


def test_only_a_github_token_secret_takes_permissions(client, platform_admin):
    errors = form_errors(
        client.post(SECRET_ADD, secret_form(kind="environment", permissions="contents: read"))
    )
    assert errors["permissions"] == ["Only a github_token secret has permissions."]


def test_a_secret_turned_into_a_github_token_secret_drops_its_stored_value(
    client, platform_admin
):
    secret = SecretDefinitionFactory(name="PACKAGES_TOKEN", value="long-lived")
    change = reverse("admin:requests_app_secretdefinition_change", args=[secret.pk])

    response = client.post(change, secret_form(permissions="packages: read"))

    assert response.status_code == 302, response.content.decode()
    secret.refresh_from_db()
    assert (secret.kind, secret.has_value, secret.value_updated_at) == (
        "github_token", False, None
    )


def test_refused_permissions_are_shown_back_as_typed(client, platform_admin):
    typed = '{"contents": 1}'
    response = client.post(POLICY_ADD, policy_form(access_kinds=["token"], token_permissions=typed))
    assert 'value="{&quot;contents&quot;: 1}"' in response.content.decode()


# --- what an approver is shown: the request's permissions, not the policy's of today ---------


@pytest.fixture
def narrowed_after_filing():
    """A token request filed for contents: write and secrets: write, whose policy is
    narrowed to contents: read while it waits for its approver (root)."""
    policy = AccessPolicyFactory(
        name="publish",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions={"contents": "write", "secrets": "write"},
        approver_groups=[ApproverGroupFactory(name="release", members=["root"])],
        approvals_required=1,
    )
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="token",
        reason="Publishing the 2.4 release by hand",
    )
    assert access_request.token_permissions == {"contents": "write", "secrets": "write"}
    AccessPolicy.objects.filter(pk=policy.pk).update(token_permissions={"contents": "read"})
    return access_request


def test_the_approver_sees_the_permissions_the_request_will_grant(
    client, platform_admin, narrowed_after_filing
):
    change = reverse("admin:requests_app_accessrequest_change", args=[narrowed_after_filing.pk])
    page = client.get(change).content.decode()

    # Approving grants contents: write and secrets: write; the page must say so.
    assert "secrets: write" in page, "the approver is shown only the policy's contents: read"
    assert "<code>contents: write, secrets: write</code>, in <code>acme/api</code> only" in page
    assert "Token permissions: contents: write, secrets: write." in page
    assert "The policy offers contents: read now" in page


def test_the_decision_page_shows_the_permissions_approving_grants(
    client, platform_admin, narrowed_after_filing
):
    approve = reverse("admin:requests_app_accessrequest_approve", args=[narrowed_after_filing.pk])
    page = client.get(approve).content.decode()

    assert "<code>contents: write, secrets: write</code>, in <code>acme/api</code> only" in page


def test_a_github_token_secret_request_shows_the_permissions_it_records(client, platform_admin):
    # Whatever the access kind: a request that records token permissions mints them.
    secret = SecretDefinitionFactory(
        name="GH_RELEASE_TOKEN", kind="github_token", permissions={"contents": "write"}
    )
    access_request = AccessRequestFactory(
        access="secret", secret=secret, token_permissions={"contents": "write"}
    )
    change = reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    page = client.get(change).content.decode()

    assert "<code>contents: write</code>, in <code>acme/api</code> only" in page
    assert "Token permissions: contents: write." in page
    assert "The policy offers" not in page  # a secret's permissions are its definition's


def test_a_reviewer_request_shows_no_token_permissions(client, platform_admin):
    AccessPolicyFactory(
        name="deploy",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        approver_groups=[ApproverGroupFactory(name="ops", members=["root"])],
    )
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix by hand",
    )
    change = reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])

    assert "Token permissions" not in client.get(change).content.decode()
