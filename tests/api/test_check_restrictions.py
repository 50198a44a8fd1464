"""Workflow and ref restrictions: filed through the service, the web form and the API,
and enforced by the grant check from a workflow's OIDC claims (a person is told)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from requests_app.models import AccessRequest
from requests_app.services import access_request_create
from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import AccessPolicyFactory, UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"
DEPLOY = "acme/api/.github/workflows/deploy.yml@refs/heads/main"


# -- the check: a workflow must match -----------------------------------------------------------


def test_a_workflow_matching_the_restriction_is_allowed(oidc):
    active_request(
        "dave",
        workflow_ref_pattern="acme/api/.github/workflows/deploy.yml@*",
        ref_pattern="refs/heads/main",
    )
    body = oidc_client(oidc({"job_workflow_ref": DEPLOY})).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["workflow_ref_pattern"] == "acme/api/.github/workflows/deploy.yml@*"
    assert body["grant"]["ref_pattern"] == "refs/heads/main"
    assert "restricted to workflows matching" in body["reason"]


def test_another_workflow_is_refused_and_told_which_restriction(oidc):
    access_request = active_request(
        "dave", workflow_ref_pattern="acme/api/.github/workflows/deploy.yml@*"
    )
    other = "acme/api/.github/workflows/debug.yml@refs/heads/main"
    body = oidc_client(oidc({"job_workflow_ref": other})).get(CHECK).json()
    assert body["allowed"] is False
    assert body["grant"] is None
    assert f"request #{access_request.pk}" in body["reason"]
    assert "deploy.yml@*" in body["reason"] and "debug.yml" in body["reason"]
    refused = AuditEvent.objects.get(action="grant.check_refused")
    assert "not for this workflow" in refused.reason


def test_a_workflow_on_another_ref_is_refused(oidc):
    active_request("dave", ref_pattern="refs/heads/main")
    token = oidc({"ref": "refs/heads/feature", "job_workflow_ref": DEPLOY})
    body = oidc_client(token).get(CHECK).json()
    assert body["allowed"] is False
    assert "only refs matching 'refs/heads/main'" in body["reason"]
    assert "refs/heads/feature" in body["reason"]


def test_matching_is_case_sensitive_as_git_refs_are(oidc):
    active_request("dave", ref_pattern="refs/heads/main")
    assert oidc_client(oidc({"ref": "refs/heads/MAIN"})).get(CHECK).json()["allowed"] is False


def test_an_unrestricted_grant_in_force_beside_a_restricted_one_allows_the_workflow(oidc):
    restricted = active_request("dave", ref_pattern="refs/tags/v*", expires_in=timedelta(hours=3))
    unrestricted = active_request(
        "dave", expires_in=timedelta(hours=1), policy=restricted.policy
    )
    body = oidc_client(oidc({"ref": "refs/heads/main"})).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["request"] == unrestricted.pk  # the longer one does not qualify


def test_a_person_checking_a_restricted_grant_is_allowed_with_the_restriction_reported():
    access_request = active_request(
        "dave", workflow_ref_pattern="acme/api/.github/workflows/deploy.yml@*"
    )
    client = token_client(access_request.requester)
    body = client.get(CHECK, {"repository": "acme/api", "environment": "production"}).json()
    assert body["allowed"] is True
    assert body["grant"]["workflow_ref_pattern"] == "acme/api/.github/workflows/deploy.yml@*"
    assert (
        "restricted to workflows matching 'acme/api/.github/workflows/deploy.yml@*'"
        in body["reason"]
    )


def test_the_restricted_check_still_takes_at_most_two_queries(
    oidc, django_assert_max_num_queries
):
    active_request("dave", ref_pattern="refs/tags/*", expires_in=timedelta(hours=2))
    active_request("dave", ref_pattern="refs/heads/*", policy=AccessPolicyFactory(name="p2"))
    client = oidc_client(oidc())
    client.get(CHECK)
    with django_assert_max_num_queries(2):
        assert client.get(CHECK).json()["allowed"] is True


# -- filing restrictions ---------------------------------------------------------------------


def _create(**extra):
    AccessPolicyFactory(name="restrictions", approvals_required=1)
    return access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        **extra,
    )


def test_restrictions_are_stored_trimmed_and_audited():
    access_request = _create(
        workflow_ref_pattern="  acme/api/.github/workflows/deploy.yml@*  ",
        ref_pattern="refs/heads/main ",
    )
    access_request.refresh_from_db()
    assert access_request.workflow_ref_pattern == "acme/api/.github/workflows/deploy.yml@*"
    assert access_request.ref_pattern == "refs/heads/main"
    created = AuditEvent.objects.get(action="request.created")
    assert created.detail["ref_pattern"] == "refs/heads/main"


def test_an_unrestricted_request_audits_no_restriction_keys():
    _create()
    created = AuditEvent.objects.get(action="request.created")
    assert "workflow_ref_pattern" not in created.detail


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("workflow_ref_pattern", "deploy.yml", "whole job_workflow_ref"),
        ("workflow_ref_pattern", "acme/api/x.yml@refs/heads/\nmain", "control characters"),
        ("workflow_ref_pattern", "a" * 501, "At most 500"),
        ("workflow_ref_pattern", "acme/api/[x.yml@*", "unbalanced"),
        ("ref_pattern", "main", "refs/heads/main"),
        ("ref_pattern", "refs/heads/\tmain", "control characters"),
        ("ref_pattern", "refs/" + "a" * 260, "At most 255"),
    ],
)
def test_a_pattern_that_could_never_match_is_refused_with_a_reason(field, value, words):
    with pytest.raises(ValidationError) as refused:
        _create(**{field: value})
    assert words in " ".join(refused.value.message_dict[field])
    assert not AccessRequest.objects.exists()


def test_globs_starting_a_ref_pattern_are_accepted():
    assert _create(ref_pattern="*/main").ref_pattern == "*/main"


def test_the_api_files_and_returns_restrictions():
    AccessPolicyFactory(name="restrictions")
    client = token_client(UserFactory(username="dave"))
    response = client.post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234",
            "workflow_ref_pattern": "acme/api/.github/workflows/deploy.yml@*",
            "ref_pattern": "refs/heads/main",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["workflow_ref_pattern"] == "acme/api/.github/workflows/deploy.yml@*"
    assert body["ref_pattern"] == "refs/heads/main"


def test_the_api_refuses_a_bad_pattern_with_the_field_named():
    AccessPolicyFactory(name="restrictions")
    client = token_client(UserFactory(username="dave"))
    response = client.post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234",
            "ref_pattern": "main",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "ref_pattern" in response.json()["errors"]


def test_the_web_form_files_restrictions_and_the_detail_page_shows_them(client):
    AccessPolicyFactory(name="restrictions")
    client.force_login(UserFactory(username="dave"))
    response = client.post(
        reverse("requests_app:new"),
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234",
            "workflow_ref_pattern": "acme/api/.github/workflows/deploy.yml@*",
            "ref_pattern": "refs/heads/main",
        },
        follow=True,
    )
    assert response.status_code == 200
    access_request = AccessRequest.objects.get()
    assert access_request.ref_pattern == "refs/heads/main"
    page = response.content.decode()
    assert "Restricted to" in page
    assert "<code>acme/api/.github/workflows/deploy.yml@*</code>" in page


def test_the_web_form_shows_a_bad_pattern_next_to_its_field(client):
    AccessPolicyFactory(name="restrictions")
    client.force_login(UserFactory(username="dave"))
    response = client.post(
        reverse("requests_app:new"),
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234",
            "ref_pattern": "main",
        },
    )
    assert response.status_code == 200
    assert not AccessRequest.objects.exists()
    form = response.context["form"]
    assert "refs/heads/main" in " ".join(form.errors["ref_pattern"])
    assert 'value="main"' in response.content.decode()  # nothing typed is lost
