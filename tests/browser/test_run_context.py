"""A request a workflow filed, as an approver and its requester see it in the browser, on
Airlock as deployed (DEBUG off, static files from WhiteNoise): the run block on the admin's
request page, on the decision page and on the portal's request page, styled by Airlock's
own stylesheets and without one Content-Security-Policy violation."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import expect

from requests_app.models import AccessPolicy
from tests.browser.pages import approver_signs_in_to_admin, requester_signs_in
from tests.browser.test_content_security_policy import Violations
from tests.requests_app.factories import AccessRequestFactory

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_approver_and_requester_see_the_run_a_request_is_bound_to(
    portal, acme_production, github, chromium, screens
):
    # dave first signs in with GitHub, which makes his account; then his workflow files.
    requester = chromium.new_context()
    requester_violations = Violations(requester)
    requester_page = requester.new_page()
    requester_signs_in(requester_page, screens, portal=portal, github=github, login="dave")
    access_request = AccessRequestFactory(
        requester=get_user_model().objects.get(username="dave"),
        policy=AccessPolicy.objects.get(name="production"),
        reason="The deploy job of run 1234 asks for the production reviewer",
        run_id=1234,
        run_attempt=1,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main",
        run_sha=SHA,
    )
    run_url = f"{github.base_url}/acme/api/actions/runs/1234"
    commit_url = f"{github.base_url}/acme/api/commit/{SHA}"
    context = chromium.new_context()
    violations = Violations(context)
    page = context.new_page()

    approver_signs_in_to_admin(page, screens, portal=portal, github=github, login="alice")
    page.goto(
        portal.url
        + reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    )
    run = page.locator(".airlock-run")
    expect(run).to_contain_text("Filed by a workflow, for its run.")
    expect(run).to_contain_text(
        "Airlock's check and deployment protection rule answer only this run, and the access "
        "ends when the run completes or releases it."
    )
    expect(run).to_contain_text("On GitHub the access itself is the environment's")
    expect(run).to_contain_text(".github/workflows/deploy.yml")
    expect(run).to_contain_text("refs/heads/main")
    expect(run.get_by_role("link", name="0123456")).to_have_attribute("href", commit_url)
    expect(run.get_by_role("link", name="Run 1234, attempt 1")).to_have_attribute("href", run_url)
    # Styled by airlock-admin.css, as nothing inline may be.
    expect(run).to_have_css("border-left-width", "4px")
    screens(page, "alice-run-bound-request")
    assert violations.of(page) == []

    page.get_by_role("link", name="Approve…").click()
    expect(page.locator("h1")).to_have_text("Approve access request")
    expect(page.locator(".airlock-decision-table .airlock-run")).to_contain_text(
        "Run 1234, attempt 1"
    )
    screens(page, "alice-approve-run-bound")
    assert violations.of(page) == []

    page = requester_page
    page.goto(f"{portal.url}/requests/")
    expect(page.locator(".airlock-workflow")).to_have_text("workflow")
    page.goto(f"{portal.url}/requests/{access_request.pk}/")
    run = page.locator(".airlock-run")
    expect(run.get_by_role("link", name="Run 1234, attempt 1")).to_have_attribute("href", run_url)
    expect(run).to_have_css("border-left-width", "4px")  # airlock.css
    screens(page, "dave-run-bound-request")
    assert requester_violations.of(page) == []
