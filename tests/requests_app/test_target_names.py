"""Target names at the pages and in policies: the request form, its "Check policy" preview,
the policy file and the admin's policy form refuse what GitHub's rules refuse, and keep
patterns in the canonical form routing compares them in."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from requests_app.models import AccessPolicy, AccessRequest
from requests_app.policies import policy_for_target
from tests.requests_app.factories import (
    LOOKALIKE,
    ApproverGroupFactory,
)

pytestmark = pytest.mark.django_db

NEW = reverse("requests_app:new")


def form_data(**overrides):
    return {
        "repository": "acme/api",
        "environment": "production",
        "access": "reviewer",
        "secret": "",
        "reason": "Deploying the hotfix for INC-1234 to production",
        "duration_minutes": "60",
        "starts_at": "",
        **overrides,
    }


@pytest.mark.parametrize(
    "field, value",
    [
        ("environment", LOOKALIKE),
        ("repository", "acme/.."),
        ("repository", "acme/."),
        ("repository", "acme/" + "r" * 101),
        ("repository", "acme/re po"),
        ("environment", "prod\x7fuction"),
    ],
)
def test_the_request_form_refuses_names_outside_githubs_rules(
    client, dev, strict_and_lax, field, value
):
    response = client.post(NEW, form_data(**{field: value}))

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not AccessRequest.objects.exists()


def test_check_policy_refuses_a_lookalike_instead_of_showing_the_catch_all(
    client, dev, strict_and_lax
):
    response = client.get(
        NEW, {"repository": "acme/api", "environment": LOOKALIKE, "access": "reviewer"}
    )

    page = response.content.decode()
    assert "environment" in response.context["form"].errors
    assert "everything-else" not in page
    assert "No access policy covers" not in page
    # Only the target is judged: the fields not filled in yet are not flagged.
    assert "reason" not in response.context["form"].errors


def test_check_policy_routes_a_case_variant_to_the_same_policy(client, dev, strict_and_lax):
    response = client.post(
        NEW, form_data(repository="ACME/Api", environment="Production", preview="1")
    )

    assert "Policy <strong>production</strong> covers" in response.content.decode()


def test_a_case_variant_is_filed_on_the_canonical_target(client, dev, strict_and_lax):
    client.post(NEW, form_data(repository="ACME/Api", environment="PRODUCTION"))

    access_request = AccessRequest.objects.get()
    assert (access_request.repository, access_request.environment) == ("acme/api", "production")
    assert access_request.policy.name == "production"


POLICY = """\
policies:
  - name: lax
    repositories: [{repositories}]
    environments: [{environments}]
    access: [reviewer]
    approvals_required: 0
"""


@pytest.mark.parametrize(
    "repositories, environments, problem",
    [
        ('"acme/.."', "production", "policies[0].repositories[0]"),
        ('"acme/."', "production", "policies[0].repositories[0]"),
        ('"acme/' + "r" * 101 + '"', "production", "policies[0].repositories[0]"),
        ('"acme/re po"', "production", "policies[0].repositories[0]"),
        ('"api"', "production", "policies[0].repositories[0]"),
        ('"acme/*"', f'"{LOOKALIKE}"', "policies[0].environments[0]"),
        ('"acme/*"', '"' + "e" * 256 + '"', "policies[0].environments[0]"),
    ],
)
def test_the_policy_file_refuses_patterns_outside_githubs_rules(
    tmp_path, repositories, environments, problem
):
    path = tmp_path / "policies.yml"
    path.write_text(POLICY.format(repositories=repositories, environments=environments))

    with pytest.raises(CommandError) as refused:
        call_command("apply_policies", str(path), stdout=StringIO())

    assert problem in str(refused.value)
    assert not AccessPolicy.objects.exists()


def test_the_policy_file_keeps_patterns_lower_case_and_they_still_match(tmp_path):
    path = tmp_path / "policies.yml"
    path.write_text(POLICY.format(repositories='"ACME/Api-*"', environments='"Prod-*"'))

    call_command("apply_policies", str(path), stdout=StringIO())

    policy = AccessPolicy.objects.get()
    assert (policy.repository_patterns, policy.environment_patterns) == (["acme/api-*"], ["prod-*"])
    found = policy_for_target(repository="Acme/API-web", environment="PROD-eu", access="reviewer")
    assert found == policy


def policy_form(**overrides):
    # A policy needing approvals names who gives them (requests_app.rules).
    return {
        "approver_groups": [str(ApproverGroupFactory().pk)],
        "name": "staging",
        "description": "",
        "repository_patterns": "acme/*",
        "environment_patterns": "staging",
        "access_kinds": ["reviewer"],
        "max_duration": "04:00:00",
        "default_duration": "01:00:00",
        "approvals_required": "1",
        "reason_min_length": "10",
        "pending_ttl": "1 00:00:00",
        "break_glass_max_duration": "01:00:00",
        **overrides,
    }


@pytest.mark.parametrize(
    "field, value",
    [
        ("repository_patterns", "acme/.."),
        ("repository_patterns", "acme/*, acme/re po"),
        ("environment_patterns", LOOKALIKE),
    ],
)
def test_the_admin_policy_form_refuses_patterns_outside_githubs_rules(
    client, platform_admin, field, value
):
    response = client.post(
        reverse("admin:requests_app_accesspolicy_add"), policy_form(**{field: value})
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not AccessPolicy.objects.exists()


def test_the_admin_policy_form_keeps_patterns_lower_case(client, platform_admin):
    response = client.post(
        reverse("admin:requests_app_accesspolicy_add"),
        policy_form(
            repository_patterns="Acme/*, ACME-infra/Deploy", environment_patterns="Stage-*"
        ),
    )

    assert response.status_code == 302
    policy = AccessPolicy.objects.get()
    assert policy.repository_patterns == ["acme/*", "acme-infra/deploy"]
    assert policy.environment_patterns == ["stage-*"]
