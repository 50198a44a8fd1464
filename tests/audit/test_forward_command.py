"""manage.py forward_audit_log: delivers now and shows each sink's state; --sink with
--from-seq back-fills or re-sends from a seq, audited, and refuses what cannot be."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.actions import AuditAction
from audit.models import AuditEvent, AuditSink
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def forward(*args) -> str:
    out = io.StringIO()
    call_command("forward_audit_log", *args, stdout=out)
    return out.getvalue()


def received_seqs(receiver) -> list[int]:
    return [record["seq"] for record in receiver.records()]


def test_the_command_delivers_now_and_prints_cursor_backlog_and_last_error(siem_http):
    AuditEventFactory.create_batch(3)
    siem_http.fail_next(1)

    failed = forward()

    assert f"http ({siem_http.url}): 0 event(s) accepted now (failed)" in failed
    assert "cursor 0, backlog 3 since" in failed and "answered 503" in failed
    AuditSink.objects.update(next_attempt_at=None)

    delivered = forward()

    assert "3 event(s) accepted now (caught_up); cursor 3, backlog 0" in delivered
    assert received_seqs(siem_http) == [1, 2, 3]


def test_from_seq_sends_again_from_that_seq_and_is_audited(siem_http):
    AuditEventFactory.create_batch(4)
    forward()

    out = forward("--sink", "http", "--from-seq", "2", "--actor", "ops-oncall")

    assert "http: delivers from seq 2" in out
    rewound = AuditEvent.objects.get(action=AuditAction.AUDIT_FORWARDING_REWOUND)
    assert rewound.actor_label == "ops-oncall"
    assert rewound.detail == {
        "sink": "http",
        "target": siem_http.url,
        "from_seq": 2,
        "cursor_before": 4,
        "cursor_after": 1,
    }
    # 2-4 again, then the rewind's own event (seq 5).
    assert received_seqs(siem_http) == [1, 2, 3, 4, 2, 3, 4, 5]
    assert AuditSink.objects.get(name="http").cursor == 5


def test_a_new_sink_can_start_from_the_newest_seq_plus_one_skipping_the_past_by_choice(
    siem_http,
):
    AuditEventFactory.create_batch(3)

    forward("--sink", "http", "--from-seq", "4")

    # Only the rewind's own event (seq 4) goes out: the past was left out on purpose.
    assert received_seqs(siem_http) == [4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sink", "http", "--from-seq", "0"], "between 1 and 3 (the newest event is seq 2)"),
        (["--sink", "http", "--from-seq", "4"], "got 4"),
        (["--sink", "syslog", "--from-seq", "1"], "'syslog' is not a configured sink"),
        (["--sink", "kafka", "--from-seq", "1"], "'kafka' is not a configured sink"),
        (["--sink", "http"], "--sink and --from-seq go together"),
        (["--from-seq", "1"], "--sink and --from-seq go together"),
    ],
)
def test_what_from_seq_cannot_do_is_refused_with_a_clear_error(siem_http, args, message):
    AuditEventFactory.create_batch(2)

    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        forward(*args)

    assert not AuditEvent.objects.filter(action=AuditAction.AUDIT_FORWARDING_REWOUND).exists()
    assert siem_http.posts == []


def test_with_no_sink_configured_the_command_says_so(settings):
    settings.AIRLOCK_AUDIT_STREAM_URL = ""
    settings.AIRLOCK_AUDIT_SYSLOG_URL = ""

    assert "No sink is configured" in forward()
    with pytest.raises(CommandError, match="configured: none"):
        forward("--sink", "http", "--from-seq", "1")
