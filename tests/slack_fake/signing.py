"""What Slack POSTs to Airlock, signed as Slack signs it ("Verifying requests from Slack"):
X-Slack-Request-Timestamp is Unix seconds; X-Slack-Signature is "v0=" + the HMAC-SHA256 hex
digest, keyed with the signing secret, of f"v0:{timestamp}:{body}" (the exact raw body).

A test chooses `timestamp` (an old one: replay window), `secret` (a forged signature), and
may send one SignedRequest twice (a replay)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class SignedRequest:
    body: str
    timestamp: str
    signature: str
    payload: dict  # the decoded payload (interactions) or the form fields (commands)

    @property
    def headers(self) -> dict[str, str]:
        """Headers for django.test.Client.post(..., headers=...) or requests."""
        return {
            "X-Slack-Request-Timestamp": self.timestamp,
            "X-Slack-Signature": self.signature,
        }

    def post(self, client, path: str):
        """POST it with Django's test client, exactly as signed."""
        return client.generic("POST", path, self.body, content_type=FORM, headers=self.headers)


def signature(secret: str, timestamp: str | int, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed(fields: dict, payload: dict, *, secret: str, timestamp: int | None = None):
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    body = urlencode(fields)
    return SignedRequest(body, stamp, signature(secret, stamp, body), payload)


def block_actions(
    *,
    user: str,
    action_id: str,
    value: str,
    channel: str,
    ts: str,
    team: str,
    secret: str,
    trigger_id: str = "",
    timestamp: int | None = None,
    response_url: str = "https://hooks.slack.com/actions/T0LOCAL/1/local",
    block_id: str = "airlock",
) -> SignedRequest:
    """A `block_actions` interaction: `user` clicked the button `action_id`/`value` on the
    message `ts` in `channel`."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": team, "username": user.lower(), "name": user.lower()},
        "api_app_id": "A0LOCAL",
        "token": "deprecated-verification-token",
        "team": {"id": team, "domain": "local"},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "airlock"},
        "message": {"type": "message", "ts": ts},
        "trigger_id": trigger_id,
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return signed({"payload": json.dumps(payload)}, payload, secret=secret, timestamp=timestamp)


def view_submission(
    *,
    user: str,
    callback_id: str,
    values: dict,
    team: str,
    secret: str,
    private_metadata: str = "",
    timestamp: int | None = None,
    view_id: str = "V00000001",
) -> SignedRequest:
    """A `view_submission` of a modal: `values` is {block_id: {action_id: {"type": ...,
    "value": ...}}}, as Slack sends state.values."""
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "local"},
        "user": {"id": user, "team_id": team, "username": user.lower(), "name": user.lower()},
        "api_app_id": "A0LOCAL",
        "token": "deprecated-verification-token",
        "trigger_id": f"{int(time.time())}.1.submission",
        "view": {
            "id": view_id,
            "team_id": team,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
        },
        "response_urls": [],
    }
    return signed({"payload": json.dumps(payload)}, payload, secret=secret, timestamp=timestamp)


def command(
    *,
    user: str,
    text: str,
    command: str,
    channel: str,
    team: str,
    secret: str,
    trigger_id: str = "",
    timestamp: int | None = None,
    response_url: str = "https://hooks.slack.com/commands/T0LOCAL/1/local",
) -> SignedRequest:
    """A slash command, as Slack POSTs it (form fields, no JSON payload)."""
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team,
        "team_domain": "local",
        "channel_id": channel,
        "channel_name": "airlock",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0LOCAL",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return signed(fields, fields, secret=secret, timestamp=timestamp)
