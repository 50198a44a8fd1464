"""POST /github/webhook: Airlock as a GitHub custom deployment protection rule.

GitHub's side is the local GitHub: it builds the `deployment_protection_rule` payload
(checked against GitHub's schema for the event), signs the delivery as GitHub does, mints
the App's installation tokens and records the callbacks it receives.
"""

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from grants import gates
from grants.models import DeploymentGate
from grants.services import grant_revoke
from portal.celery import app as celery_app
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_create,
    access_request_deny,
    access_requests_time_out_overdue,
)
from tests.api.conftest import active_request
from tests.api.test_workflow_requests import signed_in_with_github
from tests.fixtures import GATES_WEBHOOK_SECRET, at_once
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db

SECRET = GATES_WEBHOOK_SECRET
WEBHOOK = "/github/webhook"
CALLBACK = "/repos/acme/api/actions/runs/{}/deployment_protection_rule"


@pytest.fixture
def app(gates_app):
    """Airlock's GitHub App, installed on acme; the grant engine keeps its token."""
    return gates_app


def payload(gh, run_id=7001, login="dave", **fields):
    return gh.deployment_protection_rule_event(
        "acme/api",
        "production",
        run_id=run_id,
        login=login,
        installation_id=gh.installation,
        **fields,
    )


def deliver(gh, body, *, event="deployment_protection_rule", secret=SECRET, **headers):
    """POST one delivery as GitHub would, running the after-commit work (eager tasks)."""
    raw, signed = gh.webhook_delivery(event, body, secret, headers.pop("delivery_id", None))
    signed.update(headers)
    client = Client()
    with _on_commit():
        return client.post(
            WEBHOOK,
            data=raw,
            content_type="application/json",
            headers={k: v for k, v in signed.items() if k != "Content-Type"},
        )


class _on_commit:
    """Run on_commit callbacks at the end of the block, as a real commit would."""

    def __enter__(self):
        from django.test import TestCase

        self._context = TestCase.captureOnCommitCallbacks(execute=True)
        return self._context.__enter__()

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def reviews(gh):
    return [(c.run_id, c.state) for c in gh.callbacks]


def post_raw(raw: bytes, headers: dict):
    headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    return Client().post(WEBHOOK, data=raw, content_type="application/json", headers=headers)


# -- authenticity ------------------------------------------------------------------------------


def test_a_bad_signature_is_401_and_nothing_happens(app):
    response = deliver(app, payload(app), secret="not-the-secret")
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["message"]
    assert not DeploymentGate.objects.exists()
    assert app.callbacks == []


def test_a_missing_signature_is_401(app):
    raw, headers = app.webhook_delivery("deployment_protection_rule", payload(app), SECRET)
    headers.pop("X-Hub-Signature-256")
    assert post_raw(raw, headers).status_code == 401


def test_a_body_changed_after_signing_is_401(app):
    raw, headers = app.webhook_delivery("deployment_protection_rule", payload(app), SECRET)
    tampered = raw.replace(b'"dave"', b'"mallory"')
    assert post_raw(tampered, headers).status_code == 401


def test_without_a_webhook_secret_the_webhook_answers_503(app, settings):
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = ""
    response = deliver(app, payload(app))
    assert response.status_code == 503
    assert response.json()["message"] == (
        "webhook secret not configured: set AIRLOCK_GITHUB_WEBHOOK_SECRET"
    )


def test_without_app_credentials_a_protection_rule_is_503(app, settings):
    settings.GITHUB_APP_ID = ""
    settings.GITHUB_APP_PRIVATE_KEY = ""
    response = deliver(app, payload(app))
    assert response.status_code == 503
    assert "GITHUB_APP_ID" in response.json()["message"]
    assert not DeploymentGate.objects.exists()


def test_a_replayed_delivery_is_answered_200_and_nothing_is_done_again(app):
    active_request("dave")
    body = payload(app)
    first = deliver(app, body, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = deliver(app, body, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, again.status_code) == (202, 200)
    assert "nothing was done again" in again.json()["message"]
    assert DeploymentGate.objects.count() == 1
    assert reviews(app) == [(7001, "approved")]
    assert AuditEvent.objects.filter(action="deployment_gate.requested").count() == 1


@pytest.mark.parametrize("granted", [True, False], ids=["approved", "waiting"])
def test_a_replay_under_a_new_delivery_id_changes_nothing_and_posts_nothing(app, granted):
    # The delivery id is not signed: anyone who saw one delivery could send it again under
    # a fresh id. The event's subject (this deployment of this run, in this environment,
    # from this installation) is what is deduplicated.
    if granted:
        active_request("dave")
    body = payload(app)
    first = deliver(app, body)
    events_before = AuditEvent.objects.count()
    gate = DeploymentGate.objects.get()

    again = deliver(app, body)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {
        "message": (
            f"Deployment gate #{gate.pk} was opened for this deployment already (run 7001, "
            "environment production); nothing was done again."
        ),
        "gate": gate.pk,
    }
    assert DeploymentGate.objects.count() == 1
    assert reviews(app) == [(7001, "approved" if granted else None)]  # one callback POST
    assert AuditEvent.objects.count() == events_before
    assert mail.outbox == []


def test_a_replayed_event_after_the_gate_was_decided_reopens_nothing(app):
    policy, _, approvers = approver_setup()
    denied = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    body = payload(app)
    deliver(app, body)
    with _on_commit():
        access_request_deny(access_request=denied, approver=approvers["alice"], comment="No")
    assert reviews(app) == [(7001, None), (7001, "rejected")]

    assert deliver(app, body).status_code == 200
    assert DeploymentGate.objects.get().state == "rejected"
    assert reviews(app) == [(7001, None), (7001, "rejected")]


def test_a_known_delivery_id_carrying_another_event_is_refused_with_409(app):
    deliver(app, payload(app, run_id=1), delivery_id="same-delivery")
    again = deliver(app, payload(app, run_id=2), delivery_id="same-delivery")
    assert again.status_code == 409
    assert DeploymentGate.objects.count() == 1
    assert reviews(app) == [(1, None)]


def test_a_new_deployment_of_the_same_run_is_a_new_event(app):
    # Re-running a job waits on the environment again: same run id, a new deployment.
    active_request("dave")
    first = deliver(app, payload(app, run_id=7001, deployment_id=31))
    rerun = deliver(app, payload(app, run_id=7001, deployment_id=32))
    assert (first.status_code, rerun.status_code) == (202, 202)
    assert DeploymentGate.objects.count() == 2
    assert reviews(app) == [(7001, "approved"), (7001, "approved")]


def test_the_same_run_waiting_on_another_environment_is_a_new_event(app):
    app.add_environment("acme/api", "staging")
    deliver(app, payload(app, deployment_id=31))
    other = app.deployment_protection_rule_event(
        "acme/api",
        "staging",
        run_id=7001,
        login="dave",
        installation_id=app.installation,
        deployment_id=31,
    )
    assert deliver(app, other).status_code == 202
    assert sorted(DeploymentGate.objects.values_list("environment", flat=True)) == [
        "production",
        "staging",
    ]


def test_other_events_and_actions_are_accepted_and_ignored(app):
    ping = deliver(app, {"zen": "Design for failure.", "hook_id": 1}, event="ping")
    assert ping.status_code == 204
    other = {**payload(app), "action": "something_new"}
    assert deliver(app, other).status_code == 204
    assert not DeploymentGate.objects.exists()


def test_a_body_that_is_not_json_is_400(app):
    raw = b"{not json"
    _, headers = app.webhook_delivery("deployment_protection_rule", {}, SECRET)
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = f"sha256={digest}"
    response = post_raw(raw, headers)
    assert response.status_code == 400
    assert "not JSON" in response.json()["message"]


def test_a_signed_body_nested_too_deeply_is_400(app):
    # Once a RecursionError in json.loads (a 500): the signature is checked first, so
    # only a sender holding the secret gets this far, but it still gets an answer.
    raw = b"[" * 50_000 + b"]" * 50_000
    _, headers = app.webhook_delivery("deployment_protection_rule", {}, SECRET)
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = f"sha256={digest}"
    response = post_raw(raw, headers)
    assert response.status_code == 400
    assert response.json()["message"] == (
        "The body is not JSON: nested more than 100 levels deep."
    )


BIGINT_MAX = 2**63 - 1


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda p: p["installation"].update(id=BIGINT_MAX + 1), "installation.id"),
        (lambda p: p["deployment"].update(id=BIGINT_MAX + 1), "deployment.id"),
        (lambda p: p["deployment"].update(id=0), "deployment.id"),
        (lambda p: p["deployment"].update(id="12"), "deployment.id"),
        (
            lambda p: p.update(
                deployment_callback_url=p["deployment_callback_url"].replace(
                    "/runs/7001/", f"/runs/{BIGINT_MAX + 1}/"
                )
            ),
            "deployment_callback_url",
        ),
    ],
)
def test_an_id_a_database_cannot_hold_is_400_naming_the_field(app, change, field):
    # Once a 500: the ids went to the BigIntegerFields unchecked.
    body = payload(app)
    change(body)
    response = deliver(app, body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not DeploymentGate.objects.exists()
    assert app.callbacks == []


def test_ids_at_the_bigint_maximum_are_accepted(app):
    body = payload(app, run_id=BIGINT_MAX, deployment_id=BIGINT_MAX)
    body["installation"]["id"] = app.installation
    response = deliver(app, body)
    assert response.status_code == 202
    gate = DeploymentGate.objects.get()
    assert (gate.run_id, gate.deployment_id) == (BIGINT_MAX, BIGINT_MAX)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda p: p.pop("installation"), "installation.id"),
        (lambda p: p["sender"].pop("login"), "sender.login"),
        (lambda p: p["sender"].pop("id"), "sender.id"),
        (lambda p: p["sender"].update(id="5001"), "sender.id"),
        (lambda p: p["sender"].update(id=0), "sender.id"),
        (lambda p: p.update(environment="prod\nuction"), "environment"),
        (lambda p: p["repository"].update(full_name="not a repo"), "repository.full_name"),
    ],
)
def test_a_payload_airlock_cannot_act_on_is_400_naming_the_field(app, change, field):
    body = payload(app)
    change(body)
    response = deliver(app, body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not DeploymentGate.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/api/v3/repos/acme/api/actions/runs/1/deployment_protection_rule",
        "{api}/repos/acme/api/actions/runs/1/deployment_protection_rule?next=https://x.example",
        "{api}/repos/acme/api/deployments/1",
        "{api}/repos/acme/other/actions/runs/1/deployment_protection_rule",
        "{api}/repos/acme/api/actions/runs/1/../../../../user/deployment_protection_rule",
    ],
)
def test_a_callback_url_other_than_githubs_own_is_refused(app, url):
    body = payload(app)
    body["deployment_callback_url"] = url.format(api=app.api_url)
    response = deliver(app, body)
    assert response.status_code == 400
    assert "deployment_callback_url" in response.json()["errors"]
    assert not DeploymentGate.objects.exists()
    assert not [r for r in app.requests if r.method == "POST"]  # no token minted, no call


def test_a_lookalike_environment_is_400_and_no_grant_approves_it(app):
    # On PostgreSQL, UPPER() folds the dotless ı into I: 'productıon' looked like
    # 'production' to the gate's grant lookup, and dave's production grant approved it.
    active_request("dave")
    app.add_environment("acme/api", "product\u0131on")
    body = app.deployment_protection_rule_event(
        "acme/api", "product\u0131on", run_id=7001, login="dave",
        installation_id=app.installation,
    )
    response = deliver(app, body)
    assert response.status_code == 400
    assert "environment" in response.json()["errors"]
    assert not DeploymentGate.objects.exists()
    assert app.callbacks == []


@pytest.mark.parametrize("repository", ["acme/..", "acme/.", "acme/api.git"])
def test_a_repository_outside_githubs_rules_is_400(app, repository):
    active_request("dave")
    body = payload(app)
    body["repository"]["full_name"] = repository
    body["deployment_callback_url"] = body["deployment_callback_url"].replace(
        "/repos/acme/api/", f"/repos/{repository}/"
    )
    response = deliver(app, body)
    assert response.status_code == 400
    assert "repository.full_name" in response.json()["errors"]
    assert not DeploymentGate.objects.exists()


def test_a_case_variant_of_the_target_is_the_same_target(app):
    access_request = active_request("dave")
    body = payload(app)
    body["repository"]["full_name"] = "Acme/API"
    body["environment"] = "Production"
    body["deployment_callback_url"] = body["deployment_callback_url"].replace(
        "/repos/acme/api/", "/repos/ACME/Api/"
    )
    response = deliver(app, body)
    assert response.status_code == 202, response.json()
    gate = DeploymentGate.objects.get()
    assert (gate.repository, gate.environment) == ("acme/api", "production")
    assert (gate.state, gate.access_request) == ("approved", access_request)
    assert reviews(app) == [(7001, "approved")]


# -- deciding ---------------------------------------------------------------------------------


def test_an_active_grant_approves_through_the_callback_with_the_installation_token(app):
    access_request = active_request("dave")
    response = deliver(app, payload(app, run_id=7001))

    assert response.status_code == 202
    gate = DeploymentGate.objects.get()
    assert response.json() == {
        "message": f"Deployment gate #{gate.pk} is approved.",
        "gate": gate.pk,
        "state": "approved",
    }
    [callback] = app.callbacks
    assert (callback.repo, callback.run_id, callback.environment_name, callback.state) == (
        "acme/api",
        7001,
        "production",
        "approved",
    )
    assert callback.installation_id == app.installation
    assert f"request #{access_request.pk}" in callback.comment
    minted = [r for r in app.requests if r.path.endswith("/access_tokens")]
    assert minted[0].path == f"/app/installations/{app.installation}/access_tokens"
    post = next(r for r in app.requests if r.path == CALLBACK.format(7001))
    assert post.headers["authorization"].startswith("token ghs_")
    gate.refresh_from_db()
    assert gate.access_request == access_request and gate.posted_at is not None
    actions = list(
        AuditEvent.objects.filter(target_id=str(gate.pk), target_type="grants.deploymentgate")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "deployment_gate.requested",
        "deployment_gate.approved",
        "github.deployment_protection_rule_reviewed",
    ]


def test_without_a_grant_a_status_comment_links_to_a_new_request(app):
    response = deliver(app, payload(app, run_id=7002))
    assert response.json()["state"] == "pending"
    [callback] = app.callbacks
    assert callback.state is None  # a comment: the job keeps waiting
    assert "dave holds no active Airlock grant for acme/api environment 'production'" in (
        callback.comment
    )
    assert (
        "https://airlock.test/requests/new/?repository=acme%2Fapi&environment=production"
        in callback.comment
    )
    assert DeploymentGate.objects.get().notice_posted_at is not None


def test_the_status_comment_links_to_the_request_already_open(app):
    open_request = AccessRequestFactory(requester=UserFactory(username="dave"))
    deliver(app, payload(app))
    assert f"https://airlock.test/requests/{open_request.pk}/" in app.callbacks[0].comment


def test_another_persons_grant_does_not_approve(app):
    app.add_user("erin")
    active_request("erin")
    deliver(app, payload(app, login="dave"))
    assert reviews(app) == [(7001, None)]


def test_a_grant_restricted_to_a_workflow_does_not_approve_a_deployment(app):
    active_request("dave", workflow_ref_pattern="acme/api/.github/workflows/deploy.yml@*")
    deliver(app, payload(app))
    [callback] = app.callbacks
    assert callback.state is None
    assert "only workflows matching" in callback.comment


def test_a_ref_restriction_is_matched_only_against_a_fully_qualified_ref(app):
    active_request("dave", ref_pattern="refs/heads/main")
    deliver(app, payload(app, run_id=1, ref="main"))  # a branch or a tag? unknown
    deliver(app, payload(app, run_id=2, ref="refs/heads/main"))
    deliver(app, payload(app, run_id=3, ref="refs/heads/feature"))
    assert sorted(reviews(app)) == [(1, None), (2, "approved"), (3, None)]


def test_a_waiting_deployment_is_approved_when_the_grant_becomes_active(app):
    policy, _, approvers = approver_setup()
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        duration_minutes=30,
    )
    deliver(app, payload(app, run_id=7003))
    assert reviews(app) == [(7003, None)]

    access_request_approve(access_request=access_request, approver=approvers["alice"])
    with _on_commit():  # the grant is applied on GitHub, then the gate is approved
        access_request_approve(access_request=access_request, approver=approvers["bob"])

    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.ACTIVE
    assert app.reviewers("acme/api", "production") == ["dave"]
    assert reviews(app) == [(7003, None), (7003, "approved")]
    gate = DeploymentGate.objects.get()
    assert (gate.state, gate.access_request_id) == ("approved", access_request.pk)


@pytest.mark.parametrize("closing", ["deny", "cancel", "time out"])
def test_a_waiting_deployment_is_rejected_when_its_request_closes(app, closing):
    policy, _, approvers = approver_setup()
    dave = UserFactory(username="dave")
    access_request = access_request_create(
        requester=dave,
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
    )
    deliver(app, payload(app, run_id=7004))
    with _on_commit():
        if closing == "deny":
            access_request_deny(
                access_request=access_request, approver=approvers["alice"], comment="Not today"
            )
        elif closing == "cancel":
            access_request_cancel(access_request=access_request, user=dave)
        else:
            AccessRequest.objects.filter(pk=access_request.pk).update(
                pending_until=timezone.now() - timedelta(seconds=1)
            )
            access_requests_time_out_overdue()

    assert reviews(app) == [(7004, None), (7004, "rejected")]
    rejected = app.callbacks[-1].comment
    assert f"request #{access_request.pk}" in rejected
    assert {"deny": "was denied: Not today", "cancel": "was cancelled", "time out": "timed out"}[
        closing
    ] in rejected
    assert AuditEvent.objects.filter(action="deployment_gate.rejected").count() == 1


def test_revoking_a_grant_that_did_not_cover_a_deployment_rejects_it(app):
    access_request = active_request(
        "dave", workflow_ref_pattern="acme/api/.github/workflows/deploy.yml@*"
    )
    deliver(app, payload(app))
    with _on_commit():
        grant_revoke(grant=access_request.grant, user=access_request.requester)
    assert reviews(app) == [(7001, None), (7001, "rejected")]
    assert "was revoked" in app.callbacks[-1].comment


def test_the_sweep_rejects_a_deployment_whose_closing_message_was_lost(app):
    policy, _, approvers = approver_setup()
    pending = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    deliver(app, payload(app))
    access_request_deny(access_request=pending, approver=approvers["alice"], comment="No")
    # (the denial's after-commit message never ran: no capture around it)
    with _on_commit():
        assert gates.deployment_gates_sweep()["decided"] == 1
    assert reviews(app) == [(7001, None), (7001, "rejected")]


def test_another_open_request_keeps_the_deployment_waiting_when_one_is_denied(app):
    policy, _, approvers = approver_setup()
    dave = UserFactory(username="dave")
    first = AccessRequestFactory(requester=dave, policy=policy)
    second = AccessRequestFactory(requester=dave, policy=policy)
    deliver(app, payload(app))
    with _on_commit():
        access_request_deny(access_request=first, approver=approvers["alice"], comment="dup")
    assert reviews(app) == [(7001, None)]
    assert DeploymentGate.objects.get().state == "pending"
    assert second.status == AccessRequest.Status.PENDING


def test_a_deployment_after_a_denial_waits_for_a_new_request(app):
    policy, _, approvers = approver_setup()
    denied = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    access_request_deny(access_request=denied, approver=approvers["alice"], comment="No")
    deliver(app, payload(app))
    with _on_commit():
        gates.deployment_gates_sweep()
    assert DeploymentGate.objects.get().state == "pending"
    assert reviews(app) == [(7001, None)]


# -- whose deployment: the sender's GitHub id, as the check matches the actor ---------------


def test_the_gate_keeps_the_senders_github_id(app):
    deliver(app, payload(app))
    gate = DeploymentGate.objects.get()
    assert gate.sender_id == app.state.users["dave"].id
    requested = AuditEvent.objects.get(action="deployment_gate.requested")
    assert requested.detail["sender_id"] == gate.sender_id


def test_a_gate_of_the_new_owner_of_a_login_is_not_approved_by_the_old_owners_grant(app):
    # The portal's dave signed in with GitHub account 999001. The login "dave" now belongs
    # to another GitHub account (the local GitHub's dave, another id): a deployment they
    # trigger must not pass on the first dave's grant, as the check refuses it
    # (grants/check/answer.py, other_github_account).
    signed_in_with_github("dave", 999001)
    assert app.state.users["dave"].id != 999001
    active_request("dave")  # the first dave's own grant, for any of their runs
    deliver(app, payload(app, run_id=7001, login="dave"))
    assert reviews(app) != [(7001, "approved")]
    assert DeploymentGate.objects.get(run_id=7001).state != "approved"


def test_the_old_owners_grant_becoming_active_leaves_the_new_owners_gate_waiting(app):
    signed_in_with_github("dave", 999001)
    deliver(app, payload(app, run_id=7001))
    access_request = active_request("dave")  # as if it had just become active
    assert gates.deployment_gates_wait_on(request_id=access_request.pk) is False
    with _on_commit():
        assert gates.deployment_gates_follow_request(request_id=access_request.pk) == 0
        assert gates.deployment_gates_sweep()["decided"] == 0
    assert DeploymentGate.objects.get().state == "pending"
    assert reviews(app) == [(7001, None)]


def test_the_old_owners_request_is_neither_linked_nor_rejecting_the_new_owners_gate(app):
    policy, _, approvers = approver_setup()
    old_owner = signed_in_with_github("dave", 999001)
    pending = AccessRequestFactory(requester=old_owner, policy=policy)
    deliver(app, payload(app))
    comment = app.callbacks[0].comment
    assert f"/requests/{pending.pk}/" not in comment
    assert "dave holds no active Airlock grant" in comment
    with _on_commit():
        access_request_deny(access_request=pending, approver=approvers["alice"], comment="No")
        gates.deployment_gates_sweep()
    assert DeploymentGate.objects.get().state == "pending"
    assert reviews(app) == [(7001, None)]


def test_a_renamed_login_is_approved_by_its_accounts_grant_becoming_active(app):
    renamed = app.add_user("dave-renamed")  # the portal still calls them dave
    signed_in_with_github("dave", renamed.id)
    deliver(app, payload(app, run_id=7001, login="dave-renamed"))
    access_request = active_request("dave")
    with _on_commit():
        assert gates.deployment_gates_follow_request(request_id=access_request.pk) == 1
    assert reviews(app) == [(7001, None), (7001, "approved")]
    assert DeploymentGate.objects.get().access_request == access_request


def test_a_gate_opened_before_sender_ids_were_kept_is_matched_by_login(app):
    signed_in_with_github("dave", app.state.users["dave"].id)
    deliver(app, payload(app))
    DeploymentGate.objects.update(sender_id=None)  # as migration 0007 leaves an old gate
    access_request = active_request("dave")
    with _on_commit():
        assert gates.deployment_gates_sweep()["decided"] == 1
    gate = DeploymentGate.objects.get()
    assert (gate.state, gate.access_request) == ("approved", access_request)


# -- the guarantees: the sweep, GitHub's errors ----------------------------------------------


def test_the_sweep_approves_a_deployment_whose_activation_message_was_lost(app):
    deliver(app, payload(app))
    active_request("dave")  # made active behind the hooks' back, as if the message was lost

    with _on_commit():
        assert gates.deployment_gates_sweep()["decided"] == 1
    assert reviews(app) == [(7001, None), (7001, "approved")]


def test_a_transient_github_error_is_retried_until_the_approval_arrives(app):
    active_request("dave")
    app.faults.add(
        "POST", "/repos/*/*/actions/runs/*/deployment_protection_rule", status=502, times=None
    )
    deliver(app, payload(app))

    gate = DeploymentGate.objects.get()
    assert gate.state == "approved" and gate.posted_at is None
    assert gate.post_attempts == 1 and "502" in gate.last_error
    assert gate.next_attempt_at > timezone.now()
    assert gates.deployment_gates_sweep()["posts"] == 0  # not before its backoff ends

    app.faults.clear()
    DeploymentGate.objects.filter(pk=gate.pk).update(next_attempt_at=timezone.now())
    gates.deployment_gates_sweep()

    gate.refresh_from_db()
    assert gate.posted_at is not None and gate.last_error == ""
    assert reviews(app) == [(7001, "approved")]


def test_a_permanent_refusal_is_recorded_audited_and_not_retried(app):
    active_request("dave")
    app.faults.add(
        "POST",
        "/repos/*/*/actions/runs/*/deployment_protection_rule",
        status=422,
        body={"message": "No pending deployment protection rule for this run"},
        times=None,
    )
    deliver(app, payload(app))

    gate = DeploymentGate.objects.get()
    assert gate.gave_up_at is not None
    assert "No pending deployment protection rule" in gate.last_error
    failed = AuditEvent.objects.get(action="deployment_gate.post_failed")
    assert "No pending deployment protection rule" in failed.reason
    app.faults.clear()
    assert gates.deployment_gates_sweep()["posts"] == 0


def test_a_gate_another_worker_is_posting_is_left_to_it(app):
    active_request("dave")
    celery_app.conf.task_always_eager = False  # post by hand below
    deliver(app, payload(app))
    gate = DeploymentGate.objects.get()
    DeploymentGate.objects.filter(pk=gate.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=1)
    )
    assert gates.deployment_gate_post(gate_id=gate.pk) == "busy"
    assert app.callbacks == []
    DeploymentGate.objects.filter(pk=gate.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)  # that worker died
    )
    assert gates.deployment_gate_post(gate_id=gate.pk) == "posted"
    assert gates.deployment_gate_post(gate_id=gate.pk) == "nothing to post"
    assert reviews(app) == [(7001, "approved")]


@pytest.mark.django_db(transaction=True)
def test_two_workers_posting_the_same_gate_at_once_post_once(app, on_postgres):
    active_request("dave")
    celery_app.conf.task_always_eager = False  # post by hand below, from two threads
    deliver(app, payload(app))
    gate = DeploymentGate.objects.get()
    # Slow, but within the client's timeout (1 s in these tests), so one POST is made.
    app.faults.timeout("POST", "/repos/*/*/actions/runs/*/deployment_protection_rule", delay=0.5)
    outcomes = at_once(lambda: gates.deployment_gate_post(gate_id=gate.pk))
    assert sorted(outcomes) == ["busy", "posted"]
    assert reviews(app) == [(7001, "approved")]


@pytest.mark.django_db(transaction=True)
def test_the_same_delivery_twice_at_once_opens_one_gate(app, on_postgres):
    active_request("dave")
    body = payload(app)

    def post():
        raw, headers = app.webhook_delivery(
            "deployment_protection_rule", body, SECRET, "same-delivery"
        )
        return post_raw(raw, headers).status_code

    assert sorted(at_once(post)) == [200, 202]
    assert DeploymentGate.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_event_under_two_delivery_ids_at_once_is_acted_on_once(app, on_postgres):
    active_request("dave")
    body = payload(app)

    def post():
        raw, headers = app.webhook_delivery("deployment_protection_rule", body, SECRET)
        return post_raw(raw, headers).status_code

    assert sorted(at_once(post)) == [200, 202]
    assert DeploymentGate.objects.count() == 1
    assert reviews(app) == [(7001, "approved")]
