"""What people do in the browser, page by page: sign in with GitHub (the local GitHub's
sign-in form picks who), file a request, decide in the admin. Each step asserts what the
person sees before going on, and takes a screenshot."""

import re

from playwright.sync_api import Page, expect

REQUEST_URL = re.compile(r"/requests/(\d+)/$")


def github_sign_in(page: Page, screens, *, github, login: str) -> None:
    """From an Airlock sign-in page: "Sign in with GitHub", then, on the local GitHub's
    authorize page, sign in there as `login`. GitHub sends the browser back to Airlock."""
    page.get_by_role("button", name="Sign in with GitHub").click()
    page.wait_for_url(f"{github.base_url}/login/oauth/authorize**")
    page.get_by_label("Sign in to local GitHub as:").fill(login)
    screens(page, f"{login}-on-github")
    page.get_by_role("button", name="Authorize").click()


def requester_signs_in(page: Page, screens, *, portal, github, login: str) -> None:
    page.goto(f"{portal.url}/requests/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/requests/$"))
    screens(page, f"{login}-sign-in")
    github_sign_in(page, screens, github=github, login=login)
    page.wait_for_url(f"{portal.url}/requests/")
    expect(page.locator(".who")).to_contain_text(f"Signed in as {login}")
    screens(page, f"{login}-my-requests")


def fill_request_form(page: Page, screens, *, duration_minutes: int, reason: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New request").click()
    page.get_by_label("Repository", exact=True).fill("acme/api")
    page.get_by_label("Environment", exact=True).fill("production")
    page.get_by_label("Access kind", exact=True).select_option("reviewer")
    page.get_by_role("button", name="Check policy").click()
    expect(page.locator(".policy-panel")).to_contain_text("Policy production covers")
    page.get_by_label("Reason", exact=True).fill(reason)
    page.get_by_label("Duration (minutes)", exact=True).fill(str(duration_minutes))
    screens(page, "request-form")
    page.get_by_role("button", name="Send request").click()


def file_request(page: Page, screens, *, duration_minutes: int, reason: str) -> int:
    """Files the request through the form; returns its number from the page it lands on."""
    fill_request_form(page, screens, duration_minutes=duration_minutes, reason=reason)
    page.wait_for_url(REQUEST_URL)
    pk = int(REQUEST_URL.search(page.url).group(1))
    expect(page.locator(".messages")).to_contain_text(f"Request #{pk} is filed")
    expect(page.locator("h1 .badge")).to_have_text("Pending")
    screens(page, "request-filed")
    return pk


def approver_signs_in_to_admin(page: Page, screens, *, portal, github, login: str) -> None:
    page.goto(f"{portal.url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    screens(page, f"{login}-admin-sign-in")
    github_sign_in(page, screens, github=github, login=login)
    page.wait_for_url(f"{portal.url}/admin/")
    expect(page.locator("#user-tools")).to_contain_text(login)


def staff_signs_in_to_admin(page: Page, screens, *, portal, login: str, password: str) -> None:
    """A platform admin's local account: the admin's password form."""
    page.goto(f"{portal.url}/admin/")
    page.get_by_label("Username").fill(login)
    page.get_by_label("Password").fill(password)
    screens(page, f"{login}-admin-sign-in")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{portal.url}/admin/")
    expect(page.locator("#user-tools")).to_contain_text(login)


def open_request_list(page: Page, portal) -> None:
    # The app and its model are both called "Access requests"; the model's link is the list.
    page.locator("a[href$='/admin/requests_app/accessrequest/']").first.click()
    page.wait_for_url(f"{portal.url}/admin/requests_app/accessrequest/**")


def approve_on_the_request_page(page: Page, screens, *, portal, pk: int, login: str) -> None:
    """From the list "awaiting my decision", open the request, "Approve…", comment, send."""
    open_request_list(page, portal)
    expect(page.locator("#changelist-filter")).to_contain_text("Awaiting my decision")
    page.locator(f"#result_list a[href$='/accessrequest/{pk}/change/']").first.click()
    expect(page.locator(".airlock-decision-panel")).to_contain_text(
        "This request awaits your decision."
    )
    screens(page, f"{login}-request-page")
    page.get_by_role("link", name="Approve…").click()
    page.get_by_label("Comment (optional)").fill(f"{login}: fine for the release window")
    screens(page, f"{login}-approve-with-comment")
    page.locator("input[type=submit][value=Approve]").click()


def approve_with_the_list_action(page: Page, screens, *, portal, pk: int, login: str) -> None:
    """Tick the request on the list, run "Approve selected requests…", comment, send."""
    open_request_list(page, portal)
    page.locator(f"#result_list input[name=_selected_action][value='{pk}']").check()
    page.locator("select[name=action]").select_option("approve_selected")
    screens(page, f"{login}-list-action")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("h1")).to_have_text("Approve access request")
    page.get_by_label("Comment (optional)").fill(f"{login}: approved")
    screens(page, f"{login}-approve-with-comment")
    page.locator("input[type=submit][value=Approve]").click()


def admin_message(page: Page):
    return page.locator("ul.messagelist li")
