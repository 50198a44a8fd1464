"""Audit forwarding against what receivers, events and settings can throw at it (issue 17
review): whatever goes wrong becomes the sink's failure, never a crashed round."""

import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from django.db import DataError, connection, transaction

from audit.export import event_record
from audit.forwarding import audit_forward_all
from audit.models import AuditEvent, AuditSink
from audit.tasks import forward_audit_log
from integrations.siem import SinkError
from integrations.siem.http import HttpSink
from tests.audit.factories import AuditEventFactory
from tests.siem_fake.http_receiver import collector_answering_with

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_an_event_the_http_sink_cannot_encode_neither_crashes_the_round_nor_starves_syslog(
    siem_http, syslog_receiver
):
    if connection.vendor == "postgresql":
        # jsonb refuses a lone surrogate: the write fails, so no such event can reach a
        # sink there. SQLite stores it, and that is the case the rest of the test is about.
        assert_no_event_can_hold_a_lone_surrogate()
        return
    # A lone surrogate (as JSON "\ud800" decodes) in an event's detail: log_event takes it
    # (the chain hashes it as an ASCII escape) and the syslog sink sends it as one; the
    # HTTP sink must not let it escape as something other than SinkError.
    AuditEventFactory(detail={"note": "broken \ud800 text"})
    AuditEventFactory()

    reports = audit_forward_all()

    # Both sinks got their round: the syslog one took both events, and the HTTP one either
    # delivered them or recorded why not (so it backs off and shows its error).
    assert [record["seq"] for record in syslog_receiver.records()] == [1, 2]
    by_name = {report.sink: report for report in reports}
    http_row = AuditSink.objects.get(name="http")
    assert by_name["http"].delivered == 2 or http_row.last_error


@pytest.mark.postgres
def test_a_refusal_whose_status_line_holds_a_nul_is_recorded_and_backed_off(
    siem_http, syslog_receiver, on_postgres
):
    # What the receiver (or a proxy in front of it) words its refusal with is not ours:
    # http.client keeps a NUL of the status line in `reason`, and PostgreSQL refuses a NUL
    # in text. The refusal must still be recorded as the sink's failure, not crash.
    siem_http.fail_next(1, status=503, reason="Busy\x00now")
    AuditEventFactory()

    reports = audit_forward_all()

    assert [report.sink for report in reports] == ["http", "syslog"]
    http_row = AuditSink.objects.get(name="http")
    assert http_row.failures == 1 and http_row.next_attempt_at is not None
    assert "503" in http_row.last_error
    assert [record["seq"] for record in syslog_receiver.records()] == [1]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AIRLOCK_AUDIT_STREAM_URL", "https://siem.example:99999/services/collector"),
        ("AIRLOCK_AUDIT_STREAM_URL", "https://siem.example:http/services/collector"),
        ("AIRLOCK_AUDIT_STREAM_URL", "https://"),
        ("AIRLOCK_AUDIT_STREAM_URL", "https://siem example/services/collector"),
        ("AIRLOCK_AUDIT_SYSLOG_URL", "tcp://siem.example:99999"),
    ],
)
def test_a_sink_url_the_sink_cannot_use_stops_the_start_naming_the_variable(
    tmp_path, variable, value
):
    # Each of these passes the settings' check today and fails only later, in every
    # configured_sinks() call (the worker's round, the dashboard, /metrics) or every send.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        variable: value,
    }

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable}" in result.stderr


def test_metrics_answers_when_the_stream_url_has_a_port_out_of_range(client, settings):
    # Settings as the start takes them today (see the test above): /metrics must still
    # answer, not 500 for every scrape.
    settings.AIRLOCK_METRICS_TOKEN = "metrics-token-for-the-review-0123456789abcdef"
    settings.AIRLOCK_AUDIT_STREAM_URL = "https://siem.example:99999/services/collector"
    settings.AIRLOCK_AUDIT_SYSLOG_URL = ""

    response = client.get(
        "/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.AIRLOCK_METRICS_TOKEN}"
    )

    assert response.status_code == 200


def test_a_syslog_host_name_that_cannot_be_looked_up_is_the_sinks_failure_not_a_crash(
    settings, syslog_receiver
):
    # The settings take any run of non-space characters as the host; a label longer than
    # 63 characters makes the IDNA encoding in getaddrinfo raise UnicodeError, which is not
    # an OSError, so it escapes send() instead of becoming a SinkError.
    settings.AIRLOCK_AUDIT_STREAM_URL = ""
    settings.AIRLOCK_AUDIT_SYSLOG_URL = f"tcp://{'a' * 64}.example:{syslog_receiver.port}"
    AuditEventFactory()

    forward_audit_log()

    row = AuditSink.objects.get(name="syslog")
    assert row.failures == 1 and row.next_attempt_at is not None
    assert row.last_error


class _DrippingCollector(BaseHTTPRequestHandler):
    """Takes the batch, then answers 200 a byte at a time, each byte well within the
    sink's timeout but the whole answer well past it."""

    protocol_version = "HTTP/1.1"
    body = b"x" * 30
    pause = 0.1  # seconds between bytes: 3 s in all

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            for byte in self.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.pause)
        except OSError:  # the sender gave up, as it should
            pass


@pytest.fixture
def dripping_collector():
    with collector_answering_with(_DrippingCollector, "/services/collector/event") as url:
        yield url


def test_an_answer_that_outlasts_the_timeout_is_a_refusal_not_an_acceptance(
    dripping_collector,
):
    # AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS is "how long a sink may take to accept one
    # batch" (README). requests' timeout bounds each read only, so an answer trickling in
    # (or never ending) keeps one send going past the timeout, the round's budget and the
    # sink's lease: another worker then takes the lease and delivers beside it.
    sink = HttpSink(dripping_collector, timeout=1)
    event = AuditEventFactory()

    with pytest.raises(SinkError):
        sink.send([event_record(event)])


def assert_no_event_can_hold_a_lone_surrogate():
    with pytest.raises(DataError), transaction.atomic():
        AuditEventFactory(detail={"note": "broken \ud800 text"})
    assert not AuditEvent.objects.exists()
