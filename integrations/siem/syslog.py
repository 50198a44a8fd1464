"""The syslog sink: each audit event as one RFC 5424 message, a batch sent over one TCP or
TLS (RFC 5425) connection with octet-counting framing (RFC 6587 section 3.4.1).

The message
-----------
``<PRI>1 TIMESTAMP HOSTNAME airlock - MSGID [airlock@32473 seq="" hash="" prev_hash=""] BOM{json}``

- PRI: facility authpriv (10), severity notice (5), so ``<85>``. Access decisions are
  security/authorization messages, and authpriv is the one that receivers' stock
  configurations already keep apart and readable only by root (``authpriv.*`` to
  /var/log/secure or auth.log), which suits a log naming who got access to what.
  Notice, "normal but significant": every event is expected, none is noise.
- TIMESTAMP: the event's created_at in UTC with a Z, to the microsecond (RFC 5424 allows up
  to 6 digits), so the message is dated when the decision was made, not when forwarded.
- HOSTNAME: this machine's fully qualified name, or ``-`` when it is not printable
  US-ASCII of at most 255 characters. PROCID is ``-``: a batch comes from whichever worker
  ran the delivery, which says nothing useful.
- MSGID: the event's action when it is printable US-ASCII of at most 32 characters (all of
  Airlock's are), else ``-``.
- STRUCTURED-DATA: one element carrying seq, hash and prev_hash, so a receiver can drop
  duplicates and check the chain's links without parsing MSG. Its SD-ID must be
  ``name@<private enterprise number>``; Airlock has no IANA number of its own, so it uses
  32473, the one RFC 5612 sets aside for documentation. Change SD_ID when Airlock gets
  one: receivers' rules match on it.
- MSG: the event record (audit.export.event_record, the fields of export_audit_log) as
  compact JSON in UTF-8, after the BOM as RFC 5424 section 6.4 asks for UTF-8 text.

Everything an event's author chose (reason, labels, detail) is inside the JSON, where
newlines and quotes are escaped, and the frame's length is counted in octets, so no text
can end a message early or start a forged one. Long events are sent whole: RFC 5425 only
obliges a receiver to take 2048 octets, so raise its limit (rsyslog's maxMessageSize)
rather than have it truncate the JSON.

What a successful send() means
------------------------------
Plain TCP syslog has no acknowledgement, so send() returns only on the best evidence TCP
gives: it connects (and for tls:// completes a TLS 1.2+ handshake with the receiver's
certificate verified against the system CAs or AIRLOCK_AUDIT_SYSLOG_CA_FILE and its name
checked), writes every frame, then closes its sending side (a TCP FIN; for tls:// first a
TLS close_notify) and waits, within the timeout, for the receiver to close its side. A
receiver only sees that end after it has read every byte before it, and that is when
syslog receivers close: rsyslog's imtcp and imptcp end a session when they read its end
("closed by remote peer"). For tls://, the receiver's close_notify counts, and so does a
plain TCP close without one: some receivers, syslog-ng among them, do not answer
close_notify, and RFC 5425 section 4.4 lets a side end the session with a TCP close.
A receiver that closes or dies before reading everything discards unread data, and its
TCP stack answers with a reset, which send() reports. So a return means the receiving
process read the whole batch off the connection.

What it does not guarantee:
- Delivery is at least once. A batch whose confirmation did not arrive (a timeout, a
  reset after the receiver had read part or all of it) raises SinkError, and the caller
  sends it again: the receiver may get some events twice, and drops duplicates by seq.
- A receiver that read the data and then lost it (it crashed before writing it to disk, its
  own queue overflowed, it truncated a long message) cannot be detected by any TCP syslog
  sender; that needs an application-level acknowledgement such as RELP, which this sink
  does not speak. Nor can one that closed its side early while the end of the batch was
  still in flight, if its close reaches us before the reset its stack then sends.

Errors are SinkError naming host:port and what failed (refused, reset, timed out, TLS
verification); nothing secret is in them, since a syslog URL carries no credentials.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from urllib.parse import urlsplit

from integrations.siem import SinkError

FACILITY_AUTHPRIV = 10
SEVERITY_NOTICE = 5
PRI = FACILITY_AUTHPRIV * 8 + SEVERITY_NOTICE
APP_NAME = "airlock"
NILVALUE = "-"
# name@number: see the module docstring for why 32473.
SD_ID = "airlock@32473"
SD_FIELDS = ("seq", "hash", "prev_hash")
BOM = b"\xef\xbb\xbf"
# The receiver closing its side after our FIN is the confirmation; anything it sends before
# that (syslog receivers send nothing) is read and ignored.
_DRAIN_CHUNK = 4096


class SyslogSink:
    name = "syslog"

    def __init__(
        self,
        url: str,
        *,
        ca_file: str = "",
        timeout: float = 10,
        hostname: str | None = None,
    ):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
            raise ValueError(
                f"AIRLOCK_AUDIT_SYSLOG_URL must be tcp://host:port or tls://host:port, "
                f"got {url!r}"
            )
        self.host = parts.hostname
        self.port = port
        self.use_tls = parts.scheme == "tls"
        shown_host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{shown_host}:{self.port}"
        # Rebuilt from its parts: whatever else the URL held is not shown anywhere.
        self.target = f"{parts.scheme}://{self.address}"
        self.timeout = timeout
        self._hostname = hostname
        self._tls_context = tls_client_context(ca_file) if self.use_tls else None

    @cached_property
    def hostname(self) -> str:
        # Looked up on the first send, not when the sink is built: /metrics and the
        # dashboard build the configured sinks on every call to show them, and getfqdn()
        # may wait on a slow resolver.
        return header_hostname(socket.getfqdn() if self._hostname is None else self._hostname)

    def send(self, records: Sequence[dict]) -> None:
        if not records:
            return
        payload = b"".join(frame(format_message(record, self.hostname)) for record in records)
        deadline = time.monotonic() + self.timeout
        try:
            self._deliver(payload, deadline)
        except ssl.SSLCertVerificationError as error:
            raise SinkError(
                f"syslog receiver {self.address}: TLS certificate refused: "
                f"{error.verify_message}"
            ) from error
        except ssl.SSLError as error:
            raise SinkError(
                f"syslog receiver {self.address}: TLS failed: {error.reason or error}"
            ) from error
        except TimeoutError as error:
            raise SinkError(
                f"syslog receiver {self.address}: timed out after {self.timeout:g}s "
                "before it confirmed the batch"
            ) from error
        except UnicodeError as error:
            # getaddrinfo IDNA-encodes the name first, and a label over 63 characters (or
            # an empty one) has no encoding: not an OSError, but the same "cannot reach".
            raise SinkError(
                f"syslog receiver {self.address}: the host name cannot be looked up "
                "(not a valid DNS name)"
            ) from error
        except ConnectionRefusedError as error:
            raise SinkError(f"syslog receiver {self.address}: connection refused") from error
        except ConnectionResetError as error:
            raise SinkError(
                f"syslog receiver {self.address}: connection reset before the whole batch "
                "was read"
            ) from error
        except BrokenPipeError as error:
            raise SinkError(
                f"syslog receiver {self.address}: connection closed before the whole batch "
                "was sent"
            ) from error
        except OSError as error:
            if error.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                # A reset that came in before shutdown(): the connection is already gone.
                raise SinkError(
                    f"syslog receiver {self.address}: connection reset before the whole "
                    "batch was read"
                ) from error
            raise SinkError(
                f"syslog receiver {self.address}: {error.strerror or error}"
            ) from error

    def _deliver(self, payload: bytes, deadline: float) -> None:
        conn = socket.create_connection((self.host, self.port), timeout=_remaining(deadline))
        try:
            if self._tls_context is not None:
                # The TLS socket takes over the connection (and closes it if the handshake
                # fails), so conn is whichever socket holds it now.
                conn = self._tls_context.wrap_socket(conn, server_hostname=self.host)
            _bounded(conn, deadline).sendall(payload)
            if isinstance(conn, ssl.SSLSocket):
                try:
                    # Sends close_notify and waits for the receiver's.
                    conn = _bounded(conn, deadline).unwrap()
                except ssl.SSLEOFError:
                    # It closed the TCP connection instead of answering close_notify,
                    # which RFC 5425 allows (syslog-ng does): an orderly end all the same.
                    return
                except ssl.SSLSyscallError as error:
                    if error.errno in (None, 0):  # the same EOF, as some builds report it
                        return
                    raise
            _bounded(conn, deadline).shutdown(socket.SHUT_WR)
            _await_close(conn, deadline)
        finally:
            conn.close()


def format_message(record: dict, hostname: str = NILVALUE) -> bytes:
    """One RFC 5424 SYSLOG-MSG for one event record (without the frame's length)."""
    action = str(record.get("action", ""))
    header = " ".join(
        [
            f"<{PRI}>1",
            header_timestamp(record.get("created_at")),
            hostname,
            APP_NAME,
            NILVALUE,
            action if _printable_ascii(action, 32) else NILVALUE,
            structured_data(record),
        ]
    )
    return header.encode("ascii") + b" " + BOM + _json_bytes(record)


def frame(message: bytes) -> bytes:
    """Octet-counting framing: MSG-LEN SP SYSLOG-MSG, the length in octets."""
    return str(len(message)).encode("ascii") + b" " + message


def structured_data(record: dict) -> str:
    params = "".join(
        f' {name}="{sd_escape(str(record[name]))}"'
        for name in SD_FIELDS
        if record.get(name) is not None
    )
    return f"[{SD_ID}{params}]" if params else NILVALUE


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: '"', '\\' and ']' each behind a backslash (RFC 5424 section 6.3.3).
    The backslash goes first, so the escapes added after it are not escaped again."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_timestamp(created_at) -> str:
    """RFC 3339 in UTC with a Z and microseconds, or NILVALUE for an unreadable time (the
    event still goes, with its created_at intact in MSG)."""
    try:
        moment = datetime.fromisoformat(str(created_at))
    except ValueError:
        return NILVALUE
    if moment.tzinfo is None:
        return NILVALUE
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header_hostname(name: str) -> str:
    return name if _printable_ascii(name, 255) else NILVALUE


def tls_client_context(ca_file: str = "") -> ssl.SSLContext:
    """Verify the receiver's certificate and name (RFC 5425), TLS 1.2 or newer."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(
            f"AIRLOCK_AUDIT_SYSLOG_CA_FILE could not be read as a CA bundle: {ca_file!r}"
        ) from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _json_bytes(record: dict) -> bytes:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; \u escapes keep the same JSON value.
        return json.dumps(record, separators=(",", ":")).encode("ascii")


def _printable_ascii(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and all("!" <= char <= "~" for char in text)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _bounded(sock: socket.socket, deadline: float) -> socket.socket:
    """The socket, with what is left of the batch's time as its timeout: the whole
    exchange, not each step, is bounded by the sink's timeout."""
    sock.settimeout(_remaining(deadline))
    return sock


def _await_close(sock: socket.socket, deadline: float) -> None:
    while _bounded(sock, deadline).recv(_DRAIN_CHUNK):
        pass
