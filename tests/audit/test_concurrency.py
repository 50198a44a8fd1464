"""Writers in separate threads, each with its own database connection, appending at once."""

import threading
import time

import pytest
from django.db import connection, connections, transaction

from audit.models import AuditEvent, AuditPendingEvent
from audit.services import audit_pending_seal, log_event
from audit.verification import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(targets, use_database):
    errors = []

    def wrapped(target):
        use_database()
        try:
            target()
        except Exception as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrapped, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    assert not errors, errors


def test_concurrent_writers_do_not_fork_the_chain(writer_database):
    writers, events_each = 8, 15
    start = threading.Barrier(writers)

    def writer(number):
        def write():
            start.wait()
            for index in range(events_each):
                with transaction.atomic():
                    log_event(
                        action="request.created",
                        target_type="test.writer",
                        target_id=str(number),
                        detail={"index": index},
                    )
                    # Hold the transaction open a moment, as a real change would, so the
                    # other writers pile up behind the chain lock.
                    time.sleep(0.002)

        return write

    run_in_threads([writer(number) for number in range(writers)], writer_database)

    writer_database()
    # What beat's "airlock: audit seal" does for any event a race left waiting.
    audit_pending_seal()
    assert not AuditPendingEvent.objects.exists()
    seqs = list(AuditEvent.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, writers * events_each + 1))
    assert AuditEvent.objects.values("prev_hash").distinct().count() == len(seqs)
    result = verify_chain()
    assert result.ok, result.problem
    assert result.checked == writers * events_each


def test_a_second_writer_passes_a_held_head_where_the_database_allows(writer_database):
    """On PostgreSQL a writer does not queue behind another's transaction: its event waits
    for its seal instead, and takes the next seq once the first commits. SQLite lets one
    writer in at a time (BEGIN IMMEDIATE), so there the second waits, and every event is
    sealed in its own transaction. The chain comes out the same."""
    passes = connection.vendor == "postgresql"
    writer_database()
    log_event(action="request.created", target_id="before")  # the head exists already
    first_logged = threading.Event()
    first_may_commit = threading.Event()
    second_done = threading.Event()
    second_was_done_before_first_committed = []
    second_sealed_at_once = []

    def first():
        with transaction.atomic():
            log_event(action="request.approved", target_id="first")
            first_logged.set()
            first_may_commit.wait(timeout=30)
            second_was_done_before_first_committed.append(second_done.is_set())

    def second():
        first_logged.wait(timeout=30)
        with transaction.atomic():
            event = log_event(action="request.approved", target_id="second")
        second_sealed_at_once.append(event.seq is not None and event.hash != "")
        second_done.set()

    def referee():
        first_logged.wait(timeout=30)
        # Where the second writer would be held back, long enough to see it was.
        second_done.wait(timeout=30 if passes else 1)
        first_may_commit.set()

    run_in_threads([first, second, referee], writer_database)

    assert second_was_done_before_first_committed == [passes]
    assert second_sealed_at_once == [not passes]
    writer_database()
    # On PostgreSQL, sealed by the first writer once it let go of the head: nothing else ran.
    assert not AuditPendingEvent.objects.exists()
    assert list(AuditEvent.objects.values_list("target_id", "seq")) == [
        ("before", 1),
        ("first", 2),
        ("second", 3),
    ]
    assert verify_chain().ok
