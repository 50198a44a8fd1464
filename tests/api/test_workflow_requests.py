"""POST /api/v1/requests/ with a workflow's OIDC token: a job files a request for its own
run (PRODUCT.md "Requests from workflows"), and reads it back with GET by its run.

The target comes from the token's verified claims, the requester is the portal user of who
started the run attempt (matched by GitHub id first), and the request is bound to the run.
Every rule of a person's filing still holds."""

import threading
from datetime import timedelta

import pytest
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from requests_app.models import AccessRequest
from requests_app.policy_file import PolicyFileError, parse_policy_file
from requests_app.services import policy_file_apply
from tests.api.conftest import oidc_client, token_client
from tests.requests_app.factories import (
    SecretDefinitionFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db

REQUESTS = "/api/v1/requests/"
REASON = "Deploying the hotfix for INC-1234"
RUN = 4242
SHA = "a1b2c3d4" * 5
WORKFLOW_REF = "acme/api/.github/workflows/deploy.yml@refs/heads/main"


def signed_in_with_github(login: str, github_id: int):
    """The portal user a GitHub sign-in leaves (requests_app/signin.py)."""
    user = UserFactory(username=login)
    SocialAccount.objects.create(user=user, provider="github", uid=str(github_id))
    return user


@pytest.fixture
def policy():
    """acme/* production, two of alice, bob and carol approve; workflows may file."""
    policy, _, _ = approver_setup(workflow_requests=True, name="deploys")
    return policy


@pytest.fixture
def dave():
    return signed_in_with_github("dave", 5001)


def run_token(oidc, run_id=RUN, **claims):
    """A token of a job in run `run_id` (attempt 1) started by dave (GitHub id 5001)."""
    return oidc(
        **{
            "run_id": str(run_id),
            "run_attempt": "1",
            "actor": "dave",
            "actor_id": "5001",
            "sha": SHA,
            "ref": "refs/heads/main",
            "job_workflow_ref": WORKFLOW_REF,
            **claims,
        }
    )


def file_for_run(token, **body):
    return oidc_client(token).post(
        REQUESTS,
        {"access": "reviewer", "reason": REASON, "duration_minutes": 30, **body},
        format="json",
    )


def approve(request_id, *logins):
    for login in logins:
        user = UserFactory(username=login)
        response = token_client(user).post(f"{REQUESTS}{request_id}/approve", {}, format="json")
        assert response.status_code == 200, response.json()


def make_active(request_id):
    """The engine applied the grant: active, with its times (as tests/fixtures.active_request)."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=request_id).update(
        status=AccessRequest.Status.ACTIVE, granted_at=now, expires_at=now + timedelta(hours=1)
    )


# --- filing -----------------------------------------------------------------------------------


def test_a_workflow_files_a_request_bound_to_its_run(oidc, policy, dave):
    response = file_for_run(run_token(oidc))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["repository"], body["environment"], body["access"]) == (
        "acme/api", "production", "reviewer"
    )
    assert body["requester"] == "dave"
    assert body["status"] == "pending"
    assert body["approvals_required"] == 2
    assert body["duration_minutes"] == 30
    assert body["run"] == {
        "id": RUN,
        "attempt": 1,
        "workflow_ref": WORKFLOW_REF,
        "ref": "refs/heads/main",
        "sha": SHA,
        "url": f"{settings.GITHUB_URL}/acme/api/actions/runs/{RUN}",
    }
    stored = AccessRequest.objects.get(pk=body["id"])
    assert stored.requester == dave and stored.policy == policy
    assert (stored.run_id, stored.run_attempt, stored.run_sha) == (RUN, 1, SHA)


def test_a_persons_request_has_no_run(policy):
    response = token_client(UserFactory(username="erin")).post(
        REQUESTS,
        {"repository": "acme/api", "environment": "production", "access": "reviewer",
         "reason": REASON},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["run"] is None


def test_the_duration_defaults_to_the_policys(oidc, policy, dave):
    response = oidc_client(run_token(oidc)).post(
        REQUESTS, {"access": "reviewer", "reason": REASON}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["duration_minutes"] == 60


def test_the_audit_records_the_run_and_the_job_that_filed(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    event = AuditEvent.objects.get(action="request.created", target_id=str(request_id))
    assert event.actor_label == "dave"
    assert event.detail["filed_by"] == "oidc:dave@acme/api"
    assert event.detail["run"]["id"] == RUN
    assert event.detail["run"]["sha"] == SHA
    assert event.detail["run"]["url"].endswith(f"/acme/api/actions/runs/{RUN}")


# --- the policy setting ------------------------------------------------------------------------

POLICY_FILE = """\
approver_groups:
  - name: approvers
    members: [alice, bob]
policies:
  - name: deploys
    repositories: [acme/*]
    environments: [production]
    access: [reviewer]
    approvals_required: 1
    approver_groups: [approvers]
{extra}"""


def test_the_policy_file_turns_workflow_requests_on_and_off(oidc, dave):
    policy_file_apply(document=parse_policy_file(POLICY_FILE.format(extra=""), environ={}))
    assert file_for_run(run_token(oidc)).status_code == 403  # off unless the file says so
    on = POLICY_FILE.format(extra="    workflow_requests: true\n")
    policy_file_apply(document=parse_policy_file(on, environ={}))
    assert file_for_run(run_token(oidc)).status_code == 201


def test_the_policy_file_refuses_a_workflow_requests_that_is_not_a_boolean():
    with pytest.raises(PolicyFileError) as refused:
        parse_policy_file(POLICY_FILE.format(extra="    workflow_requests: maybe\n"), environ={})
    assert "policies[0].workflow_requests" in "\n".join(refused.value.problems)
    assert "must be true or false" in "\n".join(refused.value.problems)


# --- who the requester is ---------------------------------------------------------------------


def test_the_requester_is_matched_by_github_id_after_a_rename(oidc, policy, dave):
    response = file_for_run(run_token(oidc, actor="dave-renamed", actor_id="5001"))
    assert response.status_code == 201, response.json()
    assert response.json()["requester"] == "dave"


def test_a_local_account_is_matched_by_login(oidc, policy):
    UserFactory(username="dave")  # never signed in with GitHub: nothing to bind to
    response = file_for_run(run_token(oidc, actor="Dave", actor_id="6002"))
    assert response.status_code == 201, response.json()
    assert response.json()["requester"] == "dave"


def test_a_login_the_portal_knows_under_another_github_id_is_refused(oidc, policy, dave):
    # dave renamed his GitHub account; someone else registered "dave" and runs a workflow.
    response = file_for_run(run_token(oidc, actor="dave", actor_id="6002"))
    assert response.status_code == 403
    message = response.json()["message"]
    assert "The Airlock account dave signed in with another GitHub account" in message
    assert "ask a platform admin" in message
    assert "6002" in message
    assert not AccessRequest.objects.exists()


def test_a_github_id_of_a_deactivated_account_does_not_fall_back_to_a_login(oidc, policy, dave):
    # GitHub id 5001 is dave's; his account is off. A local account named like the new
    # login is someone else, and must not become the requester.
    dave.is_active = False
    dave.save()
    UserFactory(username="dave-renamed")
    response = file_for_run(run_token(oidc, actor="dave-renamed", actor_id="5001"))
    assert response.status_code == 403
    assert "deactivated" in response.json()["message"]
    assert not AccessRequest.objects.exists()


def test_an_actor_without_an_airlock_account_is_told_how_to_get_one(oidc, policy):
    response = file_for_run(run_token(oidc, actor="frank", actor_id="8008"))
    assert response.status_code == 403
    message = response.json()["message"]
    assert "frank has no Airlock account" in message
    assert f"{settings.AIRLOCK_BASE_URL}/accounts/login/" in message
    assert "signs in to Airlock once" in message
    assert not AccessRequest.objects.exists()


def test_an_inactive_account_is_no_requester(oidc, policy):
    UserFactory(username="frank", is_active=False)
    response = file_for_run(run_token(oidc, actor="frank", actor_id="8008"))
    assert response.status_code == 403
    message = response.json()["message"]
    assert "The Airlock account frank is deactivated" in message
    assert "ask a platform admin" in message
    assert not AccessRequest.objects.exists()


def test_a_deactivated_account_matched_by_login_is_not_told_to_sign_in(oidc):
    # dave's portal account (made by an admin, never signed in with GitHub) is deactivated:
    # signing in cannot reactivate it, so the refusal does not advise it.
    approver_setup(workflow_requests=True, name="deploys")
    UserFactory(username="dave", is_active=False)
    response = file_for_run(run_token(oidc))
    assert response.status_code == 403
    message = response.json()["message"]
    assert "no Airlock account" not in message, message
    assert "signs in" not in message, message


def test_a_rerun_files_as_the_person_who_started_it(oidc, policy, dave):
    signed_in_with_github("erin", 7001)
    token = run_token(
        oidc,
        actor="erin",
        actor_id="7001",
        triggering_actor="dave",
        triggering_actor_id="5001",
        run_attempt="2",
    )
    response = file_for_run(token)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["requester"] == "dave"
    assert body["run"]["attempt"] == 2
    event = AuditEvent.objects.get(action="request.created")
    assert event.detail["filed_by"] == "oidc:dave@acme/api"


def test_a_rerun_by_someone_without_an_account_is_refused_though_the_actor_has_one(
    oidc, policy, dave
):
    token = run_token(oidc, triggering_actor="mallory", triggering_actor_id="9009", run_attempt="2")
    response = file_for_run(token)
    assert response.status_code == 403
    assert "mallory has no Airlock account" in response.json()["message"]


def test_a_rerun_whose_token_names_only_the_author_asks_github_who_started_it(
    oidc, gh, policy, dave
):
    signed_in_with_github("erin", 7001)
    gh.add_user("erin", id=7001)
    gh.add_user("dave", id=5001)
    gh.add_workflow_run("acme/api", run_id=RUN, actor="erin")
    gh.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    response = file_for_run(run_token(oidc, actor="erin", actor_id="7001", run_attempt="2"))
    assert response.status_code == 201, response.json()
    assert response.json()["requester"] == "dave"


# --- what a workflow may not file -------------------------------------------------------------


def test_a_policy_without_workflow_requests_refuses_with_its_name_and_the_setting(oidc, dave):
    approver_setup(name="people-only")
    response = file_for_run(run_token(oidc))
    assert response.status_code == 403
    message = response.json()["message"]
    assert "Policy 'people-only'" in message
    assert "workflow_requests" in message
    assert not AccessRequest.objects.exists()


def test_without_a_policy_the_answer_is_400_as_for_people(oidc, policy, dave):
    response = file_for_run(run_token(oidc, environment="staging"))
    assert response.status_code == 400
    assert "No access policy covers reviewer access to acme/api environment 'staging'" in (
        response.json()["message"]
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ({"repository": "acme/other"}, "cannot file a request for acme/other"),
        ({"environment": "staging"}, "cannot file a request for 'staging'"),
    ],
)
def test_the_body_cannot_widen_the_claims(oidc, policy, dave, body, words):
    response = file_for_run(run_token(oidc), **body)
    assert response.status_code == 403
    assert words in response.json()["message"]
    assert not AccessRequest.objects.exists()


def test_the_body_may_repeat_the_claims_in_any_case(oidc, policy, dave):
    response = file_for_run(run_token(oidc), repository="ACME/Api", environment="Production")
    assert response.status_code == 201, response.json()
    assert (response.json()["repository"], response.json()["environment"]) == (
        "acme/api", "production"
    )


def test_a_token_in_another_case_files_for_the_canonical_target(oidc, policy, dave):
    response = file_for_run(run_token(oidc, repository="ACME/api", environment="Production"))
    assert response.status_code == 201, response.json()
    assert (response.json()["repository"], response.json()["environment"]) == (
        "acme/api", "production"
    )
    assert response.json()["run"]["url"].endswith(f"/acme/api/actions/runs/{RUN}")


def test_a_job_outside_any_environment_is_refused(oidc, policy, dave):
    response = file_for_run(run_token(oidc, environment=""), environment="production")
    assert response.status_code == 403
    assert "no environment claim" in response.json()["message"]


@pytest.mark.parametrize(
    "claims",
    [
        {"run_id": ""},
        {"run_id": "abc"},
        {"run_id": "0"},
        {"run_id": str(2**63)},  # no bigint holds it
        {"run_attempt": "", "triggering_actor": "dave"},
        {"run_attempt": str(2**31), "triggering_actor": "dave"},
    ],
)
def test_a_token_without_a_run_is_refused(oidc, policy, dave, claims):
    response = file_for_run(run_token(oidc, **claims))
    assert response.status_code == 403
    assert "names no workflow run (run_id, run_attempt)" in response.json()["message"]


def test_the_largest_run_id_is_kept(oidc, policy, dave):
    response = file_for_run(run_token(oidc, run_id=str(2**63 - 1)))
    assert response.status_code == 201, response.json()
    assert response.json()["run"]["id"] == 2**63 - 1


@pytest.mark.parametrize(
    "claim, length, limit",
    [("sha", 65, 64), ("ref", 256, 255), ("job_workflow_ref", 501, 500)],
)
def test_a_claim_longer_than_a_request_keeps_is_refused(oidc, policy, dave, claim, length, limit):
    response = file_for_run(run_token(oidc, **{claim: "r" * length}))
    assert response.status_code == 403
    assert f"{claim} claim of {length} characters" in response.json()["message"]
    assert f"at most {limit}" in response.json()["message"]
    assert not AccessRequest.objects.exists()


def test_a_person_cannot_pass_a_run_in_the_body(policy):
    erin = UserFactory(username="erin")
    response = token_client(erin).post(
        REQUESTS,
        {"repository": "acme/api", "environment": "production", "access": "reviewer",
         "reason": REASON, "run_id": RUN, "run": {"id": RUN}},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["run"] is None
    assert AccessRequest.objects.get().run_id is None


# --- one request per run and target -----------------------------------------------------------


def test_the_same_run_asking_again_gets_the_open_request(oidc, policy, dave):
    first = file_for_run(run_token(oidc))
    again = file_for_run(run_token(oidc), reason="Another reason, long enough", duration_minutes=5)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["reason"] == REASON  # the open request, unchanged
    assert AccessRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="request.created").count() == 1


def test_the_same_run_gets_its_request_once_approved_and_once_active(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice", "bob")
    again = file_for_run(run_token(oidc))
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (request_id, "approved")
    make_active(request_id)
    again = file_for_run(run_token(oidc))
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (request_id, "active")


def test_another_run_files_its_own_request(oidc, policy, dave):
    first = file_for_run(run_token(oidc))
    other = file_for_run(run_token(oidc, run_id=RUN + 1))
    assert (first.status_code, other.status_code) == (201, 201)
    assert other.json()["id"] != first.json()["id"]
    assert other.json()["run"]["id"] == RUN + 1


def test_a_rerun_by_someone_else_files_their_own_request(oidc, policy, dave):
    first = file_for_run(run_token(oidc))
    signed_in_with_github("erin", 7001)
    token = run_token(oidc, run_attempt="2", triggering_actor="erin", triggering_actor_id="7001")
    rerun = file_for_run(token)
    assert (first.status_code, rerun.status_code) == (201, 201)
    assert (rerun.json()["requester"], rerun.json()["run"]["attempt"]) == ("erin", 2)
    assert rerun.json()["id"] != first.json()["id"]


def test_a_rerun_by_the_same_person_gets_the_open_request(oidc, policy, dave):
    first = file_for_run(run_token(oidc))
    token = run_token(oidc, run_attempt="2", triggering_actor="dave", triggering_actor_id="5001")
    rerun = file_for_run(token)
    assert rerun.status_code == 200
    assert rerun.json()["id"] == first.json()["id"]
    assert rerun.json()["run"]["attempt"] == 2  # the request now follows the re-run


def test_another_target_of_the_same_run_is_another_request(oidc, dave):
    secret = SecretDefinitionFactory(name="DEPLOY_TOKEN")
    approver_setup(workflow_requests=True, secrets=[secret])
    reviewer = file_for_run(run_token(oidc))
    secret_access = file_for_run(run_token(oidc), access="secret", secret="DEPLOY_TOKEN")
    assert (reviewer.status_code, secret_access.status_code) == (201, 201)
    assert secret_access.json()["secret"] == "DEPLOY_TOKEN"


def test_after_a_denial_the_run_may_ask_again(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    alice = UserFactory(username="alice")
    denied = token_client(alice).post(
        f"{REQUESTS}{request_id}/deny", {"comment": "not now"}, format="json"
    )
    assert denied.status_code == 200
    again = file_for_run(run_token(oidc))
    assert again.status_code == 201
    assert again.json()["id"] != request_id


def persons_filing(user):
    return token_client(user).post(
        REQUESTS,
        {"repository": "acme/api", "environment": "production", "access": "reviewer",
         "reason": REASON},
        format="json",
    )


def test_a_persons_pending_request_does_not_block_the_run(oidc, policy, dave):
    person = persons_filing(dave)
    assert person.status_code == 201
    run = file_for_run(run_token(oidc))
    assert run.status_code == 201
    assert run.json()["id"] != person.json()["id"]


def test_a_runs_pending_request_does_not_block_the_person(oidc, policy, dave):
    run = file_for_run(run_token(oidc))
    person = persons_filing(dave)
    assert (run.status_code, person.status_code) == (201, 201)
    assert person.json()["run"] is None
    assert persons_filing(dave).status_code == 400  # their own pending one still does


# --- every other rule stays -------------------------------------------------------------------


def test_a_reason_shorter_than_the_policys_minimum_is_a_400(oidc, policy, dave):
    response = file_for_run(run_token(oidc), reason="short")
    assert response.status_code == 400
    assert "at least 10 characters" in response.json()["errors"]["reason"][0]
    assert not AccessRequest.objects.exists()


def test_a_duration_above_the_policys_maximum_is_a_400(oidc, policy, dave):
    response = file_for_run(run_token(oidc), duration_minutes=10_000)
    assert response.status_code == 400
    assert "At most 240 minutes" in response.json()["errors"]["duration_minutes"][0]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"access": "secret"}, "Choose the secret to grant"),
        ({"access": "secret", "secret": "OTHER_TOKEN"}, "does not grant the secret OTHER_TOKEN"),
        ({"access": "reviewer", "secret": "DEPLOY_TOKEN"}, "Only secret access takes a secret"),
    ],
)
def test_the_secret_rules_hold(oidc, dave, body, words):
    secret = SecretDefinitionFactory(name="DEPLOY_TOKEN")
    approver_setup(workflow_requests=True, secrets=[secret])
    response = file_for_run(run_token(oidc), **body)
    assert response.status_code == 400
    assert words in response.json()["errors"]["secret"][0]


def test_the_requester_cannot_approve_their_workflows_request(oidc, dave):
    approver_setup(approvers=("alice", "bob", "dave"), workflow_requests=True)
    request_id = file_for_run(run_token(oidc)).json()["id"]
    response = token_client(dave).post(f"{REQUESTS}{request_id}/approve", {}, format="json")
    assert response.status_code == 403
    assert "own request" in response.json()["message"]
    assert AccessRequest.objects.get(pk=request_id).approvals.count() == 0


def test_approvers_approve_it_with_their_api_tokens(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice", "bob")
    access_request = AccessRequest.objects.get(pk=request_id)
    assert access_request.status == AccessRequest.Status.APPROVED
    assert sorted(a.approver.username for a in access_request.approvals.all()) == ["alice", "bob"]
    assert AuditEvent.objects.filter(action="request.approved", target_id=str(request_id)).exists()


# --- two filings at once ----------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_filings_at_once_from_one_run_give_one_request(oidc, on_postgres):
    approver_setup(workflow_requests=True)
    signed_in_with_github("dave", 5001)
    token = run_token(oidc)
    barrier = threading.Barrier(2)
    outcomes = [None, None]

    def worker(index):
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            response = file_for_run(token)
            outcomes[index] = (response.status_code, response.json()["id"])
        except Exception as exc:  # the outcome under test, reported to the assertion
            outcomes[index] = exc
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a filing never finished"

    assert sorted(status for status, _ in outcomes) == [200, 201], outcomes
    assert outcomes[0][1] == outcomes[1][1]
    assert AccessRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="request.created").count() == 1
