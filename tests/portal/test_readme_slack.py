"""The README's "Slack" section: its app manifest asks for what Airlock uses and no more,
and points Slack at Airlock's two endpoints; its policy file lines read."""

import re

import pytest
import yaml

from requests_app.policy_file import parse_policy_file
from tests.newcomer import readme_section

pytestmark = pytest.mark.django_db


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", readme_section("## Slack"), re.S)


def manifest() -> dict:
    [found] = [block for block in yaml_blocks() if "oauth_config:" in block]
    return yaml.safe_load(found)


def test_the_manifest_asks_for_the_three_scopes_airlock_uses_and_nothing_more():
    # users:read: the link page names the Slack user (users.info)
    scopes = manifest()["oauth_config"]["scopes"]
    assert scopes == {"bot": ["chat:write", "commands", "users:read"]}


def test_the_manifest_sends_clicks_and_the_command_to_airlocks_endpoints_over_https():
    found = manifest()
    interactivity = found["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"] == "https://airlock.example.com/slack/interactions"
    [command] = found["features"]["slash_commands"]
    assert command["command"] == "/airlock"
    assert command["url"] == "https://airlock.example.com/slack/commands"
    # Slack calls Airlock over HTTP (no socket), with a long-lived bot token.
    assert found["settings"]["socket_mode_enabled"] is False
    assert found["settings"]["token_rotation_enabled"] is False
    assert "event_subscriptions" not in found["settings"]


def test_the_sections_policy_file_lines_read():
    # As written, comment and all.
    [lines] = [block for block in yaml_blocks() if "approver_groups:" in block]
    document = parse_policy_file(lines, environ={})
    assert document.groups[0].slack_channel == "C0123456789"
