"""The Action (action.yml) end to end: its own step, run as a runner would run it, against
a live portal, with a simulated runner environment: GitHub's ID-token service (a small
local endpoint handing out tokens from the local GitHub's OIDC issuer), GITHUB_OUTPUT and
the inputs substituted into the step."""

import socket

import pytest
from rest_framework.test import APIClient

from grants.services import grant_apply_request
from requests_app.models import AccessRequest
from requests_app.tokens import api_token_create
from tests.api.action_runner import run_action
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db(transaction=True)


def grant_through_the_api(login="dave"):
    """File a request and have two approvers approve it through the API; the engine (in
    dry-run, as the worker would) then grants it."""
    _, _, approvers = approver_setup(approvers=("alice", "bob"))
    requester = UserFactory(username=login)

    def as_user(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t')[1]}")
        return client

    filed = as_user(requester).post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "reason": "Deploying the hotfix for INC-1234",
            "duration_minutes": 30,
        },
        format="json",
    )
    assert filed.status_code == 201, filed.json()
    request_id = filed.json()["id"]
    for name in ("alice", "bob"):
        approved = as_user(approvers[name]).post(
            f"/api/v1/requests/{request_id}/approve", {}, format="json"
        )
        assert approved.status_code == 200
    grant_apply_request(request_id=request_id)
    access_request = AccessRequest.objects.get(pk=request_id)
    assert access_request.status == AccessRequest.Status.ACTIVE
    return access_request


def test_the_action_passes_while_a_grant_is_active(portal, id_token_service, tmp_path):
    access_request = grant_through_the_api("dave")
    service = id_token_service(repository="acme/api", environment="production", actor="dave")
    status, output, outputs = run_action(
        {"airlock-url": portal}, tmp_path=tmp_path, id_token_url=service.url
    )
    assert status == 0, output
    assert service.audiences == [portal]
    assert outputs["allowed"] == "true"
    assert outputs["grant-id"] == str(access_request.grant.pk)
    assert outputs["request-id"] == str(access_request.pk)
    assert outputs["expires-at"].startswith(access_request.expires_at.strftime("%Y-%m-%dT%H:%M"))
    assert "dave holds reviewer access to acme/api environment 'production'" in output
    assert "Airlock grant active" in (tmp_path / "summary.md").read_text()


def test_the_action_fails_with_a_link_to_request_access(portal, id_token_service, tmp_path):
    service = id_token_service(repository="acme/api", environment="production", actor="dave")
    status, output, outputs = run_action(
        {"airlock-url": portal}, tmp_path=tmp_path, id_token_url=service.url
    )
    assert status == 1
    assert outputs["allowed"] == "false"
    assert "::error title=No active Airlock grant::" in output
    assert "dave holds no reviewer access to acme/api environment 'production' now." in output
    link = f"{portal}/requests/new/?repository=acme/api&environment=production&access=reviewer"
    assert link in output


def test_the_action_reports_a_refusal_from_the_portal(portal, id_token_service, tmp_path):
    service = id_token_service(repository="acme/api", environment="production", actor="dave")
    status, output, _ = run_action(
        {"airlock-url": portal, "environment": "staging"},
        tmp_path=tmp_path,
        id_token_url=service.url,
    )
    assert status == 1
    assert "Airlock refused the check (HTTP 403)" in output
    assert "cannot ask about 'staging'" in output


def test_the_action_fails_clearly_when_the_portal_is_unreachable(
    oidc, id_token_service, tmp_path
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    service = id_token_service(repository="acme/api", environment="production", actor="dave")
    status, output, outputs = run_action(
        {"airlock-url": closed, "retries": "0"}, tmp_path=tmp_path, id_token_url=service.url
    )
    assert status == 1
    assert "::error title=Airlock unreachable::Could not reach Airlock at" in output
    assert outputs["allowed"] == "false"


def test_the_action_explains_a_missing_id_token_permission(tmp_path):
    status, output, _ = run_action(
        {"airlock-url": "https://airlock.example.com"}, tmp_path=tmp_path
    )
    assert status == 1
    assert "permissions: id-token: write" in output
