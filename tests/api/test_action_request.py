"""The Action's request and release modes end to end: its step, run as a runner runs it
(tests/api/action_runner.py), files the run's request against a live portal with the job's
OIDC token and waits while approvers decide over the API; the engine applies the grant on
the local GitHub (Celery eager, after the approval's commit, as a worker would)."""

import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from grants.models import Grant
from grants.services import grant_create_for_request
from requests_app.models import AccessRequest
from requests_app.tokens import api_token_create
from tests.api.action_runner import ActionRun, run_action
from tests.fixtures import oidc_client
from tests.grants.factories import approved_request
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db(transaction=True)

RUN_ID = 4242
SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
# The job's OIDC claims, and the variables a runner sets for the same run.
RUN_CLAIMS = {
    "repository": "acme/api",
    "environment": "production",
    "actor": "dave",
    "run_id": str(RUN_ID),
    "run_attempt": "1",
    "ref": "refs/heads/main",
    "sha": SHA,
    "workflow": "deploy",
    "job_workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
}
RUNNER_ENV = {
    "GITHUB_WORKFLOW": "deploy",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": SHA,
    "GITHUB_RUN_ID": str(RUN_ID),
    "GITHUB_RUN_ATTEMPT": "1",
}
# How long a test waits for the running Action to have filed its request.
FILED_WITHIN_SECONDS = 60


class Approver:
    """An approver acting over the portal's API with a personal API token, while the Action
    runs (the test's own database connection stays idle then: serial_portal)."""

    def __init__(self, portal, user):
        self.portal, self.name = portal, user.username
        self.headers = {"Authorization": f"Bearer {api_token_create(user=user, name='t')[1]}"}

    def run_request(self, action: ActionRun) -> dict:
        """The request the running Action filed, once it exists."""
        deadline = time.monotonic() + FILED_WITHIN_SECONDS
        while time.monotonic() < deadline:
            listed = requests.get(
                f"{self.portal}/api/v1/requests/", headers=self.headers, timeout=30
            )
            assert listed.status_code == 200, listed.text
            for found in listed.json()["results"]:
                if (found.get("run") or {}).get("id") == RUN_ID:
                    return found
            if not action.running():
                pytest.fail("the action ended without filing:\n" + action.finish()[1])
            time.sleep(0.05)
        action.stop()
        pytest.fail(f"the action filed no request within {FILED_WITHIN_SECONDS}s")

    def decide(self, access_request: dict, verb: str, comment: str = "") -> None:
        answer = requests.post(
            f"{self.portal}/api/v1/requests/{access_request['id']}/{verb}",
            json={"comment": comment},
            headers=self.headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture
def approvers(serial_portal, gh, eager_celery):
    """alice and bob, approvers of a policy that lets workflows file requests for acme/api's
    production (two approvals); dave, who starts the runs, has an account. Approvals apply
    the grant on the local GitHub after their commit, as a worker would."""
    gh.add_user("dave")
    gh.add_environment("acme/api", "production", reviewers=[("Team", "acme/sre")])
    UserFactory(username="dave")
    _, _, users = approver_setup(workflow_requests=True)
    return {name: Approver(serial_portal, users[name]) for name in ("alice", "bob")}


@pytest.fixture
def portal(serial_portal):
    return serial_portal


@pytest.fixture
def job(id_token_service):
    """The job's ID-token service: run 4242 of acme/api, started by dave."""
    return id_token_service(**RUN_CLAIMS)


def start_request(portal, job, tmp_path, **inputs) -> ActionRun:
    return ActionRun(
        {"airlock-url": portal, "mode": "request", **inputs},
        tmp_path=tmp_path,
        id_token_url=job.url,
        extra_env=RUNNER_ENV,
    )


def approve(approvers, access_request: dict) -> None:
    for name in ("alice", "bob"):
        approvers[name].decide(access_request, "approve")


def test_the_action_waits_for_the_approvals_then_succeeds_with_the_outputs(
    portal, approvers, gh, id_token_service, tmp_path
):
    # Tokens that live 61 seconds: each is near its expiry a second later, so the wait
    # has to ask GitHub for a fresh one to go on polling.
    job = id_token_service(lifetime=61, **RUN_CLAIMS)
    action = start_request(portal, job, tmp_path, duration="45")
    filed = approvers["alice"].run_request(action)
    assert filed["status"] == "pending"
    assert action.running()  # waiting for the decision
    approve(approvers, filed)

    status, output, outputs = action.finish()
    assert status == 0, output
    access_request = AccessRequest.objects.get(pk=filed["id"])
    assert access_request.status == AccessRequest.Status.ACTIVE
    assert access_request.reason == "Workflow 'deploy' on refs/heads/main at a1b2c3d, run 4242"
    assert access_request.duration_minutes == 45
    assert access_request.requester.username == "dave"
    assert "dave" in gh.reviewers("acme/api", "production")
    link = f"{portal}/requests/{access_request.pk}/"
    assert outputs == {
        "allowed": "true",
        "expires-at": outputs["expires-at"],
        "grant-id": str(access_request.grant.pk),
        "request-id": str(access_request.pk),
        "request-url": link,
        "token": "",  # mode: token's alone
    }
    assert outputs["expires-at"].startswith(access_request.expires_at.strftime("%Y-%m-%dT%H:%M"))
    assert f"Filed request #{access_request.pk} for reviewer access to acme/api" in output
    assert f"::notice title=Airlock: access requested::Filed request #{access_request.pk}: " \
        f"{link}" in output
    assert "pending approval (0 of 2 approvals)" in output
    summary = action.summary()
    assert f"[request #{access_request.pk}]({link})" in summary
    assert "Airlock: access granted" in summary
    assert len(job.audiences) >= 2 and set(job.audiences) == {portal}


def test_a_denial_fails_the_action_with_the_approvers_comment(
    portal, approvers, job, tmp_path
):
    action = start_request(portal, job, tmp_path, reason="Rotating the database password")
    filed = approvers["alice"].run_request(action)
    assert filed["reason"] == "Rotating the database password"
    approvers["alice"].decide(filed, "deny", "Not during the freeze; ask on Monday.")

    status, output, outputs = action.finish()
    assert status == 1
    assert (
        f"::error title=Airlock: request denied::Request #{filed['id']} was denied by "
        f"alice: Not during the freeze; ask on Monday. See {portal}/requests/{filed['id']}/"
    ) in output
    assert outputs["allowed"] == "false"
    assert outputs["request-id"] == str(filed["id"])
    assert "Airlock: request denied" in action.summary()


def test_a_grant_github_refuses_fails_the_action_with_githubs_reason(
    portal, approvers, gh, job, tmp_path
):
    refusal = (
        "Failed to create the environment protection rule. Please ensure the billing plan "
        "supports the required reviewers protection rule."
    )
    gh.faults.add(
        "PUT", "/repos/acme/api/environments/production", status=422, times=None,
        body={"message": refusal, "documentation_url": "https://docs.github.com/rest"},
    )
    action = start_request(portal, job, tmp_path)
    filed = approvers["alice"].run_request(action)
    approve(approvers, filed)

    status, output, outputs = action.finish()
    assert status == 1
    assert (
        f"::error title=Airlock: grant failed on GitHub::Request #{filed['id']} was approved, "
        "but GitHub refused the grant: "
    ) in output
    assert refusal in output
    assert outputs["allowed"] == "false"


def test_a_second_call_from_the_same_run_reuses_its_request(
    portal, approvers, job, tmp_path
):
    first = start_request(portal, job, tmp_path / "first")
    filed = approvers["alice"].run_request(first)
    approve(approvers, filed)
    status, output, first_outputs = first.finish()
    assert status == 0, output

    status, output, outputs = start_request(portal, job, tmp_path / "second").finish()
    assert status == 0, output
    assert f"This run already filed request #{filed['id']}" in output
    assert outputs["request-id"] == first_outputs["request-id"] == str(filed["id"])
    assert outputs["grant-id"] == first_outputs["grant-id"]
    assert AccessRequest.objects.count() == 1


class FlakyPortal:
    """A proxy in front of the portal that answers 503 to the first `failures` reads of a
    request (GET /api/v1/requests/{id}/), as a load balancer does while the portal
    restarts, and passes everything else through."""

    POLL = re.compile(r"^/api/v1/requests/\d+/$")

    def __init__(self, portal: str, failures: int):
        self.failures, self.failed = failures, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if FlakyPortal.POLL.match(self.path) and proxy.failed < proxy.failures:
                    proxy.failed += 1
                    return self._answer(503, b"<html>Service Unavailable</html>")
                self._forward()

            def do_POST(self):
                self._forward()

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                forwarded = urllib.request.Request(
                    portal + self.path,
                    data=self.rfile.read(length) if length else None,
                    method=self.command,
                    headers={
                        name: self.headers[name]
                        for name in ("Authorization", "Accept", "Content-Type")
                        if self.headers.get(name)
                    },
                )
                try:
                    with urllib.request.urlopen(forwarded, timeout=30) as answer:
                        self._answer(answer.status, answer.read())
                except urllib.error.HTTPError as error:
                    self._answer(error.code, error.read())

            def _answer(self, status, data):
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_wait_goes_on_through_a_transient_error(portal, approvers, job, tmp_path):
    flaky = FlakyPortal(portal, failures=1)
    try:
        action = start_request(flaky.url, job, tmp_path, audience=portal)
        filed = approvers["alice"].run_request(action)
        approve(approvers, filed)
        status, output, outputs = action.finish()
    finally:
        flaky.stop()
    assert status == 0, output
    assert flaky.failed == 1
    assert "Airlock answered 503" in output and "still waiting." in output
    assert outputs["allowed"] == "true"


def test_running_out_of_wait_minutes_fails_clearly_and_leaves_the_request_open(
    portal, approvers, job, tmp_path
):
    status, output, outputs = start_request(
        portal, job, tmp_path, **{"wait-minutes": "0.02"}
    ).finish()
    assert status == 1
    access_request = AccessRequest.objects.get(run_id=RUN_ID)
    assert access_request.status == AccessRequest.Status.PENDING
    assert (
        f"::error title=Airlock: still waiting::Request #{access_request.pk} is still pending "
        "after 0.02 minutes: pending approval (0 of 2 approvals)."
    ) in output
    assert "cancelled, or its access ended, when this run completes" in output
    assert "`mode: release`" in output
    assert outputs["request-url"] == f"{portal}/requests/{access_request.pk}/"


def test_release_ends_the_runs_grant_and_succeeds_when_nothing_is_open(
    portal, approvers, gh, oidc, job, tmp_path
):
    # The run's request, filed and granted over the API (the request mode is tested above).
    filed = oidc_client(oidc({**RUN_CLAIMS, "aud": portal})).post(
        "/api/v1/requests/",
        {"access": "reviewer", "reason": "Deploying the hotfix for INC-1234"},
        format="json",
    )
    assert filed.status_code == 201, filed.json()
    approve(approvers, filed.json())
    access_request = AccessRequest.objects.get(pk=filed.json()["id"])
    assert access_request.status == AccessRequest.Status.ACTIVE
    assert "dave" in gh.reviewers("acme/api", "production")

    release = {"airlock-url": portal, "mode": "release"}
    status, output, _ = run_action(release, tmp_path=tmp_path, id_token_url=job.url)
    assert status == 0, output
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.REVOKED
    assert gh.reviewers("acme/api", "production") == ["acme/sre"]
    assert f"Released run {RUN_ID} of acme/api: 1 grant(s) ended" in output
    assert f"- ended: request #{access_request.pk} (reviewer access to acme/api" in output
    assert "Airlock: run released" in (tmp_path / "summary.md").read_text()

    status, output, _ = run_action(release, tmp_path=tmp_path, id_token_url=job.url)
    assert status == 0, output
    assert f"Run {RUN_ID} of acme/api holds no open requests; nothing to release." in output


def test_release_cancels_the_runs_pending_request(portal, approvers, job, tmp_path):
    asking = start_request(portal, job, tmp_path / "ask", **{"wait-minutes": "0.01"})
    status, _, _ = asking.finish()
    assert status == 1  # still pending
    status, output, _ = run_action(
        {"airlock-url": portal, "mode": "release"}, tmp_path=tmp_path, id_token_url=job.url
    )
    assert status == 0, output
    access_request = AccessRequest.objects.get(run_id=RUN_ID)
    assert access_request.status == AccessRequest.Status.CANCELLED
    assert f"- cancelled: pending request #{access_request.pk}" in output


def test_a_policy_without_workflow_requests_fails_the_action_with_the_portals_message(
    portal, gh, job, tmp_path
):
    UserFactory(username="dave")
    approver_setup(name="production", workflow_requests=False)
    status, output, outputs = start_request(portal, job, tmp_path).finish()
    assert status == 1
    assert "::error title=Airlock refused::Airlock refused the request (HTTP 403): " in output
    assert (
        "Policy 'production' covers reviewer access to acme/api environment 'production', but "
        "does not let workflows file requests (workflow_requests is off)."
    ) in output
    assert AccessRequest.objects.count() == 0
    assert outputs["allowed"] == "false"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"mode": "approve"}, "The mode input must be one of check, request, release, token; "
                              "got 'approve'."),
        ({"mode": "request", "duration": "1h"}, "The duration input must be a whole number of "
                                                "minutes, like 60"),
        ({"mode": "request", "duration": "0"}, "The duration input must be a whole number"),
        ({"mode": "request", "wait-minutes": "soon"}, "The wait-minutes input must be a number "
                                                      "of minutes above 0"),
        ({"mode": "request", "wait-minutes": "0"}, "The wait-minutes input must be a number"),
        ({"mode": "request", "wait-minutes": "inf"}, "The wait-minutes input must be a number"),
        ({"mode": "release", "airlock-url": "airlock.example.com"}, "The airlock-url input "
                                                                    "must be the portal's"),
    ],
)
def test_bad_inputs_fail_with_a_message_naming_the_input(inputs, message, tmp_path):
    status, output, _ = run_action(
        {"airlock-url": "https://airlock.example.com", **inputs}, tmp_path=tmp_path
    )
    assert status == 1
    assert "::error title=Airlock: bad input::" + message in output


def test_the_request_mode_log_carries_no_workflow_command_from_the_server(
    portal, id_token_service, tmp_path
):
    # The run's request is approved and its grant failed once on GitHub; GitHub's error
    # text is Airlock's last_error. The Action prints it with progress() through
    # log_text(): a line break in it must not start a line that the runner reads as a
    # workflow command (here a warning; ::add-mask::, ::stop-commands:: and others alike).
    policy, _, _ = approver_setup(workflow_requests=True)
    access_request = approved_request(
        "dave",
        policy=policy,
        reason="Deploying the hotfix for INC-1234",
        run_id=RUN_ID,
        run_attempt=1,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main",
        run_sha="a" * 40,
    )
    grant = grant_create_for_request(access_request=access_request)
    Grant.objects.filter(pk=grant.pk).update(
        last_error="GitHub answered 502\n::warning title=injected::from the server"
    )
    job = id_token_service(
        repository="acme/api",
        environment="production",
        actor="dave",
        run_id=str(RUN_ID),
        run_attempt="1",
        ref="refs/heads/main",
        sha="a" * 40,
        job_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
    )
    status, output, _ = run_action(
        {"airlock-url": portal, "mode": "request", "wait-minutes": "0.05"},
        tmp_path=tmp_path,
        id_token_url=job.url,
    )
    assert status == 1, output
    assert "This run already filed" in output, output  # it found the run's request
    injected = [line for line in output.splitlines() if line.startswith("::warning")]
    assert injected == [], output


# --- the completion of attempt 1 racing attempt 2 taking over the request ------------------------


def _runner_module():
    """action/runner.py, as the Action's scripts import it (they run from action/)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "action" / "runner.py"
    spec = importlib.util.spec_from_file_location("airlock_action_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "line",
    [
        "Request #1: GitHub answered 502\n::add-mask::nothing",
        "Request #1: GitHub answered 502\r::set-output name=allowed::true",
        "Request #1: GitHub answered 502\r\n  ::warning::spaced",
        "Request #1: GitHub answered 502\u2028::error::a line separator",
        "::notice::the server's text opens the line",
        "   ::notice::after spaces",
        "Airlock: the older syntax ##[warning]anywhere",
    ],
)
def test_log_text_keeps_server_text_on_one_line_and_opens_no_workflow_command(line, capsys):
    _runner_module().log_text(line)
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert len(lines) == 1, printed
    assert not lines[0].strip().startswith("::"), printed
    assert "##[" not in lines[0], printed
