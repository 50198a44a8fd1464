"""Signed Slack calls for the interaction and linking tests, and a small recording Slack
Web API (real HTTP) standing in for chat.postEphemeral and views.open."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

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


def click(action_id: str, value, *, user="U0ALICE", channel=CHANNEL, team=TEAM) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "channel": {"id": channel},
        "trigger_id": f"1337.{next(_triggers)}.trigger",  # Slack's differ each click
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


class SlackRecorder:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def of(self, method: str) -> list[dict]:
        with self.lock:
            return [arguments for name, arguments in self.calls if name == method]


def _handler(recorder: SlackRecorder):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                arguments = json.loads(raw or "{}")
            else:
                arguments = {k: v[0] for k, v in parse_qs(raw).items()}
            method = self.path.rstrip("/").rsplit("/", 1)[-1]
            with recorder.lock:
                recorder.calls.append((method, arguments))
            answer = json.dumps({"ok": True, "ts": "1700000000.000100"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@pytest.fixture
def slack_api(settings):
    """A recording Slack Web API on localhost; settings point Airlock at it."""
    recorder = SlackRecorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SLACK_API_URL = f"http://127.0.0.1:{server.server_port}/api"
    settings.AIRLOCK_SLACK_BOT_TOKEN = "xoxb-test"
    settings.AIRLOCK_SLACK_SIGNING_SECRET = SIGNING_SECRET
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
