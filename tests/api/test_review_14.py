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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_completion_waiting_on_a_followed_request_does_not_end_the_re_runs_access(on_postgres):
    # run_access_end picks the requests of attempts <= N, then locks them, and ends every
    # one it locked without looking at run_attempt again. A re-run filing at that moment
    # (_follow_attempt: run_attempt 1 -> 2, committed while the completion waits on the
    # row) has its access ended by the completion of attempt 1, which the follow exists to
    # prevent.
    import threading
    import time

    from django.db import connection, transaction

    from grants import runs
    from integrations.github.actions import WorkflowJob
    from requests_app.models import AccessRequest
    from requests_app.services import access_request_file_for_run

    policy, _, _ = approver_setup(workflow_requests=True)
    signed_in_with_github("dave", 5001)
    access_request = run_bound(run_id=RUN_ID, policy=policy)
    re_run = WorkflowJob(
        claims={
            "repository": "acme/api", "environment": "production", "actor": "dave",
            "actor_id": "5001", "run_id": str(RUN_ID), "run_attempt": "2",
            "ref": "refs/heads/main", "sha": "a" * 40,
            "job_workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
        },
        attempt_starter=("dave", "5001"),  # as integrations.github.attempts leaves it
    )
    followed, commit, outcome = threading.Event(), threading.Event(), {}

    def file_again():
        from django.db import connection as own

        try:
            with transaction.atomic():
                found, created = access_request_file_for_run(
                    job=re_run, access="reviewer", reason="Deploying the hotfix for INC-1234"
                )
                outcome["filed"] = (found.pk, created, found.run_attempt)
                followed.set()
                commit.wait(60)
        finally:
            followed.set()
            own.close()

    def complete_attempt_1():
        from django.db import connection as own

        try:
            outcome["pid"] = own.cursor().connection.info.backend_pid
            outcome["delivery"] = runs.workflow_run_completion_receive(
                delivery_id="d-1",
                payload={
                    "action": "completed",
                    "repository": {"full_name": "acme/api"},
                    "workflow_run": {"id": RUN_ID, "run_attempt": 1, "conclusion": "success"},
                },
            )
        finally:
            own.close()

    filer = threading.Thread(target=file_again)
    filer.start()
    assert followed.wait(60)
    assert outcome["filed"] == (access_request.pk, False, 2)
    webhook = threading.Thread(target=complete_attempt_1)
    webhook.start()
    # Let the re-run's filing commit once the completion waits for its row.
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = "
                "'Lock'",
                [outcome.get("pid", 0)],
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
    commit.set()
    filer.join(60)
    webhook.join(60)
    assert not filer.is_alive() and not webhook.is_alive()

    access_request.refresh_from_db()
    assert access_request.run_attempt == 2
    assert outcome["delivery"].grants_ended == 0
    assert access_request.status == AccessRequest.Status.ACTIVE
