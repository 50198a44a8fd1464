"""Sentry: off unless SENTRY_DSN is set; a bad DSN stops the start naming it; and what is
sent is masked like the logs, checked on an event and on what a local receiver standing in
for Sentry gets from a real process."""

import gzip
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.error_tracking import error_tracking_init, scrub_event

ROOT = Path(__file__).resolve().parents[2]
GITHUB_TOKEN = "ghp_" + "k" * 36
API_TOKEN = "alk_" + "Q" * 43
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJyZXBvc2l0b3J5IjoiYWNtZS9hcGkifQ.c2lnbmF0dXJl"


def realistic_event() -> dict:
    """The shape sentry-sdk hands before_send for an exception in a request."""
    return {
        "level": "error",
        "platform": "python",
        "message": f"GitHub refused the call with token {GITHUB_TOKEN}",
        "logentry": {"message": "Check failed for %s", "params": [f"Bearer {JWT}"]},
        "exception": {
            "values": [
                {
                    "type": "PermanentGitHubError",
                    "value": f"GitHub 401 Bad credentials (Authorization: token {GITHUB_TOKEN})",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "_call",
                                "module": "integrations.github.client",
                                "context_line": "    return send()",
                                "vars": {
                                    "operation": "'GET environment acme/api:production'",
                                    "github_token": f"'{GITHUB_TOKEN}'",
                                    "headers": {"Authorization": f"Bearer {API_TOKEN}"},
                                    "attempt": 3,
                                },
                            }
                        ]
                    },
                }
            ]
        },
        "request": {
            "method": "GET",
            "url": "https://airlock.example.com/api/v1/grants/check",
            "query_string": f"repository=acme/api&token={API_TOKEN}",
            "headers": {"Authorization": f"Bearer {JWT}", "User-Agent": "curl/8"},
            "cookies": {"sessionid": "abc123sessionvalue"},
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "grants.reconciler",
                    "message": f"client_secret={'s' * 24} rejected",
                    "data": {"secret_name": "DEPLOY_TOKEN"},
                }
            ]
        },
    }


def test_before_send_masks_tokens_and_secrets_as_the_logs_do():
    scrubbed = json.dumps(scrub_event(realistic_event(), {}))

    for secret in (GITHUB_TOKEN, API_TOKEN, JWT, "abc123sessionvalue", "s" * 24):
        assert secret not in scrubbed
    event = json.loads(scrubbed)
    frame = event["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert frame["vars"]["github_token"] == "[REDACTED]"
    assert frame["vars"]["headers"]["Authorization"] == "[REDACTED]"
    # What an engineer needs to find the bug is still there.
    assert event["exception"]["values"][0]["type"] == "PermanentGitHubError"
    assert frame["vars"]["operation"] == "'GET environment acme/api:production'"
    assert frame["vars"]["attempt"] == 3
    assert event["request"]["headers"]["User-Agent"] == "curl/8"
    assert event["breadcrumbs"]["values"][0]["data"]["secret_name"] == "DEPLOY_TOKEN"


@pytest.mark.parametrize("dsn", ["not-a-dsn", "https://sentry.example.com/1", "ftp://k@h/1"])
def test_a_bad_dsn_is_refused_naming_sentry_dsn(dsn):
    with pytest.raises(ImproperlyConfigured, match="SENTRY_DSN"):
        error_tracking_init(dsn=dsn)


# --- a real process, a local receiver in Sentry's place ------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


FAILING_PROCESS = f"""
import logging, django, sentry_sdk
django.setup()

def call_github(github_token):
    raise RuntimeError("GitHub refused Authorization: token " + github_token)

try:
    call_github({GITHUB_TOKEN!r})
except RuntimeError:
    logging.getLogger("grants.reconciler").exception("Reconcile failed, token=%s", {API_TOKEN!r})
sentry_sdk.flush(timeout=20)
"""


def settings_env(tmp_path, **extra) -> dict:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        **extra,
    }


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_a_process_with_sentry_dsn_sends_its_errors_masked(tmp_path, sentry_receiver):
    port = sentry_receiver.server_address[1]
    env = settings_env(tmp_path, SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/1")

    result = run_python(FAILING_PROCESS, env)

    assert result.returncode == 0, result.stderr
    sent = b"\n".join(sentry_receiver.bodies).decode()
    assert "RuntimeError" in sent and "Reconcile failed" in sent  # the event arrived
    assert GITHUB_TOKEN not in sent
    assert API_TOKEN not in sent
    assert re.search(r'"github_token":\s*"\[REDACTED\]"', sent)


def test_without_sentry_dsn_sentry_is_not_started(tmp_path):
    code = "import django, sentry_sdk; django.setup(); print(sentry_sdk.get_client().is_active())"

    result = run_python(code, settings_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_bad_dsn_stops_the_start_naming_sentry_dsn(tmp_path):
    env = settings_env(tmp_path, SENTRY_DSN="sentry.example.com/1")

    result = run_python("import django; django.setup()", env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SENTRY_DSN" in result.stderr
    assert "sentry.example.com" not in result.stderr.splitlines()[-1]
