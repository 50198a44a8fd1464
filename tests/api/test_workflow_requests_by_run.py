"""GET /api/v1/requests/{id}/ with a workflow's OIDC token: a run reads back the requests it
filed, and nothing else; the rest of the requests API stays for people."""

import pytest

from requests_app.models import AccessRequest
from tests.api.conftest import oidc_client, token_client
from tests.api.test_workflow_requests import (
    REASON,
    REQUESTS,
    RUN,
    approve,
    file_for_run,
    make_active,
    run_token,
    signed_in_with_github,
)
from tests.requests_app.factories import approver_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    policy, _, _ = approver_setup(workflow_requests=True, name="deploys")
    return policy


@pytest.fixture
def dave():
    return signed_in_with_github("dave", 5001)


# --- reading it back with the run's token -----------------------------------------------------


def test_the_run_reads_its_request(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice")
    response = oidc_client(run_token(oidc)).get(f"{REQUESTS}{request_id}/")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == request_id
    assert body["run"]["id"] == RUN
    assert [a["approver"] for a in body["approvals"]] == ["alice"]


def test_a_later_attempt_of_the_run_reads_it_too(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    token = run_token(oidc, run_attempt="2", triggering_actor="dave", triggering_actor_id="5001")
    assert oidc_client(token).get(f"{REQUESTS}{request_id}/").status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"run_id": str(RUN + 1)}, {"repository": "acme/web"}, {"run_id": ""}],
    ids=["another run", "another repository", "no run"],
)
def test_another_runs_token_is_told_there_is_no_such_request(oidc, policy, dave, claims):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    response = oidc_client(run_token(oidc, **claims)).get(f"{REQUESTS}{request_id}/")
    assert response.status_code == 404
    assert response.json()["message"] == f"This run filed no request #{request_id}."


def test_a_persons_request_is_not_visible_to_any_run(oidc, policy, dave):
    person = token_client(dave).post(
        REQUESTS,
        {"repository": "acme/api", "environment": "production", "access": "reviewer",
         "reason": REASON},
        format="json",
    )
    response = oidc_client(run_token(oidc)).get(f"{REQUESTS}{person.json()['id']}/")
    assert response.status_code == 404


def test_listing_with_an_oidc_token_is_refused(oidc, policy, dave):
    file_for_run(run_token(oidc))
    response = oidc_client(run_token(oidc)).get(REQUESTS)
    assert response.status_code == 403
    assert "may only call the grant check" in response.json()["message"]


@pytest.mark.parametrize("action", ["approve", "deny", "cancel", "extend"])
def test_deciding_with_an_oidc_token_is_refused(oidc, policy, dave, action):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    body = {"duration_minutes": 30, "reason": REASON} if action == "extend" else {}
    response = oidc_client(run_token(oidc)).post(
        f"{REQUESTS}{request_id}/{action}", body, format="json"
    )
    assert response.status_code == 403
    assert "may only call the grant check" in response.json()["message"]
    assert AccessRequest.objects.get(pk=request_id).status == AccessRequest.Status.PENDING


def test_a_run_bound_request_cannot_be_extended(oidc, policy, dave):
    request_id = file_for_run(run_token(oidc)).json()["id"]
    approve(request_id, "alice", "bob")
    make_active(request_id)
    response = token_client(dave).post(
        f"{REQUESTS}{request_id}/extend",
        {"duration_minutes": 30, "reason": "The deploy takes longer"},
        format="json",
    )
    assert response.status_code == 409
    message = response.json()["message"]
    assert f"Request #{request_id} is bound to run {RUN}" in message
    assert "cannot be extended" in message
    assert AccessRequest.objects.count() == 1
