"""The engine wired up: an approval applies the grant through the task after the commit,
GitHub App credentials, dry-run, `manage.py reconcile`, the admin and the grant's state
on the request pages."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from grants import tasks
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_reconcile
from requests_app.models import AccessRequest
from requests_app.services import access_request_approve, access_request_create
from requests_app.signals import access_request_approved
from tests.github_fake.keys import new_app_private_key_pem
from tests.grants.factories import approved_request, expire_now, reviewer_grant
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db


def test_an_approval_applies_the_grant_on_github_after_the_commit(
    gh, eager_celery, django_capture_on_commit_callbacks
):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production", reviewers=[("Team", "acme/sre")])
    _, _, approvers = approver_setup()
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        duration_minutes=30,
    )
    access_request_approve(access_request=access_request, approver=approvers["alice"])
    # What GitHub looked like, and who had been told, when the approval was announced:
    # connected after grants' receiver, so it sees what the engine did.
    announced = []

    def on_approved(sender, *, request_id, **kwargs):
        announced.append(
            (request_id, gh.reviewers("acme/api", "production"), len(mail.outbox))
        )

    access_request_approved.connect(on_approved)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            access_request_approve(access_request=access_request, approver=approvers["bob"])
            assert gh.reviewers("acme/api", "production") == ["acme/sre"]  # not before commit
            assert announced == []  # announced after the commit only
    finally:
        access_request_approved.disconnect(on_approved)

    # First the grant is applied; the other callbacks tell people (and follow up on GitHub).
    assert announced == [(access_request.pk, ["acme/sre", "dave"], 0)]
    assert mail.outbox  # the approval's message followed
    assert gh.reviewers("acme/api", "production") == ["acme/sre", "dave"]
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.ACTIVE
    assert access_request.expires_at == access_request.granted_at + timedelta(minutes=30)


def test_the_apply_task_is_idempotent_when_delivered_twice(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    access_request = approved_request("alice")

    tasks.apply_request.apply(args=[access_request.pk])
    tasks.apply_request.apply(args=[access_request.pk])

    assert Grant.objects.count() == 1
    assert gh.reviewers("acme/api", "production") == ["alice"]
    assert len([r for r in gh.writes if "/environments/" in r.path]) == 1


def test_a_broker_outage_after_the_commit_does_not_break_the_approval(monkeypatch, caplog):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.apply_request, "apply_async", broker_down)

    tasks.enqueue_grant_for_request(123)  # logged; the sweep applies it later

    assert "the sweep will" in caplog.text


def test_grants_work_with_github_app_credentials(gh, settings):
    key = new_app_private_key_pem()
    installation = gh.register_app(4242, key, account="acme")
    settings.GITHUB_TOKEN = ""
    settings.GITHUB_APP_ID = "4242"
    settings.GITHUB_APP_PRIVATE_KEY = key
    settings.GITHUB_APP_INSTALLATION_ID = str(installation)
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)
    reconcile_environment(expire_now(grant).target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    minted = [r for r in gh.requests if r.path.endswith("/access_tokens")]
    assert len(minted) == 1  # the installation token is reused
    put = next(r for r in gh.requests if r.method == "PUT")
    assert put.headers["authorization"].startswith("token ghs_")


def test_in_dry_run_grants_become_active_and_the_would_be_writes_are_audited(github, settings):
    settings.AIRLOCK_DRY_RUN = True
    access_request = approved_request("alice")

    tasks.apply_request.apply(args=[access_request.pk])

    grant = Grant.objects.get(access_request=access_request)
    assert grant.state == Grant.State.APPLIED and grant.target.dry_run
    write = AuditEvent.objects.get(action="github.environment_updated")
    assert write.detail["dry_run"] is True
    assert write.detail["added"] == ["alice"]

    reconcile_environment(expire_now(grant).target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    removal = AuditEvent.objects.filter(action="github.environment_updated").last()
    assert removal.detail["removed"] == ["alice"]
    assert github.requests == []  # dry-run never calls GitHub


def test_manage_py_reconcile_reconciles_every_target_now(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    approved_request("alice")  # its message was lost: no grant yet

    out = StringIO()
    call_command("reconcile", stdout=out)

    assert "acme/api:production: 1 applied" in out.getvalue()
    assert gh.reviewers("acme/api", "production") == ["alice"]


def test_manage_py_reconcile_exits_non_zero_when_a_target_reports_an_error(gh):
    # Scripts and cron jobs see failure by the exit status, not by reading the output.
    from django.core.management import CommandError

    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    approved_request("alice")
    # GitHub keeps answering 502 for longer than the client retries.
    gh.faults.add("GET", "/repos/acme/api/environments/production", status=502, times=100)

    out = StringIO()
    with pytest.raises(CommandError, match="1 target"):
        call_command("reconcile", stdout=out)

    assert "acme/api:production" in out.getvalue() and "errors:" in out.getvalue()


def test_the_admin_shows_overdue_revocations_and_can_retry_and_revoke(gh, client):
    gh.add_user("alice")
    gh.add_user("carol")
    gh.add_environment("acme/api", "production")
    overdue, active = reviewer_grant("alice"), reviewer_grant("carol")
    grant_reconcile(grant=overdue)
    due = timezone.now() - timedelta(minutes=3)
    Grant.objects.filter(pk=overdue.pk).update(
        expires_at=due, revocation_overdue_since=due, last_error="GitHub 502 Bad Gateway"
    )
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    changelist = reverse("admin:grants_grant_changelist")

    page = client.get(changelist + "?overdue=yes").content.decode()

    assert "revocation overdue since" in page
    # A request number, not an HTML character reference such as &#10006;.
    assert re.search(rf"(?<!&)#{overdue.access_request_id}\b", page)
    assert not re.search(rf"(?<!&)#{active.access_request_id}\b", page)

    client.post(changelist, {"action": "retry_now", "_selected_action": [overdue.pk]})
    client.post(changelist, {"action": "revoke_now", "_selected_action": [active.pk]})

    assert AuditEvent.objects.filter(action="grant.retry_requested", actor_id=admin.pk).exists()
    active.refresh_from_db()
    assert active.revoke_requested_by == admin
    assert AccessRequest.objects.get(pk=active.access_request_id).status == "revoked"
    detail = client.get(reverse("admin:grants_grant_change", args=[overdue.pk]))
    assert detail.status_code == 200


def test_the_grant_state_fragment_says_what_github_looks_like(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    access_request = approved_request("alice")

    def render():
        access_request.refresh_from_db()
        return " ".join(
            render_to_string(
                "grants/_grant_state.html", {"access_request": access_request}
            ).split()
        )

    assert "about to apply it on GitHub" in render()
    tasks.apply_request.apply(args=[access_request.pk])
    assert "applied" in render() and "Until" in render()
    grant = Grant.objects.get()
    Grant.objects.filter(pk=grant.pk).update(
        revocation_overdue_since=timezone.now(), last_error="GitHub 503 down"
    )
    assert "overdue since" in render() and "GitHub 503 down" in render()
    reconcile_environment(expire_now(grant).target_id)
    assert "Removed from GitHub" in render()

    failed = approved_request("nobody-known")
    tasks.apply_request.apply(args=[failed.pk])
    text = " ".join(
        render_to_string("grants/_grant_state.html", {"access_request": failed}).split()
    )
    assert "failed" in text and "no user named nobody-known" in text
