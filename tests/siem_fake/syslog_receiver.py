"""The local syslog receiver: a real TCP server on loopback, optionally TLS, that reads
octet-counted frames (RFC 6587 section 3.4.1: MSG-LEN SP SYSLOG-MSG) and keeps each
SYSLOG-MSG, with the faults a SIEM's collector shows.

It behaves as rsyslog's imtcp does: it never writes, it reads until the sender closes its
side, then closes its own (for TLS after answering the sender's close_notify, unless
answers_close_notify is False). messages() and records() read what it kept with a
third-party RFC 5424 parser (syslog-rfc5424-parser), not with Airlock's code.

Faults apply to the next connections, `times` of them:
- stop(): nothing listens, connections are refused; start() listens on the same port again.
- drop_after(k): read k frames of the batch, then drop the connection unread (an abortive
  close: the reset a receiver's TCP stack sends when it discards unread data).
- reset(): reset the connection as soon as it is accepted.
- stall(reading=False): hold the connection open reading nothing; stall(reading=True):
  read and keep the whole batch but never close (its confirmation never comes).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from dataclasses import dataclass

from syslog_rfc5424_parser import SyslogMessage

MAX_FRAME = 1 << 20  # longer than any test sends; a bigger MSG-LEN is a framing error
BOM = "\ufeff"


class FramingError(Exception):
    pass


@dataclass
class Fault:
    kind: str  # "drop_after", "reset", "stall"
    times: int | None
    frames: int = 0
    reading: bool = False


class SyslogReceiver:
    def __init__(self, host: str = "127.0.0.1", tls_context: ssl.SSLContext | None = None):
        self.host = host
        self.port = 0
        self.tls_context = tls_context
        # False: close the TCP connection after the sender's close_notify without sending
        # one back, as syslog-ng does (RFC 5425 section 4.4 allows either).
        self.answers_close_notify = True
        self.frames: list[bytes] = []  # every SYSLOG-MSG read, in arrival order
        self.connections = 0
        self.errors: list[str] = []  # framing errors: a test fails on any
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._release = threading.Event()  # ends stalls
        self._open: set[socket.socket] = set()

    # --- where it is ----------------------------------------------------------------------

    def url(self, host: str | None = None) -> str:
        """What AIRLOCK_AUDIT_SYSLOG_URL points at (host: the name to connect to, e.g.
        "localhost" to match a certificate)."""
        scheme = "tls" if self.tls_context else "tcp"
        return f"{scheme}://{host or self.host}:{self.port}"

    # --- what it received ------------------------------------------------------------------

    def messages(self) -> list[SyslogMessage]:
        """Every frame kept, parsed as RFC 5424 (ParseError on one that is not)."""
        return [SyslogMessage.parse(frame.decode("utf-8")) for frame in list(self.frames)]

    def records(self) -> list[dict]:
        """Each message's MSG, which must be the UTF-8 BOM and then JSON, as the JSON."""
        records = []
        for message in self.messages():
            if not (message.msg or "").startswith(BOM):
                raise ValueError(f"MSG does not start with the UTF-8 BOM: {message.msg!r}")
            records.append(json.loads(message.msg[len(BOM) :]))
        return records

    def unique_records(self) -> list[dict]:
        """records() without repeats of a seq, as a receiver de-duplicates at-least-once
        delivery: the first copy of each seq, in arrival order."""
        seen: dict[int, dict] = {}
        for record in self.records():
            seen.setdefault(record["seq"], record)
        return list(seen.values())

    # --- life -----------------------------------------------------------------------------

    def start(self) -> SyslogReceiver:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port after stop(): a restarted collector keeps its address.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._release.clear()
        self._accepting = threading.Thread(
            target=self._accept_loop, args=(listener,), name="local-syslog", daemon=True
        )
        self._accepting.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) and end every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
            except OSError:
                pass
            listener.close()
        self._release.set()
        if self._accepting is not None:
            self._accepting.join(timeout=5)
            self._accepting = None
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:
            _abort(conn)

    def reset_state(self) -> None:
        """Forget what was received and every fault (between tests)."""
        with self._lock:
            self.frames.clear()
            self.errors.clear()
            self._faults.clear()
            self.connections = 0
        self.answers_close_notify = True
        self._release.set()
        self._release = threading.Event()

    # --- faults ---------------------------------------------------------------------------

    def drop_after(self, frames: int, *, times: int | None = 1) -> None:
        self._add(Fault("drop_after", times, frames=frames))

    def reset(self, *, times: int | None = 1) -> None:
        self._add(Fault("reset", times))

    def stall(self, *, reading: bool = False, times: int | None = 1) -> None:
        self._add(Fault("stall", times, reading=reading))

    def recover(self) -> None:
        """Clear the faults and let stalled connections go."""
        with self._lock:
            self._faults.clear()
        release, self._release = self._release, threading.Event()
        release.set()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.pop(0)
            return fault

    # --- serving --------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: stop()
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(
                target=self._serve, args=(conn, self._release), daemon=True
            ).start()

    def _serve(self, conn: socket.socket, release: threading.Event) -> None:
        stream: socket.socket = conn
        try:
            fault = self._next_fault()
            if fault is not None and fault.kind == "reset":
                return _abort(conn)
            if fault is not None and fault.kind == "stall" and not fault.reading:
                release.wait()
                return _abort(conn)
            conn.settimeout(30)  # a test that leaves a connection open does not hang it
            if self.tls_context is not None:
                # wrap_socket takes over conn's descriptor: from here on, stream is it.
                stream = self.tls_context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._open.discard(conn)
                    self._open.add(stream)
            limit = fault.frames if fault is not None and fault.kind == "drop_after" else None
            reader = _FrameReader(stream)
            count = 0
            while limit is None or count < limit:
                message = reader.next_frame()
                if message is None:
                    break
                with self._lock:
                    self.frames.append(message)
                count += 1
            if limit is not None:
                return _abort(stream)
            if fault is not None and fault.kind == "stall":
                release.wait()
                return _abort(stream)
            if isinstance(stream, ssl.SSLSocket) and self.answers_close_notify:
                try:
                    stream = stream.unwrap()  # answer the sender's close_notify
                except (ssl.SSLError, OSError):
                    pass
            stream.close()
        except FramingError as error:
            with self._lock:
                self.errors.append(str(error))
            _abort(stream)
        except (ssl.SSLError, OSError):
            # A client that refused our certificate, or went away: nothing to keep.
            _abort(stream)
        finally:
            with self._lock:
                self._open.discard(conn)
                self._open.discard(stream)


class _FrameReader:
    """Reads exactly what each frame spans, so nothing past the frames it returned is
    taken off the connection (what drop_after leaves unread stays unread)."""

    def __init__(self, stream: socket.socket):
        self.stream = stream

    def next_frame(self) -> bytes | None:
        digits = b""
        while True:
            octet = self.stream.recv(1)
            if not octet:
                if digits:
                    raise FramingError(f"connection ended inside MSG-LEN {digits!r}")
                return None  # the sender closed between frames: the batch is over
            if octet == b" ":
                break
            if not octet.isdigit() or len(digits) >= 7 or (not digits and octet == b"0"):
                raise FramingError(f"not an octet-counted frame: MSG-LEN {digits + octet!r}")
            digits += octet
        if not digits:
            raise FramingError("a frame without MSG-LEN")
        length = int(digits)
        if length > MAX_FRAME:
            raise FramingError(f"MSG-LEN {length} is too long")
        message = b""
        while len(message) < length:
            chunk = self.stream.recv(length - len(message))
            if not chunk:
                raise FramingError(f"connection ended {len(message)} octets into {length}")
            message += chunk
        return message


def _abort(conn: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): unread data is discarded, the peer sees RST."""
    if conn.fileno() < 0:
        return
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def parse_octet_counted(stream: bytes) -> list[bytes]:
    """Split a byte stream into its SYSLOG-MSGs (for tests that frame by hand)."""
    messages, position = [], 0
    while position < len(stream):
        space = stream.index(b" ", position)
        length = int(stream[position:space])
        messages.append(stream[space + 1 : space + 1 + length])
        position = space + 1 + length
    return messages
