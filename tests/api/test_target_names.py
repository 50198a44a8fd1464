"""Target names at the API: one canonical form decides which names are the same target, so
policy routing, the stored request, the grant's target and the check always agree.

The attack these tests replay: on PostgreSQL, UPPER('productıon') (dotless ı, U+0131) is
'PRODUCTION'. The policy matcher saw `productıon` as a different name from `production`
and routed it to a lax catch-all policy (no approvals), while the grant's target lookup and
the check compared with the database's case folding and landed on the real production
environment. Names outside GitHub's rules are now refused at every way in.
"""

import pytest
from django.db import connection

from grants.models import Grant, Target
from grants.services import target_for
from requests_app.models import AccessRequest
from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import (
    LOOKALIKE,
    AccessPolicyFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"
REASON = "Deploying the hotfix for INC-1234"


def file_request(client, **overrides):
    body = {
        "repository": "acme/api",
        "environment": "production",
        "access": "reviewer",
        "reason": REASON,
        "duration_minutes": 60,
        **overrides,
    }
    return client.post("/api/v1/requests/", body, format="json")


def replay_lookalike_attack(gh, oidc, capture_on_commit):
    """dave asks for `productıon` on acme/api, whose production environment Airlock has
    granted before (so its target exists); the answer, and what the check then says about
    production for him."""
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    target_for(repository="acme/api", environment="production", dry_run=False)
    dave = UserFactory(username="dave")
    with capture_on_commit(execute=True):
        response = file_request(token_client(dave), environment=LOOKALIKE)
    check = token_client(dave).get(CHECK, {"repository": "acme/api", "environment": "production"})
    workflow = oidc_client(oidc(actor="dave")).get(CHECK)
    return response, check.json(), workflow.json()


def assert_attack_fails(response, check, workflow, gh):
    assert response.status_code == 400, response.json()
    assert "environment" in response.json()["errors"]
    assert not AccessRequest.objects.filter(requester__username="dave").exists()
    assert not Grant.objects.filter(login="dave").exists()
    assert "dave" not in gh.reviewers("acme/api", "production")
    assert check["allowed"] is False
    assert workflow["allowed"] is False


def test_a_lookalike_environment_is_refused_and_grants_nothing(
    gh, oidc, strict_and_lax, eager_celery, django_capture_on_commit_callbacks
):
    response, check, workflow = replay_lookalike_attack(
        gh, oidc, django_capture_on_commit_callbacks
    )
    assert_attack_fails(response, check, workflow, gh)


def test_a_lookalike_environment_cannot_reach_production_on_postgres(
    on_postgres, gh, oidc, strict_and_lax, eager_celery, django_capture_on_commit_callbacks
):
    # The premise of the attack: PostgreSQL's case folding makes the two names one.
    with connection.cursor() as cursor:
        cursor.execute("SELECT UPPER(%s) = UPPER(%s)", [LOOKALIKE, "production"])
        assert cursor.fetchone()[0] is True
    response, check, workflow = replay_lookalike_attack(
        gh, oidc, django_capture_on_commit_callbacks
    )
    assert_attack_fails(response, check, workflow, gh)


REFUSED_REPOSITORIES = [
    "acme/..",
    "acme/.",
    "acme/api.git",
    "acme/" + "a" * 101,
    "a" * 40 + "/api",
    "-acme/api",
    "acme/ap i",
    "acme/api/extra",
    "acme/\u0430pi",  # Cyrillic а
    "\u212acme/api",  # Kelvin sign, which lower() turns into k
]
REFUSED_ENVIRONMENTS = [LOOKALIKE, "prod\tuction", "e" * 256, "\u212aube", "   "]


@pytest.mark.parametrize("repository", REFUSED_REPOSITORIES)
def test_a_repository_outside_githubs_rules_is_a_400_on_that_field(strict_and_lax, repository):
    response = file_request(token_client(UserFactory(username="dave")), repository=repository)
    assert response.status_code == 400, response.json()
    assert "repository" in response.json()["errors"]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("environment", REFUSED_ENVIRONMENTS)
def test_an_environment_outside_githubs_rules_is_a_400_on_that_field(strict_and_lax, environment):
    response = file_request(token_client(UserFactory(username="dave")), environment=environment)
    assert response.status_code == 400, response.json()
    assert "environment" in response.json()["errors"]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize(
    "query, field",
    [({"repository": name}, "repository") for name in REFUSED_REPOSITORIES]
    + [({"environment": name}, "environment") for name in REFUSED_ENVIRONMENTS],
)
def test_the_check_refuses_names_outside_githubs_rules_with_a_400(query, field):
    active_request("dave")
    target = {"repository": "acme/api", "environment": "production", **query}
    response = token_client(UserFactory(username="dave")).get(CHECK, target)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    "claims",
    [{"environment": LOOKALIKE}, {"repository": "acme/.."}, {"environment": "Production\u0131"}],
)
def test_a_workflow_whose_claims_are_outside_githubs_rules_is_refused(oidc, claims):
    active_request("dave")
    response = oidc_client(oidc(claims)).get(CHECK)
    assert response.status_code == 403, response.json()
    assert "allowed" not in response.json()


def test_case_variants_reach_the_same_target_and_the_same_policy(
    gh, strict_and_lax, eager_celery, django_capture_on_commit_callbacks
):
    strict, _ = strict_and_lax
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    dave = UserFactory(username="dave")
    response = file_request(token_client(dave), repository="ACME/Api", environment="Production")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["policy"], body["approvals_required"]) == (strict.name, 2)
    assert (body["repository"], body["environment"]) == ("acme/api", "production")
    # The same target, however it is spelled, for the duplicate check and the filters.
    again = file_request(token_client(dave), repository="acme/API", environment="PRODUCTION")
    assert again.status_code == 400
    assert "already have a pending request" in again.json()["message"]
    listed = token_client(dave).get(
        "/api/v1/requests/", {"repository": "Acme/API", "environment": "production"}
    )
    assert [r["id"] for r in listed.json()["results"]] == [body["id"]]


def test_a_grant_on_a_case_variant_lands_on_the_one_target_and_answers_the_check(
    gh, oidc, eager_celery, django_capture_on_commit_callbacks
):
    auto = AccessPolicyFactory(
        name="auto", repository_patterns=["acme/*"], environment_patterns=["production"],
        approvals_required=0,
    )
    gh.add_user("dave")
    gh.add_user("erin")
    gh.add_environment("acme/api", "production")
    dave, erin = UserFactory(username="dave"), UserFactory(username="erin")
    with django_capture_on_commit_callbacks(execute=True):
        assert file_request(token_client(erin)).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        response = file_request(token_client(dave), repository="Acme/API", environment="PRODUCTION")
    assert response.status_code == 201, response.json()
    assert response.json()["policy"] == auto.name
    assert Target.objects.count() == 1
    assert Grant.objects.get(login="dave").target == Target.objects.get()
    assert sorted(gh.reviewers("acme/api", "production")) == ["dave", "erin"]
    answer = token_client(dave).get(CHECK, {"repository": "ACME/API", "environment": "Production"})
    assert answer.json()["allowed"] is True
    workflow = oidc_client(oidc({"repository": "Acme/Api", "environment": "PRODUCTION"}))
    assert workflow.get(CHECK).json()["allowed"] is True
