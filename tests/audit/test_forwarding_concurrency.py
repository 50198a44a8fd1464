"""Delivery against other workers and writers, each thread with its own database connection
(PostgreSQL, or SQLite on a file): one deliverer per sink, and writing the log never waits
for a sink."""

import threading

import pytest
from django.db import connections

from audit.forwarding import audit_forward, audit_sink_rewind, configured_sinks
from audit.forwarding.delivery import Outcome
from audit.models import AuditEvent, AuditSink
from audit.services import log_event
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(target, use_database, results):
    def run():
        use_database()
        try:
            results.append(target())
        except Exception as exc:  # reported by the test
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_second_worker_does_not_deliver_a_sink_while_the_first_is_sending(
    siem_http, writer_database
):
    writer_database()
    AuditEventFactory.create_batch(3)
    hold = siem_http.hold_next()
    first_results = []
    first = in_thread(
        lambda: audit_forward(sink=configured_sinks()[0]), writer_database, first_results
    )
    assert hold.arrived.wait(30), "the first worker's batch never reached the collector"

    second = audit_forward(sink=configured_sinks()[0])

    assert second.outcome == Outcome.LEASED and second.delivered == 0
    hold.release.set()
    first.join(30)
    (first_report,) = first_results
    assert first_report.outcome == Outcome.CAUGHT_UP and first_report.delivered == 3
    assert [record["seq"] for record in siem_http.records()] == [1, 2, 3]
    assert len(siem_http.posts) == 1
    assert AuditSink.objects.get(name="http").cursor == 3


def test_the_log_is_written_while_a_batch_is_in_flight(siem_http, writer_database):
    writer_database()
    AuditEventFactory.create_batch(2)
    hold = siem_http.hold_next()
    delivery_results, writer_results = [], []
    delivery = in_thread(
        lambda: audit_forward(sink=configured_sinks()[0]), writer_database, delivery_results
    )
    assert hold.arrived.wait(30)

    # Delivery holds no transaction and no lock across the POST: this write commits while
    # the batch is still unanswered.
    writer = in_thread(
        lambda: log_event(action="request.created", reason="written mid-delivery").seq,
        writer_database,
        writer_results,
    )
    writer.join(30)
    finished_while_held = not writer.is_alive() and not hold.release.is_set()
    hold.release.set()
    delivery.join(30)

    assert finished_while_held and writer_results == [3]
    assert AuditEvent.objects.count() == 3
    # The event written meanwhile went out in the same round, after the held batch.
    assert delivery_results[0].delivered == 3
    assert [record["seq"] for record in siem_http.records()] == [1, 2, 3]


def test_a_rewind_while_a_batch_is_in_flight_stands_over_that_batch(siem_http, writer_database):
    writer_database()
    AuditEventFactory.create_batch(3)
    audit_forward(sink=configured_sinks()[0])  # 1-3 accepted
    AuditEventFactory.create_batch(2)  # 4-5
    hold = siem_http.hold_next()
    results = []
    delivery = in_thread(
        lambda: audit_forward(sink=configured_sinks()[0]), writer_database, results
    )
    assert hold.arrived.wait(30)

    audit_sink_rewind(sink=configured_sinks()[0], from_seq=2)  # its own event is seq 6
    hold.release.set()
    delivery.join(30)

    # The holder advances the cursor only from the value it read (3): the rewind wins.
    assert results[0].outcome == Outcome.INTERRUPTED
    assert AuditSink.objects.get(name="http").cursor == 1
    audit_forward(sink=configured_sinks()[0])
    assert [record["seq"] for record in siem_http.records()] == [1, 2, 3, 4, 5, 2, 3, 4, 5, 6]
