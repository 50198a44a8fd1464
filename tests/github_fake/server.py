"""The local GitHub's HTTP side: a ThreadingHTTPServer on loopback, request log, faults.

GitHubServer owns the pieces (state, faults, OIDC issuer) and the socket. Every request is
recorded before anything else happens to it, then a matching fault may delay or replace the
answer, and otherwise routes.dispatch answers it. REST paths are served both under /api/v3
(GitHub Enterprise layout, what GITHUB_API_URL points at) and at the root.

The seeding helpers and readers of GitHubState are reachable on the server itself
(server.add_user(...), server.reviewers(...)), so a test needs one object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from . import openapi, routes, shapes
from .faults import Faults
from .oidc import OidcIssuer
from .state import GitHubState, RecordedRequest

API_PREFIX = "/api/v3"
_LOGGED_HEADERS = (
    "authorization",
    "accept",
    "content-type",
    "user-agent",
    "x-github-api-version",
    "if-none-match",
)


class GitHubServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.state = GitHubState()
        self.faults = Faults()
        self.oidc = OidcIssuer()
        self.state_file = Path(state_file) if state_file else None
        self.verbose = verbose
        # Set, and replaced, by each reset (and set by stop): a request held by a delay fault
        # waits on the one of its own GitHub, so that it ends with that GitHub.
        self._held = threading.Event()
        self._save_lock = threading.Lock()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None
        if self.state_file and self.state_file.exists():
            self.state.load(json.loads(self.state_file.read_text()))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What GITHUB_URL points at (web, OAuth)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What GITHUB_API_URL points at (REST, GitHub Enterprise layout)."""
        return self.base_url + API_PREFIX

    @property
    def oidc_issuer(self) -> str:
        """What GITHUB_OIDC_ISSUER points at; keys at {issuer}/.well-known/jwks."""
        return self.base_url + "/oidc"

    def start(self) -> GitHubServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-github",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._held.set()  # ends requests held by a delay fault
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> GitHubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """A clean GitHub: no accounts, no faults, no logs, the first OIDC key only.

        A request still held by a delay fault (its client timed out and went on) belonged to
        the GitHub before: it ends now, unanswered, instead of waking later to count against
        this one's rate limit, or write to it, in the middle of the next test."""
        held, self._held = self._held, threading.Event()
        held.set()
        self.state.reset()
        self.faults.clear()
        self.oidc.reset()

    def save(self) -> None:
        """Write the state file (a seed), atomically, if there is one."""
        if self.state_file:
            with self._save_lock:
                temporary = self.state_file.with_suffix(".tmp")
                temporary.write_text(json.dumps(self.state.dump(), indent=1))
                os.replace(temporary, self.state_file)

    # -- OIDC ------------------------------------------------------------------------------

    def mint_oidc_token(
        self, claims: dict | None = None, kid: str | None = None, **overrides
    ) -> str:
        """A GitHub Actions ID token from this issuer (see OidcIssuer.mint). As GitHub does,
        actor_id is the id of the actor's account, when this GitHub knows the account and
        the caller does not give one."""
        merged = {**(claims or {}), **overrides}
        known = self.state.users.get(str(merged.get("actor") or "").lower())
        if known is not None and "actor_id" not in merged:
            overrides = {**overrides, "actor_id": str(known.id)}
        return self.oidc.mint(self.oidc_issuer, claims, kid, **overrides)

    def rotate_oidc_key(self, keep_old: bool = True) -> str:
        return self.oidc.rotate(keep_old)

    # -- webhooks: what GitHub POSTs to an App -----------------------------------------------

    def deployment_protection_rule_event(
        self,
        repo: str,
        environment: str,
        *,
        run_id: int,
        login: str,
        installation_id: int,
        deployment_id: int | None = None,
        **fields,
    ) -> dict:
        """A deployment_protection_rule "requested" payload for a job of run `run_id`
        started by `login` and waiting on `repo`'s `environment` (both must exist), checked
        against GitHub's schema for the event. `fields`: ref, sha, event."""
        state = self.state
        with state.lock:
            found = state.repo(repo)
            env = state.environment_of(found, environment)
            payload = shapes.deployment_protection_rule_event(
                shapes.Urls(api=self.api_url, web=self.base_url),
                state,
                found,
                env.name,
                run_id=run_id,
                sender=state.user(login),
                installation_id=installation_id,
                deployment_id=deployment_id or state._next_id(),
                **fields,
            )
        errors = openapi.webhook_payload_errors("deployment-protection-rule-requested", payload)
        if errors:
            raise AssertionError(f"the fake built a payload GitHub would not send: {errors}")
        return payload

    def workflow_run_event(
        self, repo: str, run_id: int, *, attempt: int | None = None, conclusion="success"
    ) -> dict:
        """A workflow_run "completed" payload for `attempt` (default: the latest) of run
        `run_id` of `repo` (seeded with add_workflow_run), checked against GitHub's schema
        for the event."""
        state = self.state
        with state.lock:
            found = state.repo(repo)
            run = state.workflow_run(found.full_name, run_id)
            payload = shapes.workflow_run_event(
                shapes.Urls(api=self.api_url, web=self.base_url),
                state,
                found,
                run,
                attempt=attempt or len(run.triggering_actors),
                conclusion=conclusion,
            )
        errors = openapi.webhook_payload_errors("workflow-run-completed", payload)
        if errors:
            raise AssertionError(f"the fake built a payload GitHub would not send: {errors}")
        return payload

    @staticmethod
    def webhook_delivery(
        event: str, payload: dict, secret: str, delivery_id: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one webhook delivery, signed as GitHub signs them:
        X-Hub-Signature-256 is "sha256=" + the HMAC-SHA256 hex digest of the exact body,
        keyed with the webhook secret; X-GitHub-Delivery is a GUID per delivery."""
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "User-Agent": "GitHub-Hookshot/local",
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": f"sha256={digest}",
        }
        return body, headers

    # -- state helpers, reachable on the server ----------------------------------------------

    def __getattr__(self, name: str):
        # Only called for names the server lacks: seeding helpers, readers, logs.
        if name.startswith("_") or "state" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.state, name)

    def unexpected_schema_violations(self) -> list:
        return [] if self.state.schema_violations_expected else self.state.schema_violations

    # -- one request -----------------------------------------------------------------------

    def handle(self, handler: _Handler) -> routes.Reply | None:
        """The answer to one request; None when it is to go unanswered (held past a reset)."""
        held = self._held  # this GitHub's, before a reset can replace it
        split = urlsplit(handler.path)
        raw_path = split.path
        prefix = (
            API_PREFIX if raw_path == API_PREFIX or raw_path.startswith(API_PREFIX + "/") else ""
        )
        length = int(handler.headers.get("content-length") or 0)
        host = handler.headers.get("host") or f"{self.host}:{self.port}"
        call = routes.Call(
            method=handler.command,
            path=routes.canonical_path(self.state, raw_path[len(prefix) :] or "/"),
            query=dict(parse_qsl(split.query)),
            headers={k.lower(): v for k, v in handler.headers.items()},
            data=handler.rfile.read(length) if length else b"",
            urls=shapes.Urls(api=f"http://{host}{prefix}", web=f"http://{host}"),
            fake=self,
        )
        if call.path.startswith("/_fake/"):
            reply = routes.dispatch(call)
            if call.method != "GET":
                self.save()
            return reply

        record = self.state.record_request(
            RecordedRequest(
                method=call.method,
                path=call.path,
                query=call.query,
                headers={k: v for k, v in call.headers.items() if k in _LOGGED_HEADERS},
                json=_json_or_none(call.data),
                at=time.time(),
                raw_path=raw_path,
            )
        )
        fault = self.faults.take(call.method, call.path, record.is_write)
        if fault and fault.delay and held.wait(fault.delay):
            return None  # reset or stopped while held: that GitHub is gone
        if fault and fault.status is not None:
            reply = routes.Reply(fault.status, fault.body, dict(fault.headers))
            self.state.count_rate_limited_call()
        else:
            reply = routes.dispatch(call)
        record.status = reply.status
        if call.method != "GET":
            self.save()
        return reply


def _json_or_none(data: bytes):
    try:
        return json.loads(data) if data.strip() else None
    except ValueError:
        return None


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 64  # benchmarks open many connections at once
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's and requests' sessions expect
    # The headers and the body go out in two writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (~40 ms on Linux), which made every call slow and
    # distorted timing measurements (benchmarks/).
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "GitHub.com"

    def _serve(self) -> None:
        fake: GitHubServer = self.server.fake
        try:
            reply = fake.handle(self)
        except Exception:  # a bug in the fake: say so loudly, answer 500
            traceback.print_exc()
            reply = routes.Reply(500, shapes.error("Local GitHub crashed; see stderr", 500))
        if reply is None:
            self.close_connection = True  # no answer: the connection just ends
            return
        self._send(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _send(self, reply: routes.Reply) -> None:
        body = reply.body
        headers = {"x-github-request-id": f"{id(self):X}:{time.monotonic_ns():X}", **reply.headers}
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json; charset=utf-8")
        elif isinstance(body, str):
            payload = body.encode()
            headers.setdefault("content-type", "text/html; charset=utf-8")
        else:
            payload = body or b""
        try:
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            if reply.status not in {204, 304}:
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, e.g. on a delay fault longer than its timeout

    def log_message(self, format: str, *args) -> None:
        if self.server.fake.verbose:
            sys.stderr.write(f"local GitHub: {format % args}\n")
