"""The Action (action.yml) run as a runner runs it, for tests/api/test_action*.py: its one
step with the inputs substituted into its environment, GitHub's ID-token service (a small
local endpoint handing out tokens from the local GitHub's OIDC issuer), GITHUB_OUTPUT and
GITHUB_STEP_SUMMARY. The fixtures are registered by tests/api/conftest.py."""

import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from django.core.servers.basehttp import WSGIServer
from django.db import connections
from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TOKEN = "runner-request-token"
INPUT = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
STEP_OUTPUT = re.compile(r"\$\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.([a-z-]+)\s*\}\}")
ACTION_SECONDS = 120


class IdTokenService:
    """GitHub's ID-token endpoint as a job sees it (ACTIONS_ID_TOKEN_REQUEST_URL): GET with
    `Authorization: bearer <request token>` and `audience=`, answers {"value": jwt}.
    lifetime: seconds until each token's `exp` (None: the issuer's default)."""

    def __init__(self, mint, claims: dict, lifetime: int | None = None):
        self.mint, self.claims, self.lifetime, self.audiences = mint, claims, lifetime, []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
                    return self._answer(401, {"message": "Bad credentials"})
                audience = query.get("audience", [""])[0]
                service.audiences.append(audience)
                claims = {**service.claims, "aud": audience}
                if service.lifetime is not None:
                    claims["exp"] = int(time.time()) + service.lifetime
                return self._answer(200, {"count": 1, "value": service.mint(claims)})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/_apis/idtoken?api-version=2.0"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def id_token_service(oidc):
    services = []

    def start(lifetime=None, **claims):
        service = IdTokenService(oidc, claims, lifetime)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


@pytest.fixture
def portal(live_server, settings, oidc):
    # The Action's default audience is the portal's URL, as in production.
    settings.AIRLOCK_OIDC_AUDIENCE = live_server.url
    return live_server.url


class SerialLiveServerThread(LiveServerThread):
    """A live server that answers one request at a time. With an in-memory SQLite database
    it shares the test's one connection (Django's LiveServerThread), and two requests at
    once on one connection lock each other out ("database table is locked")."""

    def _create_server(self, connections_override=None):
        return WSGIServer(
            (self.host, self.port), QuietWSGIRequestHandler, allow_reuse_address=False
        )


@pytest.fixture
def serial_portal(transactional_db, settings, oidc):
    """The portal, live, for tests in which the Action waits while the test acts (over
    HTTP too, while the Action runs: the test's own connection must stay idle meanwhile)."""
    shared = {
        connection.alias: connection
        for connection in connections.all()
        if connection.vendor == "sqlite" and connection.is_in_memory_db()
    }
    thread = SerialLiveServerThread("localhost", lambda app: app, connections_override=shared)
    thread.daemon = True
    for connection in shared.values():
        connection.inc_thread_sharing()
    try:
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        url = f"http://localhost:{thread.port}"
        settings.AIRLOCK_OIDC_AUDIENCE = url
        yield url
    finally:
        thread.terminate()
        for connection in shared.values():
            connection.dec_thread_sharing()


class ActionRun:
    """One run of the Action's step, started in its own process."""

    def __init__(self, inputs: dict, *, tmp_path, id_token_url=None, extra_env=None):
        self.action = yaml.safe_load((ROOT / "action.yml").read_text())
        specs = self.action["inputs"]
        for name, spec in specs.items():
            if spec.get("required"):
                assert name in inputs, f"the action requires {name}"
        unknown = set(inputs) - set(specs)
        assert not unknown, f"action.yml has no inputs {unknown}"
        values = {**{name: spec.get("default", "") for name, spec in specs.items()}, **inputs}
        (step,) = self.action["runs"]["steps"]
        assert self.action["runs"]["using"] == "composite" and step["shell"] == "bash"
        self.step_id = step["id"]

        tmp_path.mkdir(parents=True, exist_ok=True)
        self.outputs_file = tmp_path / "github_output"
        self.outputs_file.write_text("")
        self.summary_file = tmp_path / "summary.md"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_OUTPUT": str(self.outputs_file),
            "GITHUB_STEP_SUMMARY": str(self.summary_file),
            "GITHUB_REPOSITORY": "acme/api",
            # Inputs reach the step only through its env mapping, as on a runner.
            **{name: INPUT.sub(lambda m: str(values[m.group(1)]), value)
               for name, value in step.get("env", {}).items()},
            **(extra_env or {}),
        }
        if id_token_url:
            env["ACTIONS_ID_TOKEN_REQUEST_URL"] = id_token_url
            env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = REQUEST_TOKEN
        self.process = subprocess.Popen(
            ["bash", "-e", "-c", step["run"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self) -> tuple[int, str, dict]:
        """Wait for the step to end: (exit status, its output, the action's outputs)."""
        try:
            output, _ = self.process.communicate(timeout=ACTION_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            pytest.fail(f"the action was still running after {ACTION_SECONDS}s:\n{output}")
        return self.process.returncode, output, self.outputs()

    def outputs(self) -> dict:
        """The action's outputs, as action.yml maps them from its step's."""
        step_outputs = {}
        lines, index = self.outputs_file.read_text().splitlines(), 0
        while index < len(lines):
            line, index = lines[index], index + 1
            name, equals, value = line.partition("=")
            if not equals and "<<" in line:  # name<<DELIMITER, the value's lines, DELIMITER
                name, _, delimiter = line.partition("<<")
                end = lines.index(delimiter, index)
                value, index = "\n".join(lines[index:end]), end + 1
            step_outputs[name] = value

        def mapped(match):
            assert match.group(1) == self.step_id, f"an output maps from {match.group(1)}"
            return step_outputs.get(match.group(2), "")

        return {
            name: STEP_OUTPUT.sub(mapped, spec["value"])
            for name, spec in self.action["outputs"].items()
        }

    def summary(self) -> str:
        return self.summary_file.read_text() if self.summary_file.exists() else ""

    def stop(self):
        if self.running():
            self.process.kill()
            self.process.communicate()


def run_action(inputs: dict, *, tmp_path, id_token_url=None, extra_env=None):
    """Run action.yml's step to its end: (exit status, output, outputs)."""
    return ActionRun(
        inputs, tmp_path=tmp_path, id_token_url=id_token_url, extra_env=extra_env
    ).finish()
