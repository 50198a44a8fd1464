"""A run-bound grant (a workflow filed its request) serves only its run, and ends with it:
the check and the deployment gates answer for it only to that run, and
POST /api/v1/runs/release gives it back (the reviewer leaves GitHub's environment)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from grants import gates
from grants.models import DeploymentGate, Grant
from requests_app.models import AccessRequest
from requests_app.services import access_request_deny
from tests.api.conftest import active_request, oidc_client, token_client
from tests.api.test_workflow_requests import (
    RUN,
    approve,
    file_for_run,
    run_token,
    signed_in_with_github,
)
from tests.grants.test_webhook import _on_commit, deliver, payload, reviews
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"
RELEASE = "/api/v1/runs/release"
Status = AccessRequest.Status


@pytest.fixture
def policy():
    """acme/* production and staging, two of alice, bob and carol; workflows may file."""
    policy, _, _ = approver_setup(
        workflow_requests=True, name="deploys", environment_patterns=["production", "staging"]
    )
    return policy


@pytest.fixture
def dave():
    return signed_in_with_github("dave", 5001)


def run_bound(login="dave", run_id=RUN, **extra):
    """A request of run `run_id` whose grant is in force (made as the engine leaves it)."""
    return active_request(
        login,
        run_id=run_id,
        run_attempt=1,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main",
        run_sha="a" * 40,
        **extra,
    )


# --- the check --------------------------------------------------------------------------------


def test_the_check_allows_the_grants_own_run(oidc, dave):
    access_request = run_bound()
    body = oidc_client(run_token(oidc)).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["request"] == access_request.pk
    assert body["grant"]["run_id"] == RUN
    assert "run 4242" in body["reason"]


def test_the_check_refuses_another_run_saying_whose_it_is(oidc, dave):
    run_bound()
    body = oidc_client(run_token(oidc, run_id=RUN + 1)).get(CHECK).json()
    assert body["allowed"] is False
    assert body["grant"] is None
    assert f"it belongs to run {RUN} of acme/api; this is run {RUN + 1}" in body["reason"]


def test_a_later_attempt_of_the_same_run_is_allowed(oidc, dave):
    run_bound()
    token = run_token(oidc, run_attempt="2", triggering_actor="dave", triggering_actor_id="5001")
    assert oidc_client(token).get(CHECK).json()["allowed"] is True


def test_another_run_still_uses_the_persons_own_grant(oidc, dave):
    run_bound()
    persons = active_request("dave")
    body = oidc_client(run_token(oidc, run_id=RUN + 1)).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["request"] == persons.pk
    assert body["grant"]["run_id"] is None


def test_a_person_checking_their_run_bound_grant_is_told_it_belongs_to_the_run(dave):
    run_bound()
    response = token_client(dave).get(
        CHECK, {"repository": "acme/api", "environment": "production"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is False
    assert f"it belongs to run {RUN} of acme/api, and only that run may use it" in body["reason"]


def test_a_run_bound_grant_in_another_repository_does_not_serve_the_same_run_id(oidc, dave):
    run_bound(repository="acme/web")
    body = oidc_client(run_token(oidc)).get(CHECK).json()
    assert body["allowed"] is False


def test_the_check_of_a_filed_and_approved_request_follows_the_run(oidc, gh, policy, dave):
    gh.add_user("dave", id=5001)
    gh.add_environment("acme/api", "production")
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice", "bob")
    from grants.services import grant_apply_request

    grant_apply_request(request_id=request_id)
    assert oidc_client(run_token(oidc)).get(CHECK).json()["allowed"] is True
    assert oidc_client(run_token(oidc, run_id=RUN + 1)).get(CHECK).json()["allowed"] is False


def test_a_renamed_login_files_and_then_passes_the_check_by_its_github_id(oidc, policy, dave):
    renamed = {"actor": "dave-renamed", "actor_id": "5001"}
    request_id = file_for_run(run_token(oidc, **renamed)).json()["id"]
    approve(request_id, "alice", "bob")
    AccessRequest.objects.filter(pk=request_id).update(
        status=Status.ACTIVE, granted_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    body = oidc_client(run_token(oidc, **renamed)).get(CHECK).json()
    assert body["allowed"] is True, body["reason"]
    assert (body["grant"]["request"], body["grant"]["user"]) == (request_id, "dave")


def test_a_persons_grant_is_found_by_github_id_after_a_rename(oidc, dave):
    persons = active_request("dave")
    body = oidc_client(oidc(actor="dave-renamed", actor_id="5001")).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["request"] == persons.pk


def test_the_new_owner_of_a_login_does_not_hide_the_id_holders_grant(oidc, dave):
    # "dave-renamed" is also a portal user, who signed in with another GitHub account: the
    # run's GitHub id is dave's, and dave's grant answers.
    signed_in_with_github("dave-renamed", 6002)
    active_request("dave-renamed", policy=active_request("dave").policy)
    body = oidc_client(oidc(actor="dave-renamed", actor_id="5001")).get(CHECK).json()
    assert body["allowed"] is True
    assert body["grant"]["user"] == "dave"


def test_a_login_whose_portal_user_has_another_github_id_is_still_refused(oidc, dave):
    active_request("dave")
    body = oidc_client(oidc(actor="dave", actor_id="6002")).get(CHECK).json()
    assert body["allowed"] is False
    assert "GitHub account id 6002" in body["reason"]


# --- POST /api/v1/runs/release ----------------------------------------------------------------


def test_release_ends_the_runs_grant_on_github_and_cancels_its_pending_requests(
    oidc, gh, eager_celery, policy, dave
):
    gh.add_user("dave", id=5001)
    gh.add_environment("acme/api", "production")
    production = file_for_run(run_token(oidc)).json()["id"]
    with _on_commit():  # the approval commits; the engine puts dave on the environment
        approve(production, "alice", "bob")
    assert AccessRequest.objects.get(pk=production).status == Status.ACTIVE
    assert gh.reviewers("acme/api", "production") == ["dave"]
    staging = file_for_run(run_token(oidc, environment="staging")).json()["id"]
    other_run = file_for_run(run_token(oidc, run_id=RUN + 1)).json()["id"]

    with _on_commit():
        response = oidc_client(run_token(oidc)).post(RELEASE)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["repository"], body["run_id"]) == ("acme/api", RUN)
    assert [r["id"] for r in body["ended"]] == [production]
    assert [r["id"] for r in body["cancelled"]] == [staging]
    assert body["ended"][0]["status"] == "revoked"
    assert body["cancelled"][0]["status"] == "cancelled"
    assert "1 grant(s) ended, 1 pending request(s) cancelled" in body["message"]
    assert gh.reviewers("acme/api", "production") == []
    grant = Grant.objects.get(access_request_id=production)
    assert grant.revoke_requested_at is not None
    assert grant.state == Grant.State.REVOKED
    assert AccessRequest.objects.get(pk=production).status == Status.REVOKED
    assert AccessRequest.objects.get(pk=staging).status == Status.CANCELLED
    assert AccessRequest.objects.get(pk=other_run).status == Status.PENDING
    released = AuditEvent.objects.get(action="request.released_by_run", target_id=str(production))
    assert f"Released by run {RUN} of acme/api" in released.reason
    assert released.actor_label == "oidc:dave@acme/api"
    cancelled = AuditEvent.objects.get(action="request.released_by_run", target_id=str(staging))
    assert cancelled.actor_label == "oidc:dave@acme/api"
    # The check says no at once.
    assert oidc_client(run_token(oidc)).get(CHECK).json()["allowed"] is False


def test_release_leaves_other_runs_and_persons_grants_alone(oidc, dave):
    ours = run_bound()
    theirs = run_bound(run_id=RUN + 1, policy=ours.policy)
    persons = active_request("dave", policy=ours.policy)
    elsewhere = run_bound(repository="acme/web", policy=ours.policy)
    response = oidc_client(run_token(oidc)).post(RELEASE)
    assert [r["id"] for r in response.json()["ended"]] == [ours.pk]
    for other in (theirs, persons, elsewhere):
        other.refresh_from_db()
        assert other.status == Status.ACTIVE
    assert oidc_client(run_token(oidc, run_id=RUN + 1)).get(CHECK).json()["allowed"] is True


def test_a_second_release_finds_nothing(oidc, dave):
    run_bound()
    client = oidc_client(run_token(oidc))
    assert len(client.post(RELEASE).json()["ended"]) == 1
    again = client.post(RELEASE)
    assert again.status_code == 200
    body = again.json()
    assert (body["ended"], body["cancelled"]) == ([], [])
    assert body["message"] == f"Run {RUN} of acme/api holds no open requests; nothing to release."
    assert AuditEvent.objects.filter(action="request.released_by_run").count() == 1


def test_release_of_an_approved_request_not_yet_granted_ends_it(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice", "bob")  # no engine ran: approved, no grant yet
    body = oidc_client(run_token(oidc)).post(RELEASE).json()
    assert [r["id"] for r in body["ended"]] == [request_id]
    assert AccessRequest.objects.get(pk=request_id).status == Status.REVOKED


def test_release_from_a_later_attempt_ends_the_runs_grants(oidc, dave):
    ours = run_bound()
    token = run_token(oidc, run_attempt="2", triggering_actor="dave", triggering_actor_id="5001")
    body = oidc_client(token).post(RELEASE).json()
    assert [r["id"] for r in body["ended"]] == [ours.pk]


def test_release_with_an_api_token_is_refused(dave):
    run_bound()
    response = token_client(dave).post(RELEASE)
    assert response.status_code == 403
    assert "Only a workflow's OIDC token can call this" in response.json()["message"]
    assert AccessRequest.objects.get().status == Status.ACTIVE


def test_release_without_credentials_is_401(api):
    assert api.post(RELEASE).status_code == 401


def test_release_from_a_token_without_a_run_is_refused(oidc, dave):
    run_bound()
    response = oidc_client(run_token(oidc, run_id="")).post(RELEASE)
    assert response.status_code == 403
    assert "names no workflow run (run_id, run_attempt)" in response.json()["message"]
    assert AccessRequest.objects.get().status == Status.ACTIVE


# --- deployment gates -------------------------------------------------------------------------


@pytest.fixture
def app(gates_app):
    """Airlock's GitHub App on acme, as tests/grants/test_webhook.py sets it up."""
    return gates_app


def dave_of(app) -> str:
    """dave signed in to the portal with the GitHub account the local GitHub knows."""
    github_id = app.state.users["dave"].id
    signed_in_with_github("dave", github_id)
    return str(github_id)


def test_a_run_bound_grant_approves_its_own_runs_deployment_only(app):
    access_request = run_bound(run_id=7001)
    deliver(app, payload(app, run_id=7001))
    deliver(app, payload(app, run_id=7002))
    assert sorted(reviews(app)) == [(7001, "approved"), (7002, None)]
    approved = DeploymentGate.objects.get(run_id=7001)
    assert approved.access_request == access_request
    waiting = DeploymentGate.objects.get(run_id=7002)
    assert waiting.state == "pending"
    comment = next(c.comment for c in app.callbacks if c.run_id == 7002)
    assert "it belongs to run 7001" in comment


def test_a_run_bound_grant_becoming_active_approves_only_its_runs_waiting_gate(app, oidc):
    policy, _, _ = approver_setup(workflow_requests=True)
    github_id = dave_of(app)
    deliver(app, payload(app, run_id=7001))
    deliver(app, payload(app, run_id=7002))
    request_id = file_for_run(run_token(oidc, run_id=7002, actor_id=github_id)).json()["id"]
    with _on_commit():  # applied on GitHub, then the gates that wait follow it
        approve(request_id, "alice", "bob")
    assert AccessRequest.objects.get(pk=request_id).status == Status.ACTIVE
    assert reviews(app) == [(7001, None), (7002, None), (7002, "approved")]
    assert DeploymentGate.objects.get(run_id=7001).state == "pending"


def test_another_runs_denied_request_does_not_reject_a_waiting_gate(app, oidc):
    policy, _, approvers = approver_setup(workflow_requests=True)
    github_id = dave_of(app)
    deliver(app, payload(app, run_id=7001))
    request_id = file_for_run(run_token(oidc, run_id=7002, actor_id=github_id)).json()["id"]
    with _on_commit():
        response = token_client(approvers["alice"]).post(
            f"/api/v1/requests/{request_id}/deny", {"comment": "Not this one"}, format="json"
        )
    assert response.status_code == 200
    # Run 7002's request could never have covered run 7001's deployment.
    assert reviews(app) == [(7001, None)]
    assert DeploymentGate.objects.get(run_id=7001).state == "pending"


def test_a_run_bound_request_closing_rejects_its_own_runs_waiting_gate(app, oidc):
    policy, _, approvers = approver_setup(workflow_requests=True)
    github_id = dave_of(app)
    deliver(app, payload(app, run_id=7002))
    request_id = file_for_run(run_token(oidc, run_id=7002, actor_id=github_id)).json()["id"]
    with _on_commit():
        token_client(approvers["alice"]).post(
            f"/api/v1/requests/{request_id}/deny", {"comment": "Not this one"}, format="json"
        )
    assert reviews(app) == [(7002, None), (7002, "rejected")]


def test_another_runs_open_request_does_not_keep_a_gate_waiting_when_its_own_closes(app, oidc):
    policy, _, approvers = approver_setup(workflow_requests=True)
    github_id = dave_of(app)
    deliver(app, payload(app, run_id=7002))
    file_for_run(run_token(oidc, run_id=7003, actor_id=github_id))  # open, but only for run 7003
    request_id = file_for_run(run_token(oidc, run_id=7002, actor_id=github_id)).json()["id"]
    with _on_commit():
        token_client(approvers["alice"]).post(
            f"/api/v1/requests/{request_id}/deny", {"comment": "Not this one"}, format="json"
        )
    assert reviews(app) == [(7002, None), (7002, "rejected")]



def test_the_sweep_approves_the_run_bound_grants_own_gate_behind_another_runs(app):
    deliver(app, payload(app, run_id=7001))  # the older gate: nothing covers it
    deliver(app, payload(app, run_id=7002))
    run_bound(run_id=7002)  # active, and the after-commit message was lost
    with _on_commit():
        assert gates.deployment_gates_sweep()["decided"] == 1
    assert reviews(app) == [(7001, None), (7002, None), (7002, "approved")]
    assert DeploymentGate.objects.get(run_id=7001).state == "pending"


def test_the_sweep_rejects_a_gate_whose_runs_request_closed_behind_another_runs(app):
    policy, _, approvers = approver_setup(workflow_requests=True)
    deliver(app, payload(app, run_id=7001))
    deliver(app, payload(app, run_id=7002))
    own = AccessRequestFactory(
        requester=UserFactory(username="dave"), policy=policy, run_id=7002, run_attempt=1
    )
    later = AccessRequestFactory(
        requester=UserFactory(username="dave"), policy=policy, run_id=7003, run_attempt=1
    )
    access_request_deny(access_request=own, approver=approvers["alice"], comment="No")
    access_request_deny(access_request=later, approver=approvers["alice"], comment="No")
    # (the denials' after-commit messages never ran)
    with _on_commit():
        assert gates.deployment_gates_sweep()["decided"] == 1
    assert reviews(app) == [(7001, None), (7002, None), (7002, "rejected")]


def test_the_waiting_comment_links_only_to_a_request_that_may_approve_the_deployment(app):
    policy, _, _ = approver_setup(workflow_requests=True)
    dave = UserFactory(username="dave")
    own = AccessRequestFactory(requester=dave, policy=policy, run_id=7002, run_attempt=1)
    other = AccessRequestFactory(requester=dave, policy=policy, run_id=7003, run_attempt=1)
    deliver(app, payload(app, run_id=7001))
    deliver(app, payload(app, run_id=7002))
    first, second = app.callbacks
    assert f"/requests/{other.pk}/" not in first.comment
    assert f"/requests/{own.pk}/" not in first.comment
    assert "Request access: https://airlock.test/requests/new/" in first.comment
    assert f"https://airlock.test/requests/{own.pk}/" in second.comment


def test_a_renamed_logins_run_bound_grant_approves_its_own_runs_gate(app):
    # dave renamed their GitHub login to dave-renamed (same GitHub id). Their run files by
    # GitHub id (the request is the portal user "dave"'s, and the check allows the run:
    # test_a_renamed_login_files_and_then_passes_the_check_by_its_github_id). The
    # deployment protection rule of the same run names the sender "dave-renamed" with the
    # same id, and the gate matches the requester by that id.
    renamed = app.add_user("dave-renamed")
    signed_in_with_github("dave", renamed.id)
    run_bound(run_id=7001)
    deliver(app, payload(app, run_id=7001, login="dave-renamed"))
    assert reviews(app) == [(7001, "approved")]
