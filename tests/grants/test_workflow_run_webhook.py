"""POST /github/webhook with `workflow_run` "completed": access bound to a run ends with it.

GitHub's side is the local GitHub: it builds the `workflow_run` payload (checked against
GitHub's schema for the event), signs the delivery as GitHub does, and holds the environment
whose reviewers the grant engine adds and removes. Tasks run eagerly after the commit, so the
removal from GitHub is seen as soon as the webhook has answered.
"""

import hashlib
import hmac
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client, TestCase
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from grants import runs
from grants.models import Grant, WorkflowRunDelivery
from grants.services import RunEnd, grant_apply_request, grant_reconcile, run_access_end
from integrations import github
from integrations.github.actions import WorkflowJob
from requests_app.models import AccessRequest
from requests_app.services import access_request_file_for_run
from tests.api.test_run_bound_grants import run_bound
from tests.api.test_workflow_requests import signed_in_with_github
from tests.fixtures import at_once, oidc_client
from tests.grants.factories import approved_request, environment_secret, secret_grant
from tests.requests_app.factories import AccessPolicyFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status

SECRET = "webhook-s3cret"
WEBHOOK = "/github/webhook"
CHECK = "/api/v1/grants/check"
RUN = 9001
OTHER_RUN = 9002
WORKFLOW_REF = "acme/api/.github/workflows/deploy.yml@refs/heads/main"


@pytest.fixture
def hub(gh, settings, eager_celery):
    """The local GitHub with acme/api's production environment and dave's run RUN; the
    webhook secret is set and no GitHub App credentials are (the grant engine uses its
    token)."""
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = SECRET
    settings.GITHUB_APP_ID = ""
    settings.GITHUB_APP_PRIVATE_KEY = ""
    settings.GITHUB_APP_INSTALLATION_ID = ""
    gh.add_user("dave")
    gh.add_user("erin")
    gh.add_environment("acme/api", "production")
    gh.add_workflow_run("acme/api", run_id=RUN, actor="dave")
    gh.add_workflow_run("acme/api", run_id=OTHER_RUN, actor="erin")
    return gh


def run_grant(login="dave", *, run_id=RUN, attempt=1):
    """A request bound to attempt `attempt` of run `run_id`, its grant applied on GitHub."""
    access_request = approved_request(
        login,
        run_id=run_id,
        run_attempt=attempt,
        run_workflow_ref=WORKFLOW_REF,
        run_ref="refs/heads/main",
        run_sha="0" * 40,
    )
    grant_apply_request(request_id=access_request.pk)
    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE
    return access_request


def reviewers(gh):
    return [name for _, name in gh.environment("acme/api", "production")["reviewers"]]


def deliver(gh, body, *, secret=SECRET, event="workflow_run", delivery_id=None):
    """POST one delivery as GitHub would, running the after-commit work (eager tasks)."""
    raw, headers = gh.webhook_delivery(event, body, secret, delivery_id)
    return post_raw(raw, headers)


def post_raw(raw: bytes, headers: dict):
    headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return Client().post(WEBHOOK, data=raw, content_type="application/json", headers=headers)


def completed(gh, run_id=RUN, **fields):
    return gh.workflow_run_event("acme/api", run_id, **fields)


def check(oidc, run_id=RUN, attempt=1, actor="dave"):
    token = oidc({"run_id": str(run_id), "run_attempt": str(attempt), "actor": actor})
    return oidc_client(token).get(CHECK).json()


def nothing_changed(gh, access_request):
    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE
    assert access_request.grant.revoke_requested_at is None
    assert reviewers(gh) == ["dave"]
    assert not WorkflowRunDelivery.objects.exists()
    assert not AuditEvent.objects.filter(action="github.workflow_run_completed").exists()


# -- authenticity: refusals first --------------------------------------------------------------


def test_a_completion_signed_with_another_secret_is_401_and_changes_nothing(hub, oidc):
    access_request = run_grant()
    response = deliver(hub, completed(hub), secret="not-the-secret")
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["message"]
    nothing_changed(hub, access_request)
    assert check(oidc)["allowed"] is True


def test_an_unsigned_completion_is_401_and_changes_nothing(hub):
    access_request = run_grant()
    raw, headers = hub.webhook_delivery("workflow_run", completed(hub), SECRET)
    headers.pop("X-Hub-Signature-256")
    assert post_raw(raw, headers).status_code == 401
    nothing_changed(hub, access_request)


def test_a_completion_changed_after_signing_is_401(hub):
    access_request = run_grant()
    raw, headers = hub.webhook_delivery("workflow_run", completed(hub, OTHER_RUN), SECRET)
    tampered = raw.replace(str(OTHER_RUN).encode(), str(RUN).encode())
    assert post_raw(tampered, headers).status_code == 401
    nothing_changed(hub, access_request)


def test_without_a_webhook_secret_a_completion_is_503(hub, settings):
    access_request = run_grant()
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = ""
    response = deliver(hub, completed(hub))
    assert response.status_code == 503
    assert "AIRLOCK_GITHUB_WEBHOOK_SECRET" in response.json()["message"]
    nothing_changed(hub, access_request)


# -- the run's access ends ---------------------------------------------------------------------


def test_a_completed_run_loses_its_grant_on_github_and_at_the_check(hub, oidc):
    access_request = run_grant()
    others = run_grant("erin", run_id=OTHER_RUN)
    assert reviewers(hub) == ["dave", "erin"]
    assert check(oidc)["allowed"] is True

    response = deliver(hub, completed(hub, conclusion="failure"), delivery_id="d-1")

    assert response.status_code == 202
    body = response.json()
    assert body["message"] == (
        f"Run {RUN} of acme/api completed: 1 grant ended, 0 pending requests cancelled."
    )
    assert (body["grants_ended"], body["requests_cancelled"]) == (1, 0)
    # Removed from GitHub at once (the reconcile ran after the commit), the other run's kept.
    assert reviewers(hub) == ["erin"]
    answer = check(oidc)
    assert answer["allowed"] is False
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    grant = Grant.objects.get(access_request=access_request)
    assert grant.state == Grant.State.REVOKED
    ended = AuditEvent.objects.get(
        action="request.ended_with_run", target_id=str(access_request.pk)
    )
    assert ended.reason == f"Run {RUN} of acme/api completed."
    revoking = AuditEvent.objects.get(action="grant.revoke_requested", target_id=str(grant.pk))
    assert (revoking.detail["cause"], revoking.detail["by"]) == ("completed", "delivery d-1")
    others.refresh_from_db()
    assert others.status == Status.ACTIVE
    assert check(oidc, run_id=OTHER_RUN, actor="erin")["allowed"] is True
    # Recorded and audited once, with what it ended.
    delivery = WorkflowRunDelivery.objects.get()
    assert (delivery.delivery_id, delivery.repository, delivery.run_id, delivery.run_attempt) == (
        "d-1", "acme/api", RUN, 1
    )
    assert (delivery.conclusion, delivery.grants_ended, delivery.requests_cancelled) == (
        "failure", 1, 0
    )
    event = AuditEvent.objects.get(action="github.workflow_run_completed")
    assert event.actor_label == "github-webhook"
    assert event.detail["grants_ended"] == 1
    assert event.detail["requests_cancelled"] == 0
    assert event.detail["ended"] == [access_request.pk]


def test_no_app_credentials_are_needed(hub):
    assert not github.app_credentials_configured()
    access_request = run_grant()
    assert deliver(hub, completed(hub)).status_code == 202
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    assert reviewers(hub) == []


def test_a_completed_run_loses_its_secret_on_github_too(hub):
    secret = environment_secret("DEPLOY_TOKEN", value="tok-4f9a-very-secret")
    grant = secret_grant(
        secret, "dave", run_id=RUN, run_attempt=1, run_workflow_ref=WORKFLOW_REF
    )
    grant_reconcile(grant=grant)
    assert hub.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == (
        "tok-4f9a-very-secret"
    )

    assert deliver(hub, completed(hub)).json()["grants_ended"] == 1

    assert hub.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") is None
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED


def test_a_completed_run_cancels_its_pending_requests(hub):
    dave = UserFactory(username="dave")
    AccessPolicyFactory(
        name="staging-from-workflows", environment_patterns=["staging"], workflow_requests=True
    )
    job = WorkflowJob(
        claims={
            "repository": "acme/api",
            "environment": "staging",
            "actor": "dave",
            "run_id": str(RUN),
            "run_attempt": "1",
            "job_workflow_ref": WORKFLOW_REF,
            "ref": "refs/heads/main",
            "sha": "0" * 40,
        }
    )
    pending, created = access_request_file_for_run(
        job=job, access="reviewer", reason="deploy the release candidate"
    )
    assert created and pending.status == Status.PENDING and pending.requester == dave
    active = run_grant()

    response = deliver(hub, completed(hub))

    assert response.status_code == 202
    assert response.json()["message"] == (
        f"Run {RUN} of acme/api completed: 1 grant ended, 1 pending request cancelled."
    )
    pending.refresh_from_db()
    active.refresh_from_db()
    assert pending.status == Status.CANCELLED
    assert active.status == Status.REVOKED
    assert reviewers(hub) == []
    assert AuditEvent.objects.filter(
        action="request.ended_with_run", target_id=str(pending.pk)
    ).exists()


def test_a_completion_with_no_access_bound_is_recorded_and_changes_nothing_else(hub):
    access_request = run_grant()
    response = deliver(hub, completed(hub, OTHER_RUN))
    assert response.status_code == 202
    assert response.json()["message"] == (
        f"Run {OTHER_RUN} of acme/api completed: 0 grants ended, 0 pending requests cancelled."
    )
    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE
    assert reviewers(hub) == ["dave"]
    assert WorkflowRunDelivery.objects.get().run_id == OTHER_RUN


def test_a_request_a_person_filed_is_not_ended_by_any_run(hub):
    personal = approved_request("dave")
    grant_apply_request(request_id=personal.pk)
    deliver(hub, completed(hub))
    personal.refresh_from_db()
    assert personal.status == Status.ACTIVE
    assert reviewers(hub) == ["dave"]


def test_a_null_conclusion_still_ends_the_run(hub):
    access_request = run_grant()
    response = deliver(hub, completed(hub, conclusion=None))
    assert response.status_code == 202
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    assert WorkflowRunDelivery.objects.get().conclusion == ""


def test_the_repository_is_matched_in_its_canonical_form(hub):
    access_request = run_grant()
    payload = completed(hub)
    payload["repository"]["full_name"] = "ACME/Api"
    assert deliver(hub, payload).status_code == 202
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    assert reviewers(hub) == []


@pytest.mark.parametrize("action", ["requested", "in_progress"])
def test_other_workflow_run_actions_are_204_and_change_nothing(hub, action):
    access_request = run_grant()
    payload = completed(hub)
    payload["action"] = action
    response = deliver(hub, payload)
    assert response.status_code == 204
    nothing_changed(hub, access_request)


# -- replays and attempts ----------------------------------------------------------------------


def test_a_replayed_delivery_is_200_and_changes_nothing(hub):
    first = run_grant()
    payload = completed(hub)
    assert deliver(hub, payload, delivery_id="d-1").status_code == 202
    events = AuditEvent.objects.count()

    replay = deliver(hub, payload, delivery_id="d-1")

    assert replay.status_code == 200
    message = replay.json()["message"]
    assert message.startswith("Delivery d-1 (")
    assert message.endswith("was already received; nothing was done.")
    assert WorkflowRunDelivery.objects.count() == 1
    assert AuditEvent.objects.count() == events
    first.refresh_from_db()
    assert first.status == Status.REVOKED


def test_the_same_completion_under_a_new_delivery_id_is_acted_on_once(hub):
    run_grant()
    payload = completed(hub)
    assert deliver(hub, payload, delivery_id="d-1").status_code == 202
    events = AuditEvent.objects.count()

    replay = deliver(hub, payload, delivery_id="d-2")

    assert replay.status_code == 200
    assert "Delivery d-1 (" in replay.json()["message"]
    assert "already received; nothing was done" in replay.json()["message"]
    assert list(WorkflowRunDelivery.objects.values_list("delivery_id", flat=True)) == ["d-1"]
    assert AuditEvent.objects.count() == events
    assert AuditEvent.objects.filter(action="github.workflow_run_completed").count() == 1


def test_a_known_delivery_id_carrying_another_run_is_refused_with_409(hub):
    access_request = run_grant()
    assert deliver(hub, completed(hub, OTHER_RUN), delivery_id="d-1").status_code == 202
    response = deliver(hub, completed(hub), delivery_id="d-1")
    assert response.status_code == 409
    assert response.json()["message"] == "Delivery d-1 was already received; nothing was done."
    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE
    assert reviewers(hub) == ["dave"]


def test_a_late_completion_of_attempt_1_does_not_end_attempt_2s_grant(hub):
    first_attempt = run_grant(attempt=1)
    # Attempt 1's final step released its access; attempt 1 completed, and its webhook is
    # late. The run is re-run, and attempt 2 is granted access of its own.
    with TestCase.captureOnCommitCallbacks(execute=True):
        run_access_end(repository="acme/api", run_id=RUN, cause=RunEnd.RELEASED, by="dave")
    first_attempt.refresh_from_db()
    assert first_attempt.status == Status.REVOKED
    assert reviewers(hub) == []
    hub.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    second_attempt = run_grant(attempt=2)
    assert reviewers(hub) == ["dave"]

    response = deliver(hub, completed(hub, attempt=1, conclusion="failure"))

    assert response.status_code == 202
    assert response.json()["grants_ended"] == 0
    second_attempt.refresh_from_db()
    assert second_attempt.status == Status.ACTIVE
    assert reviewers(hub) == ["dave"]

    # Attempt 2's own completion ends it.
    response = deliver(hub, completed(hub, attempt=2))
    assert response.status_code == 202
    assert response.json()["message"] == (
        f"Run {RUN} (attempt 2) of acme/api completed: 1 grant ended, 0 pending requests "
        "cancelled."
    )
    second_attempt.refresh_from_db()
    assert second_attempt.status == Status.REVOKED
    assert reviewers(hub) == []


def test_a_re_run_asking_again_takes_over_the_open_request_so_a_late_completion_spares_it(
    hub,
):
    dave = UserFactory(username="dave")
    AccessPolicyFactory(
        name="production-from-workflows", environment_patterns=["production"],
        workflow_requests=True, approvals_required=0,
    )

    def job(attempt):
        return WorkflowJob(
            claims={
                "repository": "acme/api", "environment": "production", "actor": "dave",
                "triggering_actor": "dave", "run_id": str(RUN), "run_attempt": str(attempt),
                "job_workflow_ref": WORKFLOW_REF, "ref": "refs/heads/main", "sha": "0" * 40,
            }
        )

    with TestCase.captureOnCommitCallbacks(execute=True):
        first, created = access_request_file_for_run(
            job=job(1), access="reviewer", reason="deploy the release candidate"
        )
    assert created and first.requester == dave
    first.refresh_from_db()
    assert first.status == Status.ACTIVE and reviewers(hub) == ["dave"]
    # Attempt 1's completion was never delivered; the run is re-run and asks again.
    hub.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    again, created = access_request_file_for_run(
        job=job(2), access="reviewer", reason="deploy the release candidate"
    )
    assert not created and again.pk == first.pk
    first.refresh_from_db()
    assert first.run_attempt == 2
    assert AuditEvent.objects.filter(
        action="request.run_attempt_followed", target_id=str(first.pk)
    ).get().detail == {"run_id": RUN, "from_attempt": 1, "to_attempt": 2}

    assert deliver(hub, completed(hub, attempt=1)).json()["grants_ended"] == 0
    first.refresh_from_db()
    assert first.status == Status.ACTIVE and reviewers(hub) == ["dave"]
    assert deliver(hub, completed(hub, attempt=2)).json()["grants_ended"] == 1
    first.refresh_from_db()
    assert first.status == Status.REVOKED and reviewers(hub) == []


def test_a_completed_attempt_ends_the_access_of_earlier_attempts_too(hub):
    first_attempt = run_grant(attempt=1)
    hub.rerun_workflow("acme/api", RUN, triggering_actor="dave")
    response = deliver(hub, completed(hub, attempt=2))
    assert response.json()["grants_ended"] == 1
    first_attempt.refresh_from_db()
    assert first_attempt.status == Status.REVOKED


# -- payloads Airlock cannot act on ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda p: p.pop("repository"), "repository.full_name"),
        (lambda p: p["repository"].update(full_name="acme"), "repository.full_name"),
        (lambda p: p["repository"].update(full_name="acme/.."), "repository.full_name"),
        (lambda p: p["repository"].update(full_name=7), "repository.full_name"),
        (lambda p: p.pop("workflow_run"), "workflow_run"),
        (lambda p: p.update(workflow_run=[1]), "workflow_run"),
        (lambda p: p["workflow_run"].pop("id"), "workflow_run.id"),
        (lambda p: p["workflow_run"].update(id="9001"), "workflow_run.id"),
        (lambda p: p["workflow_run"].update(id=0), "workflow_run.id"),
        (lambda p: p["workflow_run"].update(id=True), "workflow_run.id"),
        (lambda p: p["workflow_run"].update(id=2**63), "workflow_run.id"),
        (lambda p: p["workflow_run"].pop("run_attempt"), "workflow_run.run_attempt"),
        (lambda p: p["workflow_run"].update(run_attempt=0), "workflow_run.run_attempt"),
        (lambda p: p["workflow_run"].update(run_attempt=2**31), "workflow_run.run_attempt"),
        (lambda p: p["workflow_run"].update(run_attempt=1.5), "workflow_run.run_attempt"),
        (lambda p: p["workflow_run"].update(conclusion=3), "workflow_run.conclusion"),
        (lambda p: p["workflow_run"].update(conclusion="x" * 51), "workflow_run.conclusion"),
        (lambda p: p["workflow_run"].update(conclusion="ok\n"), "workflow_run.conclusion"),
    ],
)
def test_a_payload_airlock_cannot_act_on_is_400_naming_the_field(hub, change, field):
    access_request = run_grant()
    payload = completed(hub)
    change(payload)
    response = deliver(hub, payload)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"]
    assert f"{field}:" in body["message"]
    nothing_changed(hub, access_request)


def test_a_signed_completion_that_is_not_json_is_400(hub):
    _, headers = hub.webhook_delivery("workflow_run", {}, SECRET)
    raw = b"{not json"
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = f"sha256={digest}"
    response = post_raw(raw, headers)
    assert response.status_code == 400
    assert response.json()["message"] == "The body is not JSON."


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    repository=_json | st.fixed_dictionaries({"full_name": _json}),
    run=_json
    | st.fixed_dictionaries({"id": _json, "run_attempt": _json, "conclusion": _json}),
)
def test_odd_payload_shapes_are_answered_without_a_500(hub, repository, run):
    payload = {"action": "completed", "repository": repository, "workflow_run": run}
    raw, headers = hub.webhook_delivery("workflow_run", payload, SECRET)
    response = post_raw(raw, headers)
    # 200: a shape that happened to name a completion an earlier example sent.
    assert response.status_code in (200, 202, 400), response.content
    if response.status_code == 400:
        assert response.json()["errors"]


# -- at once (PostgreSQL) ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize("same_id", [True, False], ids=["same delivery", "two delivery ids"])
def test_the_same_completion_twice_at_once_is_acted_on_once(hub, on_postgres, same_id):
    access_request = run_grant()
    body = completed(hub)

    def post():
        delivery_id = "same-delivery" if same_id else None
        raw, headers = hub.webhook_delivery("workflow_run", body, SECRET, delivery_id)
        return post_raw(raw, headers).status_code

    assert sorted(at_once(post)) == [200, 202]
    assert WorkflowRunDelivery.objects.count() == 1
    assert AuditEvent.objects.filter(action="github.workflow_run_completed").count() == 1
    assert AuditEvent.objects.filter(action="request.ended_with_run").count() == 1
    access_request.refresh_from_db()
    assert access_request.status == Status.REVOKED
    assert reviewers(hub) == []


# -- the admin ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_completion_waiting_on_a_followed_request_does_not_end_the_re_runs_access(on_postgres):
    # run_access_end picks the requests of attempts <= N, then locks them, and reads them
    # again under the locks. A re-run filing at that moment (_follow_attempt: run_attempt
    # 1 -> 2, committed while the completion waits on the row) keeps its access: the
    # completion of attempt 1 is no longer the request's to end.
    policy, _, _ = approver_setup(workflow_requests=True)
    signed_in_with_github("dave", 5001)
    access_request = run_bound(run_id=RUN, policy=policy)
    re_run = WorkflowJob(
        claims={
            "repository": "acme/api", "environment": "production", "actor": "dave",
            "actor_id": "5001", "run_id": str(RUN), "run_attempt": "2",
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
                    "workflow_run": {"id": RUN, "run_attempt": 1, "conclusion": "success"},
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


def test_the_admin_lists_completions_read_only(hub, root_client):
    run_grant()
    deliver(hub, completed(hub), delivery_id="d-1")
    delivery = WorkflowRunDelivery.objects.get()
    changelist = reverse("admin:grants_workflowrundelivery_changelist")

    listed = root_client.get(changelist, {"q": str(RUN)})
    assert listed.status_code == 200
    assert b"d-1" in listed.content
    assert root_client.get(changelist, {"q": "not-a-run"}).status_code == 200
    page = root_client.get(reverse("admin:grants_workflowrundelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert b"Save" not in page.content  # a view, not a form
    assert root_client.get(reverse("admin:grants_workflowrundelivery_add")).status_code == 403
