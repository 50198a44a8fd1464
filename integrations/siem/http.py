"""The HTTP sink: POSTs one batch of audit events to a SIEM's collector, as JSON Lines or
as Splunk HTTP Event Collector events (AIRLOCK_AUDIT_STREAM_*)."""

import http.client
import json
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import requests

from integrations.siem import SinkError

JSON_LINES_CONTENT_TYPE = "application/x-ndjson"
HEC_CONTENT_TYPE = "application/json"
FORMATS = ("json-lines", "splunk-hec")
# What a HEC event says it is, for Splunk searches (`sourcetype="airlock:audit"`).
HEC_SOURCE = "airlock"
HEC_SOURCETYPE = "airlock:audit"


def shown_target(url: str) -> str:
    """The URL without credentials or query string (where a HEC token may ride), to show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


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
            events = (json.dumps(hec_event(record), ensure_ascii=False) for record in records)
            text = "\n".join(events)
            return text.encode("utf-8"), HEC_CONTENT_TYPE
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        return text.encode("utf-8"), f"{JSON_LINES_CONTENT_TYPE}; charset=utf-8"

    def send(self, records: Sequence[dict]) -> None:
        if not records:
            return
        data, content_type = self.body(records)
        headers = {"Content-Type": content_type}
        if self._token:
            headers["Authorization"] = f"{self.auth_scheme} {self._token}"
        try:
            response = self._session.post(
                self.url,
                data=data,
                headers=headers,
                timeout=self.timeout,
                # A redirect is a refusal: following it would send the log (and the token)
                # somewhere nobody configured, and a 3xx is not an acceptance.
                allow_redirects=False,
            )
        except requests.Timeout:
            raise SinkError(f"{self.target} did not answer within {self.timeout:g}s") from None
        except requests.ConnectionError as error:
            raise SinkError(self._connection_failure(error)) from None
        except requests.RequestException as error:
            # The exception's text can hold the URL, and with it a query-string token.
            raise SinkError(f"POST to {self.target} failed: {type(error).__name__}") from None
        with response:
            self._check(response)

    def _check(self, response) -> None:
        status = response.status_code
        if 300 <= status < 400:
            raise SinkError(f"{self.target} answered {status} (a redirect, not followed)")
        if not 200 <= status < 300:
            raise SinkError(f"{self.target} answered {status} {response.reason or ''}".rstrip())
        if self.format == "splunk-hec":
            # HEC says {"text": "Success", "code": 0}; any other code is a refusal even on
            # a 2xx (some proxies in front of it answer 200 with the collector's error).
            try:
                code = response.json().get("code", 0)
            except (ValueError, AttributeError):
                code = 0
            if code != 0:
                raise SinkError(f"{self.target} answered {status} with HEC code {code}")

    def _connection_failure(self, error: requests.ConnectionError) -> str:
        if any(isinstance(cause, _HANG_UPS) for cause in _causes(error)):
            return f"{self.target} closed the connection without answering"
        return f"could not connect to {self.target}"


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
