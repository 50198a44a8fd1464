"""Refusals as people see them in the browser, on Airlock as deployed (gunicorn with DEBUG
off; no worker is needed, since nothing is granted): the request form keeps what was typed
and says what is wrong, and the admin says why an action is refused."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from requests_app.models import AccessRequest
from requests_app.services import access_request_create
from tests.browser.pages import (
    admin_message,
    fill_request_form,
    open_request_list,
    requester_signs_in,
    staff_signs_in_to_admin,
)

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

REASON = "Release 4.2: approve the production deployment of acme/api"


def test_a_duration_above_the_policys_maximum_shows_the_form_error(
    portal, acme_production, github, chromium, screens
):
    page = chromium.new_context().new_page()
    requester_signs_in(page, screens, portal=portal, github=github, login="dave")

    fill_request_form(page, screens, duration_minutes=300, reason=REASON)

    expect(page.locator("#form-errors")).to_contain_text("The request was not filed")
    duration = page.locator(".field-has-error")
    expect(duration).to_have_count(1)
    expect(duration).to_contain_text("At most 240 minutes under policy 'production'.")
    # Nothing typed is lost: correct the one field and send again.
    expect(page.get_by_label("Duration (minutes)", exact=True)).to_have_value("300")
    expect(page.get_by_label("Reason", exact=True)).to_have_value(REASON)
    expect(page.get_by_label("Repository", exact=True)).to_have_value("acme/api")
    screens(page, "duration-refused")
    assert not AccessRequest.objects.exists()


def test_a_platform_admin_outside_the_approver_groups_is_refused_approval_with_a_message(
    portal, acme_production, github, chromium, screens
):
    """paula may enter the admin and see every request (staff, superuser), but the request
    is routed to prod-approvers, and she is not in it: superusers do not decide either."""
    access_request = access_request_create(
        requester=get_user_model().objects.create_user("dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason=REASON,
        duration_minutes=60,
    )
    pk = access_request.pk
    # The README's way to make the first admin (the test process's password hasher is
    # not one production accepts).
    created = portal.manage(
        "createsuperuser", "--no-input", "--username", "paula", "--email", "paula@example.com",
        DJANGO_SUPERUSER_PASSWORD="paula-platform-admin-1",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    page = chromium.new_context().new_page()
    staff_signs_in_to_admin(
        page, screens, portal=portal, login="paula", password="paula-platform-admin-1"
    )

    open_request_list(page, portal)
    page.locator(f"#result_list input[name=_selected_action][value='{pk}']").check()
    page.locator("select[name=action]").select_option("approve_selected")
    page.get_by_role("button", name="Go").click()
    refusal = (
        "Only members of the approver groups of policy 'production' (prod-approvers) can "
        "decide on this request."
    )
    expect(page.locator(".airlock-refusal")).to_have_text(f"You cannot approve this one: {refusal}")
    screens(page, "paula-told-before-sending")
    page.locator("input[type=submit][value=Approve]").click()

    expect(admin_message(page)).to_have_text(f"Request #{pk}: {refusal}")
    expect(admin_message(page)).to_have_class("error")
    screens(page, "paula-refused")
    page.locator(f"#result_list a[href$='/accessrequest/{pk}/change/']").first.click()
    expect(page.locator(".airlock-decision-panel")).to_contain_text(
        f"You cannot decide on this request. {refusal}"
    )
    screens(page, "paula-request-page")
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING
    assert not access_request.approvals.exists()
