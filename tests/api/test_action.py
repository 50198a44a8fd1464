"""The Action (action.yml) end to end: its own step, run as a runner would run it, against
a live portal, with a simulated runner environment: GitHub's ID-token service (a small
local endpoint handing out tokens from the local GitHub's OIDC issuer), GITHUB_OUTPUT and
the inputs substituted into the step."""

import json
import os
import re
import socket
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from rest_framework.test import APIClient

from grants.services import grant_apply_request
from requests_app.models import AccessRequest
from requests_app.tokens import api_token_create
from tests.requests_app.factories import UserFactory, approver_setup

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TOKEN = "runner-request-token"
INPUT = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")

pytestmark = pytest.mark.django_db(transaction=True)


class IdTokenService:
    """GitHub's ID-token endpoint as a job sees it (ACTIONS_ID_TOKEN_REQUEST_URL): GET with
    `Authorization: bearer <request token>` and `audience=`, answers {"value": jwt}."""

    def __init__(self, mint, claims: dict):
        self.mint, self.claims, self.audiences = mint, claims, []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
                    return self._answer(401, {"message": "Bad credentials"})
                audience = query.get("audience", [""])[0]
                service.audiences.append(audience)
                token = service.mint({**service.claims, "aud": audience})
                return self._answer(200, {"count": 1, "value": token})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/_apis/idtoken?api-version=2.0"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def id_token_service(oidc):
    services = []

    def start(**claims):
        service = IdTokenService(oidc, claims)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


def run_action(inputs: dict, *, tmp_path, id_token_url=None, extra_env=None):
    """Run action.yml's step as the runner would: inputs substituted, the runner's
    variables set; returns (exit status, output, outputs)."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    defaults = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    for name, spec in action["inputs"].items():
        if spec.get("required"):
            assert name in inputs, f"the action requires {name}"
    values = {**defaults, **inputs}
    (step,) = action["runs"]["steps"]
    assert action["runs"]["using"] == "composite" and step["shell"] == "bash"

    outputs_file = tmp_path / "github_output"
    outputs_file.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_OUTPUT": str(outputs_file),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/api",
        **{name: INPUT.sub(lambda m: str(values[m.group(1)]), value)
           for name, value in step.get("env", {}).items()},
        **(extra_env or {}),
    }
    if id_token_url:
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = id_token_url
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = REQUEST_TOKEN
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    step_outputs = {}
    for line in outputs_file.read_text().splitlines():
        name, _, value = line.partition("=")
        step_outputs[name] = value
    # The action's outputs, as action.yml maps them from the step's.
    mapped = {
        name: re.sub(r"\$\{\{\s*steps\.check\.outputs\.([a-z-]+)\s*\}\}",
                     lambda m: step_outputs.get(m.group(1), ""), spec["value"])
        for name, spec in action["outputs"].items()
    }
    return done.returncode, done.stdout + done.stderr, mapped


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


@pytest.fixture
def portal(live_server, settings, oidc):
    # The Action's default audience is the portal's URL, as in production.
    settings.AIRLOCK_OIDC_AUDIENCE = live_server.url
    return live_server.url


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
