"""The HTTP sink: POSTs one batch of audit events to a SIEM's collector, as JSON Lines or
as Splunk HTTP Event Collector events (AIRLOCK_AUDIT_STREAM_*)."""

import http.client
import json
import time
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import requests
from urllib3 import exceptions as urllib3_errors

from integrations.siem import SinkError, printable_text

JSON_LINES_CONTENT_TYPE = "application/x-ndjson"
HEC_CONTENT_TYPE = "application/json"
FORMATS = ("json-lines", "splunk-hec")
# What a HEC event says it is, for Splunk searches (`sourcetype="airlock:audit"`).
HEC_SOURCE = "airlock"
HEC_SOURCETYPE = "airlock:audit"
# The most of an answer's body read: a collector's acknowledgement is a few bytes, and
# whatever a receiver sends must not be held in memory whole.
ANSWER_LIMIT = 64 * 1024
_ANSWER_CHUNK = 8192
# A path segment longer than this is shown as "…": collectors that take their token in the
# path (Sumo Logic's /receiver/v1/http/<token>, webhook-style URLs) must not have it shown,
# and no route word (services, collector, event, v1) is this long.
SHOWN_SEGMENT_LIMIT = 16
TARGET_LIMIT = 500  # AuditSink.target's max_length


def shown_target(url: str) -> str:
    """The URL to show: scheme, host and port as written, and the path with each segment
    longer than SHOWN_SEGMENT_LIMIT as "…"; no credentials, no query string (where a HEC
    token may ride), no fragment. Never raises, whatever the URL."""
    parts = urlsplit(url)
    host_port = parts.netloc.rpartition("@")[2]
    path = "/".join(
        "…" if len(segment) > SHOWN_SEGMENT_LIMIT else segment
        for segment in parts.path.split("/")
    )
    return printable_text(f"{parts.scheme}://{host_port}{path}", TARGET_LIMIT)


def hec_event(record: dict) -> dict:
    """One audit record as a HEC event object: the record is the event, stamped with the
    time it was written (epoch seconds, to the microsecond)."""
    created_at = datetime.fromisoformat(record["created_at"])
    return {
        "time": round(created_at.timestamp(), 6),
        "source": HEC_SOURCE,
        "sourcetype": HEC_SOURCETYPE,
        "event": record,
    }


class HttpSink:
    """POSTs each batch in one request; any answer but 2xx is a refusal.

    Authentication is `Authorization: <auth_scheme> <token>`, Bearer by default (the
    contract), in both formats. Splunk's own HEC documents `Authorization: Splunk <token>`
    instead, hence auth_scheme (AIRLOCK_AUDIT_STREAM_AUTH_SCHEME=Splunk); collectors that
    speak HEC (and proxies in front of Splunk) commonly take Bearer. Splunk also takes the
    token in a `?token=` query string when allowed (it is never shown: see shown_target).
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        auth_scheme: str = "Bearer",
        format: str = "json-lines",
        timeout: float,
    ):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if not auth_scheme or any(c.isspace() for c in auth_scheme):
            raise ValueError(f"auth_scheme must be one word, got {auth_scheme!r}")
        self.auth_scheme = auth_scheme
        self.url = url
        self.target = shown_target(url)
        self.format = format
        self.timeout = timeout
        self._token = token
        # One session per sink: a round's batches reuse the connection.
        self._session = requests.Session()

    def body(self, records: Sequence[dict]) -> tuple[bytes, str]:
        """The request body and its content type."""
        if self.format == "splunk-hec":
            # HEC's /services/collector/event takes several event objects one after another
            # in one body (not a JSON array); a newline between them keeps it readable.
            events = (_json_bytes(hec_event(record)) for record in records)
            return b"\n".join(events), HEC_CONTENT_TYPE
        data = b"".join(_json_bytes(record) + b"\n" for record in records)
        return data, f"{JSON_LINES_CONTENT_TYPE}; charset=utf-8"

    def send(self, records: Sequence[dict]) -> None:
        if not records:
            return
        data, content_type = self.body(records)
        headers = {"Content-Type": content_type}
        if self._token:
            headers["Authorization"] = f"{self.auth_scheme} {self._token}"
        # The timeout is for the whole exchange (README: how long a sink may take to accept
        # one batch), while requests' bounds each connect, write and read. The answer is
        # read below against this deadline, so one trickling in (or never ending) is cut
        # off one read after it: a send with an ordinary status line outlives the timeout
        # by a read at most, well inside the lease (three timeouts, audit/forwarding/lease.py).
        # An answer past the deadline is a refusal even if it is a 2xx.
        deadline = time.monotonic() + self.timeout
        try:
            response = self._session.post(
                self.url,
                data=data,
                headers=headers,
                timeout=self.timeout,
                # A redirect is a refusal: following it would send the log (and the token)
                # somewhere nobody configured, and a 3xx is not an acceptance.
                allow_redirects=False,
                stream=True,
            )
            with response:
                answer = self._read_answer(response, deadline)
        except requests.Timeout:
            raise SinkError(f"{self.target} did not answer within {self.timeout:g}s") from None
        except requests.ConnectionError as error:
            raise SinkError(self._connection_failure(error)) from None
        except requests.RequestException as error:
            # The exception's text can hold the URL, and with it a query-string token.
            raise SinkError(f"POST to {self.target} failed: {type(error).__name__}") from None
        self._check(response, answer)

    def _read_answer(self, response, deadline: float) -> bytes:
        """The answer's body, read whole (so the connection can carry the next batch) but
        within the deadline and ANSWER_LIMIT."""
        chunks = []
        size = 0
        while True:
            if time.monotonic() >= deadline:
                raise SinkError(
                    f"{self.target} answered {response.status_code} but its answer took "
                    f"longer than {self.timeout:g}s"
                )
            try:
                # read1: what one read brings, so the deadline is checked between reads.
                chunk = response.raw.read1(_ANSWER_CHUNK, decode_content=True)
            except urllib3_errors.ReadTimeoutError as error:
                raise requests.Timeout(error) from error
            except (urllib3_errors.HTTPError, OSError) as error:
                raise requests.ConnectionError(error) from error
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > ANSWER_LIMIT:
                raise SinkError(
                    f"{self.target} answered {response.status_code} with an answer larger "
                    f"than {ANSWER_LIMIT // 1024} KiB"
                )
            chunks.append(chunk)

    def _check(self, response, answer: bytes) -> None:
        status = response.status_code
        if 300 <= status < 400:
            raise SinkError(f"{self.target} answered {status} (a redirect, not followed)")
        if not 200 <= status < 300:
            # The reason phrase is the receiver's (or a proxy's) text: made safe to store
            # (PostgreSQL refuses a NUL) and to show.
            reason = printable_text(response.reason or "")
            raise SinkError(f"{self.target} answered {status} {reason}".rstrip())
        if self.format == "splunk-hec":
            # HEC says {"text": "Success", "code": 0}; any other code is a refusal even on
            # a 2xx (some proxies in front of it answer 200 with the collector's error).
            try:
                code = json.loads(answer).get("code", 0)
            except (ValueError, AttributeError):
                code = 0
            if code != 0:
                shown = printable_text(str(code), 40)
                raise SinkError(f"{self.target} answered {status} with HEC code {shown}")

    def _connection_failure(self, error: requests.ConnectionError) -> str:
        if any(isinstance(cause, _HANG_UPS) for cause in _causes(error)):
            return f"{self.target} closed the connection without answering"
        return f"could not connect to {self.target}"


def _json_bytes(value: dict) -> bytes:
    text = json.dumps(value, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (an event's detail can hold one on SQLite) has no UTF-8 form;
        # \u escapes keep the same JSON value, as the syslog sink sends it.
        return json.dumps(value).encode("ascii")


# What the connection's end looks like when the receiver hung up instead of answering.
_HANG_UPS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _causes(error: BaseException, depth: int = 6):
    """The error and what it wraps: requests and urllib3 nest the socket's error in args."""
    seen = []
    pending = [error]
    while pending and len(seen) < 4 * depth:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        yield current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(
            linked for linked in (current.__cause__, current.__context__) if linked is not None
        )
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
