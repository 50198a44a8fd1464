"""A SIEM's HTTP collector on 127.0.0.1, in a thread: it keeps every batch it accepted and
can be told to misbehave for the next few POSTs (answer 503, stall past the client's
timeout, hang up without answering) or until told to recover, and answers 401 to a wrong
token or scheme."""

import json
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# HEC's answer to an accepted batch.
HEC_SUCCESS = {"text": "Success", "code": 0}


@dataclass
class ReceivedPost:
    path: str
    headers: dict
    body: bytes
    status: int | None  # what the receiver answered; None when it never did


@dataclass
class Hold:
    arrived: threading.Event
    release: threading.Event
    kept: threading.Event


@dataclass
class _Fault:
    kind: str  # "status", "stall", "hang_up", "hold"
    remaining: int
    status: int = 503
    reason: str | None = None  # the status line's words; None: the standard ones
    seconds: float = 0.0
    # The batch was kept although the sender never hears so: the next try duplicates it.
    kept: bool = False
    hold: "Hold | None" = None


@dataclass
class HttpReceiver:
    """Start with `with HttpReceiver() as receiver:`; POST to receiver.url."""

    token: str = ""  # when set, any other token is answered 401
    auth_scheme: str = "Bearer"  # the scheme the token must come with (Splunk HEC: "Splunk")
    hec: bool = False  # answer like Splunk HEC (a JSON body) instead of an empty 200
    posts: list[ReceivedPost] = field(default_factory=list)  # every POST, accepted or not
    accepted: list[bytes] = field(default_factory=list)  # bodies kept, in arrival order

    def __post_init__(self):
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/services/collector/event"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()  # wakes stalled handlers
        with self._lock:
            for fault in self._faults:
                if fault.hold is not None:
                    fault.hold.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- faults -----------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503, reason: str | None = None) -> None:
        """Answer the next `count` POSTs with `status` (and `reason` in the status line, as
        a receiver may word it), keeping nothing."""
        self._add(_Fault("status", count, status=status, reason=reason))

    def stall_next(self, count: int, seconds: float) -> None:
        """Hold the next `count` POSTs for `seconds` before answering (past the sender's
        timeout), keeping nothing."""
        self._add(_Fault("stall", count, seconds=seconds))

    def hang_up_next(self, count: int, *, kept: bool = False) -> None:
        """Read the next `count` POSTs and close the connection without an answer; with
        kept, the batch was taken in although the sender cannot know it."""
        self._add(_Fault("hang_up", count, kept=kept))

    def hold_next(self) -> "Hold":
        """Keep the next POST waiting, then accept it: hold.arrived is set when it came,
        it is kept and answered once hold.release is set, and hold.kept is set then."""
        hold = Hold(threading.Event(), threading.Event(), threading.Event())
        self._add(_Fault("hold", 1, hold=hold))
        return hold

    def fail_until_recovered(self, status: int = 503) -> None:
        """An outage of unknown length: answer every POST with `status`, keeping nothing,
        until recover()."""
        self._add(_Fault("status", sys.maxsize, status=status))

    def recover(self) -> None:
        """End every fault not served yet: from the next POST on, accept again."""
        with self._lock:
            self._faults.clear()

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            while self._faults and self._faults[0].remaining <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            self._faults[0].remaining -= 1
            return self._faults[0]

    # --- what arrived -----------------------------------------------------------------------

    def records(self) -> list[dict]:
        """Every event in the accepted batches, in arrival order (duplicates included):
        JSON Lines, or the `event` of each HEC event object."""
        if self.hec:
            return [hec_event["event"] for hec_event in self.hec_events()]
        with self._lock:
            bodies = list(self.accepted)
        return [json.loads(line) for body in bodies for line in body.decode("utf-8").splitlines()]

    def hec_events(self) -> list[dict]:
        """The HEC event objects of the accepted batches (time, source, sourcetype, event),
        read as HEC reads a body: JSON objects one after another."""
        decoder = json.JSONDecoder()
        with self._lock:
            bodies = list(self.accepted)
        out = []
        for body in bodies:
            text = body.decode("utf-8")
            position = 0
            while text[position:].strip():
                while text[position].isspace():
                    position += 1
                value, position = decoder.raw_decode(text, position)
                out.append(value)
        return out

    # --- the server -------------------------------------------------------------------------

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real collector does

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                post = ReceivedPost(self.path, dict(self.headers.items()), body, None)
                with receiver._lock:
                    receiver.posts.append(post)
                if receiver.token and self.headers.get("Authorization") != (
                    f"{receiver.auth_scheme} {receiver.token}"
                ):
                    self._answer(post, 401, {"text": "Invalid token", "code": 4})
                    return
                fault = receiver._take_fault()
                if fault is not None and fault.kind == "status":
                    self._answer(
                        post, fault.status, {"text": "Server is busy", "code": 9}, fault.reason
                    )
                    return
                if fault is not None and fault.kind == "stall":
                    receiver._stop.wait(fault.seconds)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == "hang_up":
                    if fault.kept:
                        with receiver._lock:
                            receiver.accepted.append(body)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == "hold":
                    fault.hold.arrived.set()
                    fault.hold.release.wait(30)
                with receiver._lock:
                    receiver.accepted.append(body)
                if fault is not None and fault.kind == "hold":
                    fault.hold.kept.set()
                self._answer(post, 200, HEC_SUCCESS if receiver.hec else None)

            def _answer(self, post, status, payload, reason=None):
                data = json.dumps(payload).encode() if payload is not None else b""
                post.status = status
                try:
                    self.send_response(status, reason)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the sender is gone (killed, or timed out): nobody to tell
                    self.close_connection = True

        return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a sender hanging up mid-answer is what the tests that use it expect


@contextmanager
def collector_answering_with(handler_class, path: str = "/collect"):
    """A one-off collector on 127.0.0.1 whose every answer is `handler_class`'s (an answer
    HttpReceiver's faults do not cover: one too large, one that trickles); yields its URL."""
    server = _QuietServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
