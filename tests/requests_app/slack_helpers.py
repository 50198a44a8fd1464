"""Signed Slack calls for the interaction and linking tests (any shape, malformed ones
too), and what Airlock sent the local Slack (tests/slack_fake), read by method."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client

SIGNING_SECRET = "test-signing-secret"
TEAM = "T0AIRLOCK"
CHANNEL = "C0APPROVERS"
_triggers = itertools.count(1)


def sign(body: bytes, *, secret=SIGNING_SECRET, timestamp=None) -> dict:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"HTTP_X_SLACK_REQUEST_TIMESTAMP": timestamp, "HTTP_X_SLACK_SIGNATURE": signature}


def post_signed(path: str, body: bytes, headers: dict | None = None, **signing):
    headers = sign(body, **signing) if headers is None else headers
    return Client().post(
        path, data=body, content_type="application/x-www-form-urlencoded", **headers
    )


def interaction_body(payload) -> bytes:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return urlencode({"payload": raw}).encode()


def click(
    action_id: str, value, *, user="U0ALICE", channel=CHANNEL, team=TEAM, trigger_id=None
) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "channel": {"id": channel},
        # Slack's differ each click; the local Slack opens views for its own only.
        "trigger_id": trigger_id or f"1337.{next(_triggers)}.trigger",
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{"action_id": action_id, "value": str(value), "type": "button"}],
    }


def deny_submission(request_id, comment, *, user="U0ALICE", team=TEAM, channel=CHANNEL):
    return {
        "type": "view_submission",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "view": {
            "callback_id": "airlock_deny",
            "private_metadata": json.dumps({"request": request_id, "channel": channel}),
            "state": {"values": {"comment": {"comment": {"type": "plain_text_input",
                                                         "value": comment}}}},
        },
    }


def command_body(text="link", *, user="U0ALICE", team=TEAM) -> bytes:
    return urlencode(
        {"command": "/airlock", "text": text, "team_id": team, "user_id": user,
         "channel_id": CHANNEL, "trigger_id": f"1337.{next(_triggers)}.trigger",
         "response_url": "https://hooks.slack.invalid/commands/1"}
    ).encode()


class SlackCalls:
    """What Airlock sent the local Slack (tests/slack_fake), by method."""

    def __init__(self, server):
        self.server = server

    def of(self, method: str) -> list[dict]:
        return [call.arguments for call in self.server.calls_to(method)]

    @property
    def calls(self) -> list:
        return list(self.server.calls)

    def new_trigger_id(self) -> str:
        return self.server.new_trigger_id()


@pytest.fixture
def slack_api(slack, settings):
    """The local Slack (the `slack` fixture), with the approvers' channel, and the signing
    secret these helpers sign with."""
    slack.add_channel(CHANNEL)
    settings.AIRLOCK_SLACK_SIGNING_SECRET = SIGNING_SECRET
    return SlackCalls(slack)
