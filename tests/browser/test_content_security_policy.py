"""The Content-Security-Policy as a browser applies it, on Airlock as deployed (DEBUG off):
the sign-in page, the admin and the API docs work under it without one violation."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import open_request_list, staff_signs_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Each page records what the policy blocked, from before its own scripts run.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


class Violations:
    """securitypolicyviolation events of every page, and the console's CSP errors."""

    def __init__(self, context):
        self.console: list[str] = []
        context.add_init_script(RECORD_VIOLATIONS)
        context.on("console", self._console)

    def _console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def of(self, page) -> list[str]:
        return page.evaluate("window.cspViolations") + self.console


def test_the_pages_people_use_raise_no_csp_violation(portal, chromium, screens):
    created = portal.manage(
        "createsuperuser", "--no-input", "--username", "paula", "--email", "paula@example.com",
        DJANGO_SUPERUSER_PASSWORD="paula-platform-admin-1",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    context = chromium.new_context()
    violations = Violations(context)
    page = context.new_page()

    response = page.goto(f"{portal.url}/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
    screens(page, "sign-in")
    assert violations.of(page) == []

    staff_signs_in_to_admin(
        page, screens, portal=portal, login="paula", password="paula-platform-admin-1"
    )
    assert violations.of(page) == []
    open_request_list(page, portal)
    expect(page.locator("#changelist")).to_be_visible()
    screens(page, "admin-changelist")
    assert violations.of(page) == []

    page.goto(f"{portal.url}/api/docs/")
    # Swagger UI renders the schema only if its scripts ran and could fetch it.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Airlock API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    page.locator(".opblock-summary").first.click()  # opens an operation: more rendering
    expect(page.locator(".opblock-body").first).to_be_visible()
    screens(page, "api-docs")
    assert violations.of(page) == []

    # The listener hears a violation when there is one: an inline script, which the policy
    # refuses, injected into the page.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = 1'; document.body.append(s); }"
    )
    page.wait_for_function("window.cspViolations.length > 0")
    assert any(re.match(r"script-src", v) for v in violations.of(page))
    assert page.evaluate("window.ran") is None
