"""The README's quick start and "Policies as code", done as a newcomer does them: in a fresh
copy of the project, `make run` in one terminal, then every command of those sections'
shell blocks, exactly as written, in a second terminal whose environment has nothing
Airlock reads (no DEBUG, no SECRET_KEY). Each command's outcome is checked, and so is that
it worked on the running portal's data.

The quick start's "Watch a grant on a local GitHub" is the browser leg's
(tests/browser/test_readme_local_github.py).
"""

import json
import re

import pytest
import requests

from tests.newcomer import (
    command_lines,
    fresh_clone,
    make_run,
    newcomer_env,
    readme_section,
    second_terminal,
    shell_blocks,
)

SECTIONS = ("## Quick start", "## Policies as code")


def readme_commands() -> list[str]:
    lines = [
        line
        for heading in SECTIONS
        for block in shell_blocks(readme_section(heading))
        for line in command_lines(block)
    ]
    assert lines, "no shell blocks found in the README's sections"
    return lines


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A fresh copy of the project with `make run` going in a first terminal, and the
    environment of the second."""
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    home = tmp_path_factory.mktemp("home")
    env = newcomer_env(home)
    terminal, url = make_run(clone, env, home)
    try:
        yield clone, env, url, terminal
    finally:
        terminal.stop()


def outcome(done) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def check_api_token(done, portal_url):
    token = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"alk_\S+", token), outcome(done)
    # The token works on the portal `make run` serves: one database, one set of settings.
    answer = requests.get(
        f"{portal_url}/api/v1/requests/", headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def check_audit_log_verified(done, portal_url):
    assert re.search(r"^Audit log OK: [1-9]\d* events", done.stdout, re.M), outcome(done)


def check_audit_log_exported(done, portal_url):
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events, outcome(done)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert all(event["hash"] for event in events)
    # Including the token the second terminal made a moment ago.
    assert "api_token.created" in {event["action"] for event in events}


def check_reconciled(done, portal_url):
    assert done.stdout.strip(), outcome(done)


def check_policies_copied(done, portal_url):
    pass  # its outcome is the next command's file


def check_policies_applied(done, portal_url):
    # `make run` loaded the same file, from the same database: nothing to change.
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"policies\.yml: 0 created, 0 changed, [1-9]\d* unchanged", summary), (
        outcome(done)
    )


CHECKS = {
    r"\.venv/bin/python manage\.py createapitoken dave": check_api_token,
    r"\.venv/bin/python manage\.py verify_audit_log": check_audit_log_verified,
    r"\.venv/bin/python manage\.py export_audit_log": check_audit_log_exported,
    r"\.venv/bin/python manage\.py reconcile": check_reconciled,
    r"cp demo/policies\.yml policies\.yml": check_policies_copied,
    r"\.venv/bin/python manage\.py apply_policies policies\.yml": check_policies_applied,
}
FIRST_TERMINAL = {
    "make run": "the newcomer fixture runs it",
    "make test": "it is what runs this test",
}


def test_every_readme_command_has_a_check_here():
    commands = [line.split("#")[0].strip() for line in readme_commands()]
    unchecked = [
        command for command in commands
        if command not in FIRST_TERMINAL
        and not any(re.fullmatch(pattern, command) for pattern in CHECKS)
    ]
    assert not unchecked, f"README commands this test does not know how to check: {unchecked}"
    assert {"make run", "make test"} <= set(commands)


def test_the_readme_commands_work_as_written_beside_make_run(newcomer):
    clone, env, url, terminal = newcomer
    assert "DEBUG" not in env and "SECRET_KEY" not in env
    ran = []
    for line in readme_commands():
        command = line.split("#")[0].strip()
        if command in FIRST_TERMINAL:
            continue
        check = next(c for p, c in CHECKS.items() if re.fullmatch(p, command))
        done = second_terminal(clone, env, line)
        assert done.returncode == 0, f"{line}\n{outcome(done)}\n{terminal.tail()}"
        check(done, url)
        ran.append(command)
    assert len(ran) == len(CHECKS)
