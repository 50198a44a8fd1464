"""The local Slack: a ThreadingHTTPServer on loopback answering the Web API methods Airlock
calls (chat.postMessage, chat.update, chat.postEphemeral, views.open, users.info) as Slack
does, with faults, and builders for what Slack POSTs to Airlock (signed interactions and
commands).

Every call is recorded (state.calls) before a fault may delay or replace its answer.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.github_fake.faults import Fault, Faults

from . import signing
from .state import Call, Message, SlackState, blocks_errors, view_errors

API_PREFIX = "/api"
DEFAULT_TOKEN = "xoxb-local-airlock-bot"
DEFAULT_SECRET = "local-slack-signing-secret"
DEFAULT_CHANNEL = "C0AIRLOCK"  # the channel the `slack` fixture adds
READS = {"users.info"}  # methods answered to a GET as well (slack_sdk GETs these)


class SlackFaults(Faults):
    """The GitHub stand-in's faults (any HTTP verb: slack_sdk GETs users.info; a glob over
    "/chat.update" etc.), with Slack's own answers."""

    def server_error(self, method: str = "**", *, status: int = 503, times: int | None = 1):
        return self.add("*", "/" + method, status, times=times, body="upstream error")

    def rate_limited(self, method: str = "**", *, retry_after: int = 30, times: int | None = 1):
        """HTTP 429 with Retry-After, as Slack answers a method's rate limit."""
        return self.add(
            "*",
            "/" + method,
            429,
            times=times,
            body={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
        )

    def slack_error(self, method: str = "**", error: str = "ratelimited", times: int | None = 1):
        """HTTP 200 with {"ok": false, "error": error}."""
        return self.add("*", "/" + method, 200, times=times, body={"ok": False, "error": error})

    def slow(self, method: str = "**", *, delay: float, times: int | None = 1) -> Fault:
        """Hold the call `delay` seconds, then answer it (a timeout for a shorter client)."""
        return self.timeout("*", "/" + method, delay=delay, times=times)


class SlackServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.state = SlackState()
        self.faults = SlackFaults()
        self.verbose = verbose
        self.signing_secret = DEFAULT_SECRET
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None
        self.reset()

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL points at."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def start(self) -> SlackServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-slack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """No channels, messages, views, calls or faults; the default bot token only."""
        self.state.reset()
        self.state.add_token(DEFAULT_TOKEN)
        self.faults.clear()

    def __getattr__(self, name: str):
        # seeding helpers and readers of SlackState, reachable on the server
        if name.startswith("_") or "state" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.state, name)

    # -- what Slack POSTs to Airlock (signing.py) -------------------------------------------

    def block_actions(
        self, *, user: str, action_id: str, value: str, channel: str, ts: str, **options
    ) -> signing.SignedRequest:
        """A signed POST /slack/interactions of a button click, with a trigger_id this
        stand-in accepts for views.open. options: team, secret, timestamp, trigger_id,
        response_url."""
        options.setdefault("trigger_id", self.state.new_trigger_id())
        options.setdefault("team", self.state.team_id)
        options.setdefault("secret", self.signing_secret)
        return signing.block_actions(
            user=user, action_id=action_id, value=value, channel=channel, ts=ts, **options
        )

    def view_submission(
        self, *, user: str, callback_id: str, values: dict, private_metadata: str = "", **options
    ) -> signing.SignedRequest:
        options.setdefault("team", self.state.team_id)
        options.setdefault("secret", self.signing_secret)
        return signing.view_submission(
            user=user,
            callback_id=callback_id,
            values=values,
            private_metadata=private_metadata,
            **options,
        )

    def command(
        self,
        *,
        user: str,
        text: str = "",
        command: str = "/airlock",
        channel: str = DEFAULT_CHANNEL,
        **options,
    ) -> signing.SignedRequest:
        options.setdefault("trigger_id", self.state.new_trigger_id())
        options.setdefault("team", self.state.team_id)
        options.setdefault("secret", self.signing_secret)
        return signing.command(user=user, text=text, command=command, channel=channel, **options)

    # -- one call --------------------------------------------------------------------------

    def handle(self, handler: _Handler) -> tuple[int, dict | str, dict]:
        url = urlsplit(handler.path)
        path = url.path
        method = path[len(API_PREFIX) + 1 :] if path.startswith(API_PREFIX + "/") else path[1:]
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        arguments = dict(parse_qsl(url.query, keep_blank_values=True))  # GET's arguments
        arguments.update(_arguments(handler.headers.get("content-type") or "", raw))
        token = _bearer(handler.headers.get("authorization") or "") or arguments.pop("token", "")
        call = Call(method=method, arguments=arguments, at=time.time(), token=token)
        with self.state.lock:
            self.state.calls.append(call)
        fault = self.faults.take(handler.command, "/" + method, False)
        if fault and fault.delay:
            self._stopping.wait(fault.delay)
        if fault and fault.status is not None:
            status, body, headers = fault.status, fault.body, dict(fault.headers)
        elif handler.command != "POST" and not (handler.command == "GET" and method in READS):
            status, body, headers = 405, {"ok": False, "error": "method_not_allowed"}, {}
        else:
            status, body, headers = 200, self.answer(method, token, arguments), {}
        call.status = status
        if isinstance(body, dict) and body.get("ok") is False:
            call.error = body.get("error")
        return status, body, headers

    def answer(self, method: str, token: str, arguments: dict) -> dict:
        if not token:
            return _error("not_authed")
        if token not in self.state.tokens:
            return _error("invalid_auth")
        answer = _METHODS.get(method)
        if answer is None:
            return _error("unknown_method")
        if isinstance(arguments.get("_bad_json"), str):
            return _error("invalid_json")
        with self.state.lock:
            return answer(self.state, arguments)


def _error(code: str, **fields) -> dict:
    return {"ok": False, "error": code, **fields}


def _decoded(arguments: dict, key: str):
    """blocks and view come as JSON values (JSON body) or JSON strings (form body)."""
    value = arguments.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _content(state: SlackState, arguments: dict) -> tuple[str, list] | dict:
    text = arguments.get("text") or ""
    blocks = _decoded(arguments, "blocks")
    if blocks is None:
        blocks = []
    problems = blocks_errors(blocks)
    if problems:
        return _error("invalid_blocks", errors=problems)
    if not text and not blocks:
        return _error("no_text")
    return text, blocks


def _post_message(state: SlackState, arguments: dict) -> dict:
    channel = arguments.get("channel") or ""
    if channel not in state.channels:
        return _error("channel_not_found")
    content = _content(state, arguments)
    if isinstance(content, dict):
        return content
    message = Message(channel, state.next_ts(), *content, user=state.bot_user_id)
    state.channels[channel][message.ts] = message
    return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_dict()}


def _update(state: SlackState, arguments: dict) -> dict:
    channel, ts = arguments.get("channel") or "", str(arguments.get("ts") or "")
    if channel not in state.channels:
        return _error("channel_not_found")
    message = state.channels[channel].get(ts)
    if message is None:
        return _error("message_not_found")
    content = _content(state, arguments)
    if isinstance(content, dict):
        return content
    message.edits.append({"text": message.text, "blocks": message.blocks})
    message.text, message.blocks = content
    return {
        "ok": True,
        "channel": channel,
        "ts": ts,
        "text": message.text,
        "message": message.as_dict(),
    }


def _post_ephemeral(state: SlackState, arguments: dict) -> dict:
    channel, user = arguments.get("channel") or "", arguments.get("user") or ""
    if channel not in state.channels:
        return _error("channel_not_found")
    if not user:
        return _error("user_not_in_channel")
    content = _content(state, arguments)
    if isinstance(content, dict):
        return content
    ts = state.next_ts()
    state.ephemeral.setdefault(user, []).append(
        {"channel": channel, "ts": ts, "text": content[0], "blocks": content[1]}
    )
    return {"ok": True, "message_ts": ts}


def _views_open(state: SlackState, arguments: dict) -> dict:
    trigger = arguments.get("trigger_id") or ""
    if not trigger:
        return _error("invalid_arguments", response_metadata={"messages": ["trigger_id"]})
    if trigger in state.exchanged_trigger_ids:
        return _error("exchanged_trigger_id")
    if trigger not in state.trigger_ids:
        return _error("expired_trigger_id")
    view = _decoded(arguments, "view")
    problems = view_errors(view)
    if problems:
        return _error("invalid_arguments", response_metadata={"messages": problems})
    del state.trigger_ids[trigger]  # a trigger opens one view
    state.exchanged_trigger_ids.add(trigger)
    opened = {
        "id": f"V{len(state.views) + 1:08d}",
        "team_id": state.team_id,
        "state": {"values": {}},
        "hash": f"{int(time.time())}.local",
        "private_metadata": "",
        "callback_id": "",
        **view,
    }
    state.views.append(opened)
    return {"ok": True, "view": opened}


def _users_info(state: SlackState, arguments: dict) -> dict:
    user_id = arguments.get("user") or ""
    if not user_id:
        return _error("invalid_arguments", response_metadata={"messages": ["user"]})
    user = state.users.get(user_id)
    if user is None:
        return _error("user_not_found")
    return {"ok": True, "user": json.loads(json.dumps(user))}  # a copy


_METHODS = {
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "views.open": _views_open,
    "users.info": _users_info,
}


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _arguments(content_type: str, raw: bytes) -> dict:
    if not raw.strip():
        return {}
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"_bad_json": raw.decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"_bad_json": "not an object"}
    return dict(parse_qsl(raw.decode(), keep_blank_values=True))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        fake: SlackServer = self.server.fake
        try:
            status, body, headers = fake.handle(self)
        except Exception:  # a bug in the fake: say so loudly
            traceback.print_exc()
            status, body, headers = 500, {"ok": False, "error": "fatal_error"}, {}
        if isinstance(body, dict):
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        else:
            payload = str(body or "").encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a slow fault longer than its timeout)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args) -> None:
        if self.server.fake.verbose:
            sys.stderr.write(f"local Slack: {format % args}\n")
