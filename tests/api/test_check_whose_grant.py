"""Whose grant a workflow's check uses: the person who started this run attempt, bound to
the portal user by their GitHub numeric id where the portal knows it.

GitHub's tokens name the run's author in `actor` and `actor_id`. On a re-run, `actor` stays
the original author; the person who re-ran it is the attempt's `triggering_actor`. GitHub's
OIDC reference does not list `triggering_actor` among the token's claims: when an issuer's
token carries it, it decides; a first attempt's `actor` does; and for a re-run GitHub's REST
API is asked (the local GitHub's run attempts).
"""

import pytest
from allauth.socialaccount.models import SocialAccount

from audit.models import AuditEvent
from tests.api.conftest import active_request, oidc_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"


def signed_in_with_github(login: str, github_id: int):
    """The portal user a GitHub sign-in leaves: named after the login, the numeric id in
    allauth's SocialAccount (requests_app/signin.py)."""
    user = UserFactory(username=login)
    SocialAccount.objects.create(user=user, provider="github", uid=str(github_id))
    return user


# --- re-runs ----------------------------------------------------------------------------------


def test_a_rerun_by_someone_else_does_not_use_the_original_authors_grant(oidc):
    active_request("dave")
    token = oidc(actor="dave", triggering_actor="mallory", run_attempt="2")
    body = oidc_client(token).get(CHECK).json()
    assert body["allowed"] is False
    assert body["reason"] == "mallory holds no access to acme/api environment 'production' now."


def test_a_rerun_by_the_grant_holder_uses_their_grant(oidc):
    active_request("dave")
    token = oidc(actor="erin", triggering_actor="dave", run_attempt="3")
    body = oidc_client(token).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["user"] == "dave"


def test_without_triggering_actor_the_actor_decides(oidc):
    active_request("dave")
    assert oidc_client(oidc(actor="dave")).get(CHECK).json()["allowed"] is True
    assert oidc_client(oidc(actor="erin")).get(CHECK).json()["allowed"] is False


def test_a_rerun_can_ask_only_about_who_started_it(oidc):
    active_request("dave")
    token = oidc(actor="dave", triggering_actor="mallory", run_attempt="2")
    response = oidc_client(token).get(CHECK, {"user": "dave"})
    assert response.status_code == 403
    assert "started by mallory" in response.json()["message"]


def test_the_audit_names_who_started_the_attempt(oidc):
    active_request("dave")
    oidc_client(oidc(actor="erin", triggering_actor="dave", run_attempt="2")).get(CHECK)
    event = AuditEvent.objects.get(action="grant.checked")
    assert event.actor_label == "oidc:dave@acme/api"
    assert (event.detail["actor"], event.detail["triggering_actor"]) == ("erin", "dave")
    assert event.detail["run_attempt"] == "2"


# --- binding by GitHub id ---------------------------------------------------------------------


def test_a_login_the_portal_knows_under_another_github_id_is_refused(oidc):
    # dave renamed his GitHub account; someone else registered "dave" and runs a workflow.
    signed_in_with_github("dave", 5001)
    active_request("dave")
    body = oidc_client(oidc(actor="dave", actor_id="6002")).get(CHECK).json()
    assert body["allowed"] is False
    assert body["grant"] is None
    assert "GitHub account id 6002" in body["reason"]
    assert "not the one the portal knows as dave" in body["reason"]


def test_the_github_id_the_portal_knows_is_allowed(oidc, django_assert_num_queries):
    signed_in_with_github("dave", 5001)
    active_request("dave", approvers=["alice"])
    client = oidc_client(oidc(actor="dave", actor_id="5001"))
    assert client.get(CHECK).json()["allowed"] is True  # audited once, then the read path
    with django_assert_num_queries(1):
        body = client.get(CHECK).json()
    assert body["allowed"] is True
    assert [a["login"] for a in body["grant"]["approvers"]] == ["alice"]


def test_a_user_without_a_known_github_id_is_matched_by_login(oidc):
    active_request("dave")  # a local account: nothing to bind to
    assert oidc_client(oidc(actor="dave", actor_id="6002")).get(CHECK).json()["allowed"] is True


@pytest.mark.parametrize(
    "portal_id, login, github_id, serves",
    [
        (None, "dave", "6002", True),  # a local account: the login decides
        (5001, "dave", "5001", True),
        (5001, "DAVE", "5001", True),
        (5001, "dave", "6002", False),  # the login now belongs to someone else
        (5001, "dave-renamed", "5001", True),  # renamed: the id decides
        (None, "dave-renamed", "5001", False),
        (5001, "dave", None, True),  # no id given (a person's check, an old gate)
        (5001, "erin", None, False),
    ],
)
def test_the_check_and_the_gates_share_whose_requests_serve_a_github_person(
    portal_id, login, github_id, serves
):
    # The check states the rule in SQL (grants/check/query.py); the gates and the selectors
    # in the ORM (requests_app.selectors.requests_serving_github_person). They agree.
    from django.utils import timezone

    from grants.check.query import in_force_grants
    from grants.check.scope import CheckScope
    from requests_app.models import AccessRequest
    from requests_app.selectors import requests_serving_github_person

    if portal_id is not None:
        signed_in_with_github("dave", portal_id)
    held = active_request("dave")
    now = timezone.now()
    scope = CheckScope(
        repository="acme/api", environment="production", login=login, github_id=github_id
    )
    by_check = [
        c.request
        for c in in_force_grants(scope=scope, now=now)
        if not c.other_github_account
    ]
    by_orm = list(
        AccessRequest.objects.in_force(now)
        .filter(requests_serving_github_person(login=login, github_id=github_id))
        .values_list("pk", flat=True)
    )
    assert by_check == by_orm == ([held.pk] if serves else [])


def test_the_local_github_issues_the_actor_id_of_the_account(oidc):
    # As GitHub does: the id is the account's, so a test that forgets it is still bound.
    oidc.github.add_user("dave", id=5001)
    signed_in_with_github("dave", 5001)
    active_request("dave")
    assert oidc_client(oidc(actor="dave")).get(CHECK).json()["allowed"] is True


@pytest.mark.parametrize(
    "claims, words",
    [
        ({"actor_id": 5001}, "'actor_id' claim is not"),
        ({"actor_id": "dave"}, "'actor_id' claim is not"),
        ({"triggering_actor": 7}, "'triggering_actor' claim is not"),
    ],
)
def test_badly_typed_identity_claims_are_refused(oidc, claims, words):
    response = oidc_client(oidc(**claims)).get(CHECK)
    assert response.status_code == 401
    assert words in response.json()["message"]


# --- re-runs on GitHub, whose tokens carry no triggering_actor --------------------------------
# GitHub's OIDC tokens name only the run's author (actor, actor_id). For a re-run Airlock asks
# GitHub who triggered this attempt (GET .../actions/runs/{run_id}/attempts/{attempt_number}).

RUN = 4242


def attempt_calls(github) -> list:
    return [r for r in github.requests if "/attempts/" in r.path]


def test_a_rerun_by_someone_else_is_refused_though_the_actor_holds_a_grant(oidc, gh):
    gh.add_workflow_run("acme/api", run_id=RUN, actor="dave")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="mallory")
    active_request("dave")
    token = oidc(actor="dave", run_id=str(RUN), run_attempt="2")
    body = oidc_client(token).get(CHECK).json()
    assert body["allowed"] is False
    assert body["reason"] == "mallory holds no access to acme/api environment 'production' now."


def test_a_rerun_triggered_by_the_grant_holder_is_allowed(oidc, gh):
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    body = oidc_client(oidc(actor="erin", run_id=str(RUN), run_attempt="2")).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["user"] == "dave"
    event = AuditEvent.objects.get(action="grant.checked")
    assert event.actor_label == "oidc:dave@acme/api"
    assert (event.detail["actor"], event.detail["triggering_actor"]) == ("erin", "dave")


def test_a_rerun_is_bound_by_the_triggering_actors_github_id(oidc, gh):
    # The portal knows dave as GitHub account 5001; the account now called dave is another.
    signed_in_with_github("dave", 5001)
    gh.add_user("dave", id=7003)
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    body = oidc_client(oidc(actor="erin", run_id=str(RUN), run_attempt="2")).get(CHECK).json()
    assert body["allowed"] is False
    assert "GitHub account id 7003" in body["reason"]


def test_the_triggering_actors_known_github_id_is_allowed(oidc, gh):
    signed_in_with_github("dave", 5001)
    gh.add_user("dave", id=5001)
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    body = oidc_client(oidc(actor="erin", run_id=str(RUN), run_attempt="2")).get(CHECK).json()
    assert body["allowed"] is True


def test_checks_of_one_attempt_ask_github_once(oidc, gh):
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    client = oidc_client(oidc(actor="erin", run_id=str(RUN), run_attempt="2"))
    assert client.get(CHECK).json()["allowed"] is True
    assert client.get(CHECK).json()["allowed"] is True
    assert [r.path for r in attempt_calls(gh)] == [f"/repos/acme/api/actions/runs/{RUN}/attempts/2"]


def test_a_first_attempt_does_not_ask_github(oidc, gh):
    active_request("dave")
    assert oidc_client(oidc(actor="dave", run_id=str(RUN), run_attempt="1")).get(CHECK).json()[
        "allowed"
    ] is True
    assert attempt_calls(gh) == []


def test_when_github_is_down_a_rerun_is_refused_and_asked_again_next_time(oidc, gh):
    gh.add_workflow_run("acme/api", run_id=RUN, actor="dave")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    gh.faults.add("GET", "/repos/*/*/actions/runs/*/attempts/*", status=502, times=None)
    client = oidc_client(oidc(actor="dave", run_id=str(RUN), run_attempt="2"))
    response = client.get(CHECK)
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "Airlock cannot tell who started this re-run: "
    )
    assert "502" in response.json()["message"]
    gh.faults.clear()  # a transient failure is not remembered: the next check asks again
    assert client.get(CHECK).json()["allowed"] is True


def test_a_rerun_github_does_not_know_is_refused(oidc, gh):
    active_request("dave")
    response = oidc_client(oidc(actor="dave", run_id=str(RUN), run_attempt="2")).get(CHECK)
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "Airlock cannot tell who started this re-run: "
    )
    assert "Not Found" in response.json()["message"]
    assert "need the Actions read permission" in response.json()["message"]
    refused = AuditEvent.objects.get(action="grant.check_refused")
    assert refused.reason == response.json()["message"]


def test_in_dry_run_a_rerun_is_refused(oidc, settings):
    settings.AIRLOCK_DRY_RUN = True
    active_request("dave")
    response = oidc_client(oidc(actor="dave", run_id=str(RUN), run_attempt="2")).get(CHECK)
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "Airlock cannot tell who started this re-run: "
    )
    assert "dry-run" in response.json()["message"]


def test_a_transient_github_error_is_retried_before_a_rerun_is_answered(oidc, gh):
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    gh.faults.add("GET", "/repos/*/*/actions/runs/*/attempts/*", status=502, times=1)
    body = oidc_client(oidc(actor="erin", run_id=str(RUN), run_attempt="2")).get(CHECK).json()
    assert body["allowed"] is True
    assert [r.status for r in attempt_calls(gh)] == [502, 200]


def test_a_rerun_check_does_not_wait_out_a_long_rate_limit(oidc, gh, settings):
    # The engine may wait a minute for GitHub; a job waiting on its check may not.
    settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS = 60
    gh.add_workflow_run("acme/api", run_id=RUN, actor="dave")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    active_request("dave")
    gh.faults.secondary_rate_limit("GET", "/repos/**", retry_after=30, times=1)
    response = oidc_client(oidc(actor="dave", run_id=str(RUN), run_attempt="2")).get(CHECK)
    assert response.status_code == 403
    assert "try again shortly" in response.json()["message"]
    assert len(attempt_calls(gh)) == 1


def test_a_rerun_refused_for_its_claims_does_not_ask_github(oidc, gh):
    token = oidc(actor="dave", run_id=str(RUN), run_attempt="2", environment="")
    response = oidc_client(token).get(CHECK)
    assert response.status_code == 403
    assert "carries no environment claim" in response.json()["message"]
    assert attempt_calls(gh) == []
