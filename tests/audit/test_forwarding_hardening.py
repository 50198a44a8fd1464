"""The fixes behind tests/audit/test_forwarding_robustness.py (issue 17 review), each shown
from the side the review did not: a sink's unexpected exception becomes its recorded,
backed-off failure; the HTTP sink sends what it could not encode with the same JSON value,
bounds what it reads, and never shows a token riding in the URL's path; the settings refuse
what no sink can use and keep what a receiver may need; the sinks list builds no sink."""

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.urls import reverse

from audit.forwarding import audit_forward, audit_forward_all
from audit.forwarding.delivery import Outcome
from audit.models import AuditSink
from core.env import require_server_url
from integrations.siem import SinkError
from integrations.siem.http import HttpSink
from tests.audit.factories import AuditEventFactory
from tests.audit.test_forwarding_robustness import assert_no_event_can_hold_a_lone_surrogate
from tests.siem_fake.http_receiver import collector_answering_with

pytestmark = pytest.mark.django_db

SUMO_TOKEN = "ZaVnC4dhaV2e1Rz8vQxWm3Lh0kTq5YbN7jGs"


class _FaultySink:
    """A sink whose send() has a bug: raises what no sink is meant to. It stands for the
    sink, at the Sink protocol's boundary, not for any of Airlock's own functions."""

    name = "http"
    target = "https://siem.example/collect"

    def send(self, records):
        raise KeyError(f"secret-in-the-message {SUMO_TOKEN}")


def test_an_unexpected_exception_in_a_send_is_the_sinks_backed_off_failure(caplog):
    AuditEventFactory()

    with caplog.at_level(logging.ERROR, logger="audit.forwarding.delivery"):
        report = audit_forward(sink=_FaultySink())

    assert report.outcome == Outcome.FAILED
    row = AuditSink.objects.get(name="http")
    assert row.failures == 1 and row.next_attempt_at is not None and row.cursor == 0
    # What was raised is named, its text (which might quote a URL's token) is not stored...
    assert "KeyError" in row.last_error and SUMO_TOKEN not in row.last_error
    # ...but the worker's log has the traceback.
    [logged] = [r for r in caplog.records if r.exc_info]
    assert logged.exc_info[0] is KeyError


def test_an_event_with_a_lone_surrogate_reaches_the_http_receiver_with_the_same_value(
    siem_http,
):
    if connection.vendor == "postgresql":
        # jsonb refuses a lone surrogate: the write fails, so no such event can reach a
        # sink there. SQLite stores it, and that is the case the rest of the test is about.
        assert_no_event_can_hold_a_lone_surrogate()
        return
    AuditEventFactory(detail={"note": "broken \ud800 text"})

    [report] = audit_forward_all()

    assert report.delivered == 1
    [record] = siem_http.records()
    assert record["detail"] == {"note": "broken \ud800 text"}
    # On the wire it is an ASCII escape: the body is valid UTF-8.
    siem_http.posts[0].body.decode("utf-8")


class _LargeAnswer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"x" * (200 * 1024)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the sender stopped reading, as it should
            pass


@pytest.fixture
def large_answer_collector():
    with collector_answering_with(_LargeAnswer) as url:
        yield url


def test_an_answer_larger_than_the_cap_is_a_refusal_not_read_whole(large_answer_collector):
    sink = HttpSink(large_answer_collector, timeout=5)

    with pytest.raises(SinkError, match="larger than 64 KiB"):
        sink.send([{"seq": 1, "created_at": "2026-01-01T00:00:00+00:00"}])


def test_a_token_in_the_urls_path_is_not_shown_nor_in_the_error():
    # Sumo Logic's HTTP source takes its token as the path's last segment.
    url = f"http://127.0.0.1:9/receiver/v1/http/{SUMO_TOKEN}?token=query-token"
    sink = HttpSink(url, timeout=1)

    assert sink.target == "http://127.0.0.1:9/receiver/v1/http/…"
    with pytest.raises(SinkError) as refused:  # nothing listens on port 9
        sink.send([{"seq": 1, "created_at": "2026-01-01T00:00:00+00:00"}])
    assert SUMO_TOKEN not in str(refused.value) and "query-token" not in str(refused.value)


def test_credentials_in_the_stream_url_are_allowed_and_never_shown():
    url = "https://airlock:s3cret@siem.example:8443/services/collector"

    assert require_server_url("AIRLOCK_AUDIT_STREAM_URL", url, schemes=("https", "http")) == url
    assert HttpSink(url, timeout=1).target == "https://siem.example:8443/services/collector"


@pytest.mark.parametrize(
    "value",
    [
        "tcp://ops@siem.example:514",  # a syslog URL carries no credentials
        "tcp://siem.example:514/extra",
        "tcp://siem.example",  # no port
        f"tls://{'a' * 64}.example:6514",  # a label IDNA (and so getaddrinfo) refuses
        "udp://siem.example:514",
    ],
)
def test_a_syslog_url_that_is_not_just_host_and_port_is_refused_naming_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match=r"^AIRLOCK_AUDIT_SYSLOG_URL must be"):
        require_server_url(
            "AIRLOCK_AUDIT_SYSLOG_URL", value, schemes=("tcp", "tls"), host_and_port_only=True
        )


def test_the_sinks_list_builds_no_sink_for_its_configured_column(
    client, platform_admin, settings, monkeypatch
):
    # Building a syslog sink looks this machine's name up (socket.getfqdn): the list must
    # answer "configured?" from the settings, not by building the sinks for every row.
    settings.AIRLOCK_AUDIT_STREAM_URL = "https://siem.example/collect"
    settings.AIRLOCK_AUDIT_SYSLOG_URL = "tcp://siem.example:514"
    AuditSink.objects.create(name="http", target="https://siem.example/collect")
    AuditSink.objects.create(name="syslog", target="tcp://siem.example:514")
    lookups = []
    real_getfqdn = socket.getfqdn
    monkeypatch.setattr(
        socket, "getfqdn", lambda *args: lookups.append(args) or real_getfqdn(*args)
    )

    response = client.get(reverse("admin:audit_auditsink_changelist"))

    assert response.status_code == 200
    assert response.content.decode().count('alt="True"') == 2
    assert lookups == []


def test_the_http_sink_body_is_json_lines_whatever_the_event_holds():
    sink = HttpSink("http://127.0.0.1:9/collect", timeout=1)
    records = [{"seq": 1, "note": "caf\u00e9"}, {"seq": 2, "note": "lone \udfff"}]

    data, content_type = sink.body(records)

    assert [json.loads(line) for line in data.decode("utf-8").splitlines()] == records
    assert content_type == "application/x-ndjson; charset=utf-8"
