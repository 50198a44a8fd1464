"""The whole journey, in headless Chromium, on Airlock as it is deployed: gunicorn, a Celery
worker and beat as separate processes (`deploy/start`), PostgreSQL, Redis and the local
GitHub. A requester signs in with GitHub and asks for a one-minute reviewer grant in the
web form; two approvers sign in to the admin with GitHub and approve; the grant appears on
GitHub; a workflow's OIDC token is allowed; at expiry the reviewer is gone and the
requester's page says expired; the audit log verifies. The second test does the same with
the worker killed (SIGKILL) just before the grant ends.

Waits are bounded; a failure shows what was seen and the processes' last log lines. The
figures (how soon after approval the grant was on GitHub, how late the revocation) are
printed; screenshots and logs are in the artifacts folder (see conftest.py).
"""

import time
from datetime import datetime, timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from grants.models import Grant
from requests_app.models import AccessRequest
from tests.browser.conftest import SWEEP_SECONDS
from tests.browser.pages import (
    admin_message,
    approve_on_the_request_page,
    approve_with_the_list_action,
    approver_signs_in_to_admin,
    file_request,
    requester_signs_in,
)
from tests.live_processes import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

REASON = "Release 4.2: approve the production deployment of acme/api"


def file_and_approve_a_one_minute_grant(portal, github, chromium, screens):
    """dave files the request in the portal; alice approves on the request's page, bob
    with the list action. Returns dave's page and the request's number."""
    dave = chromium.new_context().new_page()
    requester_signs_in(dave, screens, portal=portal, github=github, login="dave")
    pk = file_request(dave, screens, duration_minutes=1, reason=REASON)

    alice = chromium.new_context().new_page()
    approver_signs_in_to_admin(alice, screens, portal=portal, github=github, login="alice")
    approve_on_the_request_page(alice, screens, portal=portal, pk=pk, login="alice")
    expect(admin_message(alice)).to_have_text(
        f"Your approval of request #{pk} is recorded (1 of 2); it needs more."
    )
    screens(alice, "alice-approved")
    alice.context.close()

    bob = chromium.new_context().new_page()
    approver_signs_in_to_admin(bob, screens, portal=portal, github=github, login="bob")
    portal.wait_worker_ready()  # so that the time from approval to GitHub means something
    approve_with_the_list_action(bob, screens, portal=portal, pk=pk, login="bob")
    expect(admin_message(bob)).to_have_text(
        f"Request #{pk} is approved (2 of 2); access will be granted."
    )
    screens(bob, "bob-approved")
    bob.context.close()
    return dave, pk


def wait_for_the_grant_on_github(portal, github, pk) -> float:
    """Until dave is a required reviewer and the request active. Returns the seconds from
    the approval (its commit) to the environment PUT that reached the local GitHub."""
    wait_until(
        "dave a required reviewer of acme/api production",
        lambda: "dave" in github.reviewers("acme/api", "production"),
        timeout=30,
        details=lambda: f"{github.environment('acme/api', 'production')}\n{portal.logs()}",
    )
    wait_until(  # GitHub has answered the PUT a moment before the outcome commits
        "the request active",
        lambda: AccessRequest.objects.get(pk=pk).status == AccessRequest.Status.ACTIVE,
        timeout=15,
        details=portal.logs,
    )
    decided = AccessRequest.objects.get(pk=pk).decided_at.timestamp()
    puts = [
        write.at
        for write in github.writes
        if write.method == "PUT" and write.path.endswith("/environments/production")
        and write.at >= decided
    ]
    return puts[0] - decided


def reload_until_status(page, status: str, *, timeout: float, portal) -> None:
    badge = page.locator("h1 .badge")

    def shows() -> bool:
        page.reload()
        return badge.inner_text().strip().lower() == status

    wait_until(
        f"the requester's page showing {status}", shows, timeout=timeout, interval=1,
        details=lambda: f"the page says {badge.inner_text()!r}\n{portal.logs()}",
    )


def grant_check(portal, github) -> dict:
    """GET /api/v1/grants/check as a workflow job in acme/api's production environment
    started by dave, with its Actions OIDC token."""
    token = github.mint_oidc_token(
        {
            "aud": portal.url,
            "repository": "acme/api",
            "environment": "production",
            "actor": "dave",
        }
    )
    answer = requests.get(
        f"{portal.url}/api/v1/grants/check",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def expires_at_of(answer: dict) -> datetime:
    return datetime.fromisoformat(answer["grant"]["expires_at"].replace("Z", "+00:00"))


def assert_audit_log_verifies(portal) -> None:
    verified = portal.manage("verify_audit_log")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Audit log OK" in verified.stdout


def test_a_one_minute_reviewer_grant_goes_from_the_request_form_to_expiry(
    portal_and_engine, acme_production, github, chromium, screens
):
    portal = portal_and_engine
    dave, pk = file_and_approve_a_one_minute_grant(portal, github, chromium, screens)
    applied_in = wait_for_the_grant_on_github(portal, github, pk)

    access_request = AccessRequest.objects.get(pk=pk)
    assert access_request.expires_at == access_request.granted_at + timedelta(minutes=1)
    dave.reload()
    expect(dave.locator("h1 .badge")).to_have_text("Active")
    expect(dave.locator(".grant-state")).to_contain_text("dave on acme/api environment")
    screens(dave, "dave-access-granted")

    answer = grant_check(portal, github)
    assert answer["allowed"] is True, answer
    assert answer["grant"]["request"] == pk
    assert expires_at_of(answer) == access_request.expires_at

    seconds_left = (access_request.expires_at - timezone.now()).total_seconds()
    wait_until(
        "dave no longer a reviewer after the grant's end",
        lambda: "dave" not in github.reviewers("acme/api", "production"),
        timeout=seconds_left + 30,
        details=lambda: f"{github.environment('acme/api', 'production')}\n{portal.logs()}",
    )
    late = (timezone.now() - access_request.expires_at).total_seconds()
    # Only what Airlock added is gone: carol and the wait timer stay.
    assert github.environment("acme/api", "production") == acme_production

    reload_until_status(dave, "expired", timeout=15, portal=portal)
    screens(dave, "dave-access-expired")
    assert grant_check(portal, github)["allowed"] is False
    assert Grant.objects.get(access_request_id=pk).state == Grant.State.REVOKED
    assert_audit_log_verifies(portal)
    print(
        f"on GitHub {applied_in:.2f}s after the second approval; "
        f"removed {late:.2f}s after expiry"
    )


def test_the_journey_survives_kill_9_of_the_worker_while_the_grant_is_due_to_end(
    portal_and_engine, acme_production, github, chromium, screens
):
    portal = portal_and_engine
    dave, pk = file_and_approve_a_one_minute_grant(portal, github, chromium, screens)
    applied_in = wait_for_the_grant_on_github(portal, github, pk)
    grant = Grant.objects.get(access_request_id=pk)
    expires_at = grant.expires_at

    # The sweep hands the revocation to the worker as a message due at expiry, at most two
    # sweep intervals ahead; once it has, the worker holds it, unacknowledged, and dies
    # with it.
    wait_until(
        "the sweep scheduling the revocation",
        lambda: Grant.objects.get(pk=grant.pk).reconcile_scheduled_for == expires_at,
        timeout=(expires_at - timezone.now()).total_seconds() + 5,
        details=portal.logs,
    )
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds() - 2))
    portal.worker.kill()
    killed_before = (expires_at - timezone.now()).total_seconds()
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds() + 1.5))

    # Due, and nobody to do it; the check answers from time all the same.
    assert "dave" in github.reviewers("acme/api", "production")
    assert grant_check(portal, github)["allowed"] is False
    dave.reload()
    expect(dave.locator(".grant-state")).to_contain_text("being revoked")
    screens(dave, "dave-worker-killed-access-overdue")

    restarted = time.monotonic()
    portal.start_worker()
    ready = time.monotonic()
    removed = wait_until(
        "dave removed after the worker restarted",
        lambda: "dave" not in github.reviewers("acme/api", "production"),
        # Beat kept sending sweeps while the worker was dead; the first one the new worker
        # takes finds the overdue revocation. One interval, and a little for the call.
        timeout=SWEEP_SECONDS + 10,
        details=lambda: f"{github.environment('acme/api', 'production')}\n{portal.logs()}",
    )
    assert github.environment("acme/api", "production") == acme_production

    reload_until_status(dave, "expired", timeout=15, portal=portal)
    screens(dave, "dave-access-expired-after-restart")
    assert_audit_log_verifies(portal)
    print(
        f"on GitHub {applied_in:.2f}s after the second approval; "
        f"worker killed {killed_before:.2f}s before expiry; restarted worker ready in "
        f"{ready - restarted:.2f}s; dave removed {removed - ready:.2f}s after it was ready "
        f"({removed - restarted:.2f}s after the restart)"
    )
