"""Audit forwarding as deployed: the real `celery worker` and `celery beat`
(tests/grants/test_live_stack.py's stack: Redis, PostgreSQL) deliver the events this test
writes to a local HTTP collector (tests/siem_fake), through beat's "airlock: audit forwarding"
every AIRLOCK_AUDIT_FORWARD_SECONDS=1, with nobody calling forward. An outage of the collector
(503) loses nothing and reorders nothing; a worker SIGKILLed while the collector holds a batch
loses nothing and duplicates only that batch.

Needs AIRLOCK_LIVE_BROKER_URL and a PostgreSQL DATABASE_URL, like the stack's own tests.
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditSink
from audit.services import log_event
from tests.audit.test_forwarding import assert_chain_verifies_from
from tests.grants.test_live_stack import stack, wait_for  # noqa: F401 - the stack fixture
from tests.siem_fake.http_receiver import HttpReceiver

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FORWARD_SECONDS = 1
BATCH = 5


@pytest.fixture
def collector(settings, monkeypatch):
    """The collector, and the worker's settings pointing at it (the stack, started after
    this, takes them from os.environ). The beat entry is installed by this process, so its
    interval comes from this process's settings."""
    with HttpReceiver() as receiver:
        for name, value in (
            ("AIRLOCK_AUDIT_STREAM_URL", receiver.url),
            ("AIRLOCK_AUDIT_FORWARD_SECONDS", str(FORWARD_SECONDS)),
            ("AIRLOCK_AUDIT_FORWARD_BATCH", str(BATCH)),
            ("AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS", "2"),
        ):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AIRLOCK_AUDIT_SYSLOG_URL", raising=False)
        settings.AIRLOCK_AUDIT_FORWARD_SECONDS = FORWARD_SECONDS
        yield receiver


@pytest.fixture
def forwarding_stack(collector, stack):  # noqa: F811 - the stack, started with the sink's settings
    return stack


def write_events(count: int) -> None:
    """`count` events committed together, so that a round sees all of them or none."""
    with transaction.atomic():
        for number in range(count):
            log_event(action="request.approved", actor_label="alice",
                      target_type="requests_app.accessrequest", target_id=str(number),
                      reason="Live forwarding")


def newest_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def sink() -> AuditSink | None:
    return AuditSink.objects.filter(name="http").first()


def cursor() -> int:
    row = sink()
    return row.cursor if row else 0


def received_seqs(collector) -> list[int]:
    return [record["seq"] for record in collector.records()]


def observed(collector):
    return lambda: {
        "received": received_seqs(collector),
        "statuses": [post.status for post in collector.posts],
        "sink": {k: v for k, v in (sink().__dict__ if sink() else {}).items()
                 if not k.startswith("_")},
    }


def test_beat_delivers_every_event_and_an_outage_of_the_collector_loses_and_reorders_nothing(
    collector, forwarding_stack
):
    write_events(7)
    wait_for(
        "the first 7 events at the collector, delivered by the worker on beat's round",
        lambda: received_seqs(collector) == [1, 2, 3, 4, 5, 6, 7],
        timeout=30,
        stack=forwarding_stack,
        observe=observed(collector),
    )
    assert [len(post.body.splitlines()) for post in collector.posts] == [5, 2]

    collector.fail_until_recovered(503)
    write_events(8)
    wait_for(
        "two tries refused with 503, recorded as the sink's last error",
        lambda: sum(post.status == 503 for post in collector.posts) >= 2
        and "503" in (sink().last_error or ""),
        timeout=20,
        stack=forwarding_stack,
        observe=observed(collector),
    )
    assert cursor() == 7  # nothing refused counts as delivered
    assert received_seqs(collector) == [1, 2, 3, 4, 5, 6, 7]

    collector.recover()
    wait_for(
        "the backlog delivered once the collector recovered",
        lambda: cursor() == newest_seq() == 15,
        timeout=30,
        stack=forwarding_stack,
        observe=observed(collector),
    )
    # Refused batches were kept nowhere, so nothing arrived twice; what arrived is the
    # whole chain, in order, verifiable from the records alone.
    assert received_seqs(collector) == list(range(1, 16))
    assert_chain_verifies_from(collector.records())
    row = sink()
    assert row.failures == 0 and row.next_attempt_at is None


def test_a_worker_killed_while_the_collector_holds_a_batch_loses_nothing_and_resends_only_it(
    collector, forwarding_stack
):
    write_events(3)
    wait_for(
        "the first 3 events delivered",
        lambda: cursor() == 3,
        timeout=30,
        stack=forwarding_stack,
        observe=observed(collector),
    )

    hold = collector.hold_next()
    write_events(6)  # seq 4 to 9: a batch of 5 (4-8), then 9
    assert hold.arrived.wait(30), f"no batch reached the collector\n{forwarding_stack.logs()}"
    forwarding_stack.kill("worker")
    # The collector keeps the batch, but the worker that sent it never hears so.
    hold.release.set()
    assert hold.kept.wait(10)
    assert cursor() == 3

    forwarding_stack.start("worker")
    forwarding_stack.wait_ready()
    # The dead worker's lease would run out in a minute (SinkLease.seconds()); moved into
    # the past here rather than waited for, as a minute later would find it.
    AuditSink.objects.filter(name="http").update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    wait_for(
        "the new worker delivering the rest",
        lambda: cursor() == newest_seq() == 9,
        timeout=30,
        stack=forwarding_stack,
        observe=observed(collector),
    )
    assert received_seqs(collector) == [1, 2, 3, 4, 5, 6, 7, 8, 4, 5, 6, 7, 8, 9]
    unique = {record["seq"]: record for record in collector.records()}
    assert_chain_verifies_from([unique[seq] for seq in sorted(unique)])
