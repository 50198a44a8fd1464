"""Audit forwarding to a real local HTTP collector: every event arrives, in seq order, with a
chain the receiver can verify alone; faults lose nothing, and the cursor only moves once the
collector accepted a batch (audit/forwarding)."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.utils import timezone

from audit.forwarding import audit_forward, audit_forward_all, configured_sinks
from audit.forwarding.delivery import Outcome
from audit.keys import audit_keyring
from audit.models import GENESIS_HASH, AuditSink, chain_hash
from audit.selectors import sink_backlog
from audit.tasks import forward_audit_log
from grants.schedule import beat_schedule
from tests.audit.conftest import AUDIT_KEY
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def http_sink():
    (sink,) = configured_sinks()
    return sink


def received_seqs(receiver) -> list[int]:
    return [record["seq"] for record in receiver.records()]


def lines_per_post(receiver) -> list[int]:
    return [len(post.body.splitlines()) for post in receiver.posts]


def sink_state() -> AuditSink:
    return AuditSink.objects.get(name="http")


def backoff_over() -> None:
    # As if the wait had passed: the backoff itself is asserted where it is set.
    AuditSink.objects.update(next_attempt_at=timezone.now())


def assert_chain_verifies_from(records: list[dict]) -> None:
    """What a receiver can check with only what it received (and, for the keyed links,
    the key): seq 1, 2, 3..., each prev_hash the previous hash, each hash recomputed."""
    keyring = audit_keyring()
    prev_hash = GENESIS_HASH
    for expected_seq, record in enumerate(records, start=1):
        assert record["seq"] == expected_seq
        assert record["prev_hash"] == prev_hash
        fields = {k: v for k, v in record.items() if k not in ("id", "key_id", "hash")}
        key = keyring.get(record["key_id"]) if record["key_id"] else None
        assert chain_hash(fields, key) == record["hash"]
        prev_hash = record["hash"]


def test_every_event_arrives_in_seq_order_in_bounded_batches_and_the_chain_verifies(
    siem_http, settings
):
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]
    AuditEventFactory.create_batch(12)

    (report,) = audit_forward_all(batch_size=5)

    assert (report.outcome, report.delivered, report.batches, report.cursor) == (
        Outcome.CAUGHT_UP,
        12,
        3,
        12,
    )
    assert lines_per_post(siem_http) == [5, 5, 2]
    assert_chain_verifies_from(siem_http.records())
    assert all(record["key_id"] for record in siem_http.records())
    post = siem_http.posts[0]
    assert post.headers["Content-Type"].startswith("application/x-ndjson")
    assert "Authorization" not in post.headers
    state = sink_state()
    assert state.cursor == 12 and state.last_delivered_at is not None
    assert state.lease_owner == "" and state.leased_until is None


def test_a_later_round_sends_only_what_was_written_since(siem_http):
    AuditEventFactory.create_batch(3)
    audit_forward_all()
    AuditEventFactory.create_batch(2)

    (report,) = audit_forward_all()

    assert report.delivered == 2
    assert received_seqs(siem_http) == [1, 2, 3, 4, 5]
    # Caught up: a round with nothing new sends nothing at all.
    audit_forward_all()
    assert len(siem_http.posts) == 2


def test_a_collector_answering_503_for_a_while_loses_nothing_and_backs_off(siem_http):
    AuditEventFactory.create_batch(7)
    siem_http.fail_next(2, status=503)

    (first,) = audit_forward_all(batch_size=3)

    assert first.outcome == Outcome.FAILED and "answered 503" in first.error
    state = sink_state()
    assert state.cursor == 0 and state.failures == 1
    assert "503" in state.last_error and state.last_error_at is not None
    assert state.next_attempt_at > state.last_error_at
    first_wait = state.next_attempt_at - state.last_error_at

    # Before the backoff is over, a round sends nothing.
    (waiting,) = audit_forward_all(batch_size=3)
    assert waiting.outcome == Outcome.BACKING_OFF and len(siem_http.posts) == 1

    backoff_over()
    (second,) = audit_forward_all(batch_size=3)
    state = sink_state()
    assert second.outcome == Outcome.FAILED and state.failures == 2 and state.cursor == 0
    assert state.next_attempt_at - state.last_error_at > first_wait  # doubling

    backoff_over()
    (third,) = audit_forward_all(batch_size=3)

    assert third.outcome == Outcome.CAUGHT_UP and third.delivered == 7
    assert received_seqs(siem_http) == list(range(1, 8))
    state = sink_state()
    assert (state.cursor, state.failures, state.next_attempt_at) == (7, 0, None)
    # The refused batch was the only one tried again: the same first three events.
    assert [post.status for post in siem_http.posts] == [503, 503, 200, 200, 200]
    assert siem_http.posts[0].body == siem_http.posts[2].body


def test_a_collector_that_stops_answering_past_the_timeout_loses_nothing(siem_http):
    AuditEventFactory.create_batch(4)
    siem_http.stall_next(1, seconds=5)

    (stalled,) = audit_forward_all(batch_size=2)

    assert stalled.outcome == Outcome.FAILED
    assert "did not answer within 1s" in stalled.error
    assert sink_state().cursor == 0
    backoff_over()
    (report,) = audit_forward_all(batch_size=2)
    assert report.delivered == 4 and received_seqs(siem_http) == [1, 2, 3, 4]


def test_a_collector_that_hangs_up_without_answering_loses_nothing(siem_http):
    AuditEventFactory.create_batch(4)
    siem_http.hang_up_next(1)

    (hung_up,) = audit_forward_all(batch_size=2)

    assert "closed the connection without answering" in hung_up.error
    assert sink_state().cursor == 0
    backoff_over()
    audit_forward_all(batch_size=2)
    assert received_seqs(siem_http) == [1, 2, 3, 4]


def test_an_answer_lost_after_the_collector_kept_a_batch_duplicates_only_that_batch(siem_http):
    AuditEventFactory.create_batch(3)
    audit_forward_all(batch_size=3)  # 1-3 accepted
    AuditEventFactory.create_batch(4)  # 4-7
    siem_http.hang_up_next(1, kept=True)  # 4-6 kept, but the answer never comes

    (lost,) = audit_forward_all(batch_size=3)
    assert lost.outcome == Outcome.FAILED and sink_state().cursor == 3
    backoff_over()
    audit_forward_all(batch_size=3)

    assert received_seqs(siem_http) == [1, 2, 3, 4, 5, 6, 4, 5, 6, 7]
    assert sink_state().cursor == 7


def test_the_bearer_token_is_sent_and_a_refused_token_is_an_error_that_does_not_show_it(
    siem_http, settings
):
    AuditEventFactory.create_batch(2)
    siem_http.token = "right-token-5f2c"
    settings.AIRLOCK_AUDIT_STREAM_TOKEN = "wrong-token-9d1a"

    (refused,) = audit_forward_all()

    assert "answered 401" in refused.error
    assert "wrong-token" not in refused.error and "wrong-token" not in sink_state().last_error
    assert sink_state().cursor == 0

    settings.AIRLOCK_AUDIT_STREAM_TOKEN = "right-token-5f2c"
    backoff_over()
    (report,) = audit_forward_all()
    assert report.delivered == 2
    assert siem_http.posts[-1].headers["Authorization"] == "Bearer right-token-5f2c"


def test_the_token_goes_with_the_splunk_scheme_when_set_as_splunk_hec_documents(
    siem_http, settings
):
    settings.AIRLOCK_AUDIT_STREAM_FORMAT = "splunk-hec"
    settings.AIRLOCK_AUDIT_STREAM_TOKEN = "hec-token-7a1e"
    siem_http.hec = True
    siem_http.token = "hec-token-7a1e"
    siem_http.auth_scheme = "Splunk"
    AuditEventFactory.create_batch(2)

    (bearer,) = audit_forward_all()  # the default scheme, which this collector refuses

    assert "answered 401" in bearer.error and sink_state().cursor == 0
    assert siem_http.posts[-1].headers["Authorization"] == "Bearer hec-token-7a1e"

    settings.AIRLOCK_AUDIT_STREAM_AUTH_SCHEME = "Splunk"
    backoff_over()
    (report,) = audit_forward_all()

    assert report.delivered == 2 and sink_state().cursor == 2
    assert siem_http.posts[-1].headers["Authorization"] == "Splunk hec-token-7a1e"


@pytest.mark.parametrize("scheme", ["Splunk token", "", "Bearer:", "Bé"])
def test_an_auth_scheme_that_is_not_one_word_stops_the_start_naming_the_variable(
    tmp_path, scheme
):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        "AIRLOCK_AUDIT_STREAM_AUTH_SCHEME": scheme,
    }

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    if scheme == "":
        # Empty is unset: the default, Bearer.
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "ImproperlyConfigured: AIRLOCK_AUDIT_STREAM_AUTH_SCHEME" in result.stderr


def test_splunk_hec_wraps_each_event_as_a_hec_event_object(siem_http, settings):
    settings.AIRLOCK_AUDIT_STREAM_FORMAT = "splunk-hec"
    siem_http.hec = True
    events = AuditEventFactory.create_batch(3)

    (report,) = audit_forward_all()

    assert report.delivered == 3
    assert siem_http.posts[0].headers["Content-Type"] == "application/json"
    hec_events = siem_http.hec_events()
    assert [hec_event["event"]["seq"] for hec_event in hec_events] == [1, 2, 3]
    for hec_event, event in zip(hec_events, events, strict=True):
        assert hec_event["source"] == "airlock" and hec_event["sourcetype"] == "airlock:audit"
        assert datetime.fromtimestamp(hec_event["time"], UTC) == event.created_at
        assert hec_event["event"]["hash"] == event.hash
    assert_chain_verifies_from(siem_http.records())


def test_a_redirect_is_not_followed_and_not_an_acceptance(siem_http):
    AuditEventFactory.create_batch(1)
    siem_http.fail_next(1, status=307)

    (report,) = audit_forward_all()

    assert "answered 307 (a redirect, not followed)" in report.error
    assert sink_state().cursor == 0


def test_an_unreachable_collector_is_an_error_naming_it(siem_http, settings):
    AuditEventFactory.create_batch(1)
    settings.AIRLOCK_AUDIT_STREAM_URL = "http://127.0.0.1:9/collect?token=in-the-query"

    (report,) = audit_forward_all()

    assert report.error == "could not connect to http://127.0.0.1:9/collect"
    assert sink_state().target == "http://127.0.0.1:9/collect"


def test_a_round_whose_time_budget_is_spent_leaves_the_rest_to_the_next(siem_http):
    AuditEventFactory.create_batch(2)

    (report,) = audit_forward_all(budget_seconds=0)

    assert report.outcome == Outcome.BUDGET_SPENT and siem_http.posts == []
    assert sink_state().lease_owner == ""  # let go, so the next round can start


def test_a_live_lease_of_another_worker_keeps_this_one_off_the_sink(siem_http):
    AuditEventFactory.create_batch(2)
    sink = http_sink()
    audit_forward(sink=sink)  # creates the row
    AuditEventFactory.create_batch(1)
    AuditSink.objects.update(
        lease_owner="other-worker", leased_until=timezone.now() + timezone.timedelta(minutes=1)
    )

    report = audit_forward(sink=sink)

    assert report.outcome == Outcome.LEASED and report.delivered == 0
    assert len(siem_http.posts) == 1
    assert sink_state().lease_owner == "other-worker"  # not released by a non-holder


def test_a_lease_left_by_a_dead_worker_runs_out_and_another_takes_over(siem_http):
    AuditEventFactory.create_batch(2)
    sink = http_sink()
    audit_forward(sink=sink)
    AuditEventFactory.create_batch(1)
    AuditSink.objects.update(
        lease_owner="killed-worker", leased_until=timezone.now() - timezone.timedelta(seconds=1)
    )

    report = audit_forward(sink=sink)

    assert report.outcome == Outcome.CAUGHT_UP and received_seqs(siem_http) == [1, 2, 3]


def test_forwarding_stops_at_a_missing_seq_instead_of_skipping_it(siem_http, tamper):
    AuditEventFactory.create_batch(5)
    tamper("DELETE FROM {table} WHERE seq = 3")

    (report,) = audit_forward_all()

    assert report.outcome == Outcome.GAP and report.missing_seq == 3
    assert received_seqs(siem_http) == [1, 2]
    assert sink_state().cursor == 2


def test_the_backlog_counts_unaccepted_events_and_dates_the_oldest(siem_http):
    events = AuditEventFactory.create_batch(3)
    row = audit_forward(sink=http_sink()) and sink_state()
    assert sink_backlog(row).events == 0 and sink_backlog(row).oldest_at is None

    newer = AuditEventFactory.create_batch(2)
    backlog = sink_backlog(sink_state())

    assert backlog.events == 2 and backlog.oldest_at == newer[0].created_at
    assert events[-1].seq == 3


def test_with_no_sink_configured_a_round_does_nothing(settings, django_assert_num_queries):
    settings.AIRLOCK_AUDIT_STREAM_URL = ""
    settings.AIRLOCK_AUDIT_SYSLOG_URL = ""
    AuditEventFactory.create_batch(2)

    with django_assert_num_queries(0):
        forward_audit_log()

    assert not AuditSink.objects.exists()


def test_the_beat_task_delivers_and_runs_every_forward_interval(siem_http, settings):
    AuditEventFactory.create_batch(2)

    forward_audit_log()

    assert received_seqs(siem_http) == [1, 2]
    entry = beat_schedule()["airlock: audit forwarding"]
    assert entry["task"] == forward_audit_log.name
    assert entry["every"] == settings.AIRLOCK_AUDIT_FORWARD_SECONDS and entry["expire_seconds"]
