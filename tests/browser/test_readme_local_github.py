"""The README's "Watch a grant on a local GitHub", done as it says, in headless Chromium: in a
fresh copy of the project, `make github` in one terminal and `make run` with the README's
variables in another (nothing else in either environment); then dave signs in with GitHub,
picking dave on the local GitHub's page, and asks for reviewer access to acme/api
production; alice (with GitHub) and bob (with the demo password) approve in the admin; the
README's `curl` shows dave among the environment's reviewers beside erin and team acme/sre,
with the wait timer untouched, and without him once the grant has expired.

The grant lasts one minute instead of the README's five. The ports are free ones instead of
9100 and 8000 (this machine may have something there); otherwise the README's commands
and variables are used as written, read from the README itself.
"""

import re
from types import SimpleNamespace

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import (
    admin_message,
    approve_on_the_request_page,
    approve_with_the_list_action,
    approver_signs_in_to_admin,
    file_request,
    requester_signs_in,
    staff_signs_in_to_admin,
)
from tests.live_processes import free_port, wait_until
from tests.newcomer import (
    Terminal,
    command_lines,
    fresh_clone,
    make_run,
    newcomer_env,
    readme_section,
    second_terminal,
    shell_blocks,
)

pytestmark = [pytest.mark.browser, pytest.mark.live]

README_GITHUB = "127.0.0.1:9100"
REASON = "Trying Airlock on the local GitHub, as the README says"


def readme_flow() -> tuple[str, dict[str, str]]:
    """The section's two commands: `make github`, and `make run` with its variables."""
    (block,) = shell_blocks(readme_section("### Watch a grant on a local GitHub"))
    github, run = [line.split("#")[0].strip() for line in command_lines(block)]
    assert github == "make github"
    assert run.endswith(" make run"), run
    variables = dict(re.findall(r"([A-Z_]+)=(\S+)", run.removesuffix(" make run")))
    assert README_GITHUB in variables["GITHUB_URL"]
    return github, variables


def readme_curl() -> tuple[str, dict[str, str]]:
    """The section's `curl` of the environment: its URL and its header."""
    section = readme_section("### Watch a grant on a local GitHub")
    url, header = re.search(r"`curl -s (\S+) -H '([^']+)'`", section).groups()
    name, value = header.split(": ", 1)
    return url, {name: value}


@pytest.fixture
def local_github_and_portal(tmp_path, artifacts):
    clone = fresh_clone(tmp_path / "clone")
    env = newcomer_env(tmp_path)
    github_command, variables = readme_flow()
    address = f"127.0.0.1:{free_port()}"
    github = Terminal(
        clone, env, artifacts, *github_command.split()[1:],
        f"LOCAL_GITHUB_PORT={address.split(':')[1]}", name="make-github",
    )
    started = [github]
    try:
        github.wait_until_answering(f"http://{address}/rate_limit", timeout=60)
        variables = {name: value.replace(README_GITHUB, address)
                     for name, value in variables.items()}
        portal, url = make_run(clone, {**env, **variables}, artifacts)
        started.append(portal)
        yield SimpleNamespace(
            clone=clone, env=env, url=url, portal=portal, terminals=started,
            github=SimpleNamespace(base_url=f"http://{address}"),
            curl=lambda: _curl(address),
        )
    finally:
        for terminal in reversed(started):
            terminal.stop()


def _curl(address: str) -> dict:
    url, headers = readme_curl()
    answer = requests.get(url.replace(README_GITHUB, address), headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def reviewers(environment: dict) -> list[str]:
    rules = [r for r in environment["protection_rules"] if r["type"] == "required_reviewers"]
    return [
        reviewer["reviewer"].get("login") or reviewer["reviewer"]["slug"]
        for rule in rules
        for reviewer in rule["reviewers"]
    ]


def wait_timer(environment: dict) -> int | None:
    rules = [r for r in environment["protection_rules"] if r["type"] == "wait_timer"]
    return rules[0]["wait_timer"] if rules else None


def test_the_readme_local_github_flow_from_sign_in_to_expiry(
    local_github_and_portal, chromium, screens
):
    run = local_github_and_portal
    portal = SimpleNamespace(url=run.url)
    logs = lambda: "\n".join(terminal.tail() for terminal in run.terminals)  # noqa: E731
    before = run.curl()
    assert reviewers(before) == ["erin", "sre"]

    dave = chromium.new_context().new_page()
    requester_signs_in(dave, screens, portal=portal, github=run.github, login="dave")
    pk = file_request(dave, screens, duration_minutes=1, reason=REASON)

    alice = chromium.new_context().new_page()
    approver_signs_in_to_admin(alice, screens, portal=portal, github=run.github, login="alice")
    approve_on_the_request_page(alice, screens, portal=portal, pk=pk, login="alice")
    expect(admin_message(alice)).to_have_text(
        f"Your approval of request #{pk} is recorded (1 of 2); it needs more."
    )
    alice.context.close()

    bob = chromium.new_context().new_page()
    staff_signs_in_to_admin(bob, screens, portal=portal, login="bob", password="airlock-demo")
    approve_with_the_list_action(bob, screens, portal=portal, pk=pk, login="bob")
    expect(admin_message(bob)).to_have_text(
        f"Request #{pk} is approved (2 of 2); access will be granted."
    )
    bob.context.close()

    wait_until(
        "dave among acme/api production's reviewers", lambda: "dave" in reviewers(run.curl()),
        timeout=60, interval=1, details=lambda: f"{run.curl()}\n{logs()}",
    )
    during = run.curl()
    assert reviewers(during) == ["erin", "sre", "dave"]
    assert wait_timer(during) == wait_timer(before) == 5
    dave.reload()
    expect(dave.locator("h1 .badge")).to_have_text("Active")
    screens(dave, "dave-active")

    # One minute, then at most a sweep interval (15 s) and the call.
    wait_until(
        "dave gone from the reviewers at expiry", lambda: "dave" not in reviewers(run.curl()),
        timeout=60 + 15 + 45, interval=1, details=lambda: f"{run.curl()}\n{logs()}",
    )
    assert run.curl()["protection_rules"] == before["protection_rules"]

    def page_says_expired() -> bool:
        dave.reload()
        return dave.locator("h1 .badge").inner_text().strip().lower() == "expired"

    wait_until("dave's page saying expired", page_says_expired, timeout=20, interval=1,
               details=logs)
    screens(dave, "dave-expired")
    verified = second_terminal(run.clone, run.env, ".venv/bin/python manage.py verify_audit_log")
    assert verified.returncode == 0 and "Audit log OK" in verified.stdout, verified.stderr
