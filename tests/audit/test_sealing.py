"""Events committed while another transaction held the chain head (PostgreSQL): they wait
in AuditPendingEvent, are sealed into the chain by the next holder, in order, exactly once,
and nothing is lost when a holder that sealed them rolls back."""

import threading
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction

from audit import services
from audit.models import AuditEvent, AuditPendingEvent
from audit.selectors import pending_seal_backlog
from audit.services import audit_pending_seal, log_event
from audit.tasks import seal_audit_log
from audit.verification import verify_chain
from grants.schedule import beat_schedule

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


@contextmanager
def head_held_elsewhere(*, commit: bool = True):
    """Another connection's transaction takes the chain head (it logs "holder") and holds
    it until the block ends; then it commits, or rolls back."""
    taken, release, done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def hold():
        try:
            with transaction.atomic():
                log_event(action="request.approved", target_id="holder")
                taken.set()
                release.wait(timeout=30)
                if not commit:
                    raise Rollback
        except Rollback:
            pass
        except Exception as exc:  # reported below
            errors.append(exc)
            taken.set()
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(timeout=30)
    try:
        yield
    finally:
        release.set()
        assert done.wait(timeout=30)
        thread.join(timeout=30)
    assert not errors, errors


def chain() -> list[tuple[str, int]]:
    return list(AuditEvent.objects.values_list("target_id", "seq"))


def test_events_written_while_the_head_is_held_wait_and_are_sealed_in_order(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere():
        for name in ("a", "b", "c"):
            with transaction.atomic():
                event = log_event(action="request.created", target_id=name)
            assert event.seq is None  # it did not wait for the head
        assert list(AuditPendingEvent.objects.values_list("target_id", flat=True)) == [
            "a",
            "b",
            "c",
        ]
        # The holder has the head: a seal now does nothing, and does not wait either.
        assert audit_pending_seal() == 0
        assert pending_seal_backlog().events == 3

    # The holder sealed them once it committed (its after-commit seal).
    assert chain() == [("before", 1), ("holder", 2), ("a", 3), ("b", 4), ("c", 5)]
    assert not AuditPendingEvent.objects.exists()
    assert pending_seal_backlog().events == 0
    result = verify_chain()
    assert result.ok and result.checked == 5 and result.pending == 0


def test_a_holder_that_sealed_waiting_events_and_rolled_back_loses_none(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            log_event(action="request.created", target_id="waiting")
    # The holder rolled back: it sealed nothing, and its own event is gone with it.
    assert chain() == [("before", 1)]
    assert AuditPendingEvent.objects.count() == 1

    # The next writer takes the head and seals the waiting event before its own...
    with pytest.raises(Rollback), transaction.atomic():
        log_event(action="request.created", target_id="rolled back")
        assert chain() == [("before", 1), ("waiting", 2), ("rolled back", 3)]
        raise Rollback
    # ...but rolls back too: the waiting event is back where it was, not lost.
    assert chain() == [("before", 1)]
    assert list(AuditPendingEvent.objects.values_list("target_id", flat=True)) == ["waiting"]

    assert audit_pending_seal() == 1
    assert chain() == [("before", 1), ("waiting", 2)]
    assert verify_chain().ok


def test_a_backlog_is_sealed_in_batches_and_a_limit_bounds_one_call(on_postgres, monkeypatch):
    monkeypatch.setattr(services, "SEAL_BATCH", 3)
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        for index in range(8):
            with transaction.atomic():
                log_event(action="request.created", target_id=f"e{index}")
    assert AuditPendingEvent.objects.count() == 8

    assert audit_pending_seal(limit=3) == 3
    assert AuditPendingEvent.objects.count() == 5
    assert audit_pending_seal() == 5
    assert [seq for _, seq in chain()] == list(range(1, 10))
    assert [name for name, _ in chain()] == ["before"] + [f"e{index}" for index in range(8)]
    assert verify_chain().ok


def test_the_seal_keeps_what_happened_and_when(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            written = log_event(
                action="grant.applied",
                actor_label="workflow acme/api@production",
                target_type="grants.grant",
                target_id="42",
                target_repr="grant #42",
                reason="deploy",
                detail={"run": 7, "nested": {"ok": True}, "ratio": 0.5},
            )
    audit_pending_seal()
    sealed = AuditEvent.objects.get(target_id="42")
    for name in AuditPendingEvent.CONTENT_FIELDS:
        assert getattr(sealed, name) == getattr(written, name), name
    assert sealed.hash == sealed.compute_hash()


def test_verify_audit_log_says_how_many_events_wait_for_their_seal(on_postgres, capsys):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            log_event(action="request.created", target_id="waiting")

    call_command("verify_audit_log")
    out = capsys.readouterr().out
    assert "Audit log OK: 1 events" in out
    assert "1 newer event(s) committed but not sealed into the chain yet" in out

    seal_audit_log()  # beat's "airlock: audit seal"
    call_command("verify_audit_log")
    out = capsys.readouterr().out
    assert "Audit log OK: 2 events" in out and "not sealed" not in out


def test_beat_seals_what_a_race_left_waiting():
    entry = beat_schedule()["airlock: audit seal"]
    assert entry["task"] == "audit.tasks.seal_audit_log"
    assert entry["every"] <= 60


def test_metrics_show_the_events_waiting_for_their_seal(on_postgres, client, settings):
    settings.AIRLOCK_METRICS_TOKEN = "m" * 32
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            log_event(action="request.created", target_id="waiting")

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 32).content.decode()
    assert "airlock_audit_events_pending_seal 1.0" in body
    age_line = next(
        line
        for line in body.splitlines()
        if line.startswith("airlock_audit_events_pending_seal_age_seconds ")
    )
    assert float(age_line.split()[1]) >= 0

    audit_pending_seal()
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 32).content.decode()
    assert "airlock_audit_events_pending_seal 0.0" in body
    assert "airlock_audit_events_pending_seal_age_seconds 0.0" in body


def test_a_waiting_event_cannot_be_changed_on_postgresql(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            log_event(action="request.created", target_id="waiting", reason="as written")
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditpendingevent SET reason = 'rewritten'")
    assert AuditPendingEvent.objects.get().reason == "as written"


def test_a_lone_writer_is_sealed_at_once_and_leaves_nothing_waiting():
    # On SQLite every writer is alone (BEGIN IMMEDIATE); on PostgreSQL one with the head free.
    first = log_event(action="request.created", target_id="a")
    with transaction.atomic():
        second = log_event(action="request.created", target_id="b")
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    assert audit_pending_seal() == 0
    assert not AuditPendingEvent.objects.exists()
    assert chain() == [("a", 1), ("b", 2)]
