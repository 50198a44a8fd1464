"""Review of issue 14 (workflow-filed, run-bound requests): findings written as failing tests.

Each test names the finding it proves; the review report has the details and the fixes."""

import pytest

from grants.models import DeploymentGate, Grant
from grants.services import grant_create_for_request
from tests.api.action_runner import run_action
from tests.api.conftest import active_request
from tests.api.test_run_bound_grants import app, run_bound  # noqa: F401 (the fixture)
from tests.api.test_workflow_requests import file_for_run, run_token, signed_in_with_github
from tests.grants.factories import approved_request
from tests.grants.test_webhook import deliver, payload, reviews
from tests.requests_app.factories import UserFactory, approver_setup

RUN_ID = 4242


# --- the Action: server text reaches the log unescaped -----------------------------------------


@pytest.fixture
def portal(serial_portal):
    return serial_portal


@pytest.mark.django_db(transaction=True)
def test_the_request_mode_log_carries_no_workflow_command_from_the_server(
    portal, id_token_service, tmp_path
):
    # The run's request is approved and its grant failed once on GitHub; GitHub's error
    # text is Airlock's last_error. The Action prints it with progress() through log(),
    # unescaped: a line break in it starts a line that the runner reads as a workflow
    # command (here a warning; ::add-mask::, ::stop-commands:: and others alike).
    # annotate() escapes and set_outputs() uses a delimiter; log() does neither.
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
