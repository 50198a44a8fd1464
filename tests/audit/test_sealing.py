"""Events committed while another transaction held the chain head (PostgreSQL): they wait
in AuditPendingEvent, are sealed into the chain by the next holder, in order, exactly once,
and nothing is lost when a holder that sealed them rolls back."""

import threading
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

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


# --- rows nobody but log_event() wrote (the review's findings) -------------------------------


def forge_pending(**overrides):
    """A row put in the pending table by someone with database access, not by log_event."""
    row = {
        "created_at": "2026-01-01T00:00:00+00:00",
        "actor_label": "alice",
        "action": "request.approved",
        "target_type": "requests_app.accessrequest",
        "target_id": "7",
        "target_repr": "request #7",
        "reason": "looks legitimate",
        "detail": "{}",
        "key_id": "",
        "mac": "0" * 64,
    }
    row.update(overrides)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditpendingevent (created_at, actor_id, actor_label, action, "
            "target_type, target_id, target_repr, reason, detail, key_id, mac) VALUES "
            "(%s, NULL, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
            [row[name] for name in ("created_at", "actor_label", "action", "target_type",
                                    "target_id", "target_repr", "reason", "detail",
                                    "key_id", "mac")],
        )
        return cursor.fetchone()[0]


def test_a_row_put_in_the_pending_table_is_never_signed_into_the_chain(on_postgres):
    log_event(action="request.created", target_id="before")
    forged = forge_pending()

    assert audit_pending_seal() == 1

    assert not AuditEvent.objects.filter(action="request.approved").exists()
    refusal = AuditEvent.objects.get(action="audit.pending_refused")
    assert refusal.target_id == str(forged) and "AIRLOCK_AUDIT_KEYS does not hold" in refusal.reason
    assert refusal.detail["claimed"]["action"] == "request.approved"
    assert not AuditPendingEvent.objects.exists()
    assert verify_chain().ok


def test_a_waiting_event_rewritten_in_the_pending_table_is_refused(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        with transaction.atomic():
            log_event(action="request.approved", target_id="9", reason="as written")
    row = AuditPendingEvent.objects.values("key_id", "mac").get()
    # Its MAC, copied onto other content (UPDATE is refused, so: delete and insert again).
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditpendingevent")
    forge_pending(target_id="9", reason="rewritten", key_id=row["key_id"], mac=row["mac"])

    audit_pending_seal()

    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "request.created",
        "audit.pending_refused",
    ]


def test_an_unreadable_pending_row_is_refused_and_writing_goes_on(on_postgres):
    log_event(action="request.created", target_id="before")
    forge_pending(detail='{"n": 1e5000}')  # reads back as an integer of 5,001 digits

    with transaction.atomic():
        event = log_event(action="request.created", target_id="after")

    assert event.seq == 3  # sealed at once, after the refusal
    assert list(AuditEvent.objects.values_list("action", "target_id")) == [
        ("request.created", "before"),
        ("audit.pending_refused", AuditEvent.objects.get(seq=2).target_id),
        ("request.created", "after"),
    ]
    assert "cannot be read" in AuditEvent.objects.get(seq=2).reason
    assert verify_chain().ok


def test_the_after_commit_probe_takes_no_lock_when_nothing_waits(on_postgres):
    log_event(action="request.created", target_id="before")
    with connection.cursor() as cursor:
        cursor.execute(services._SEAL_WANTED_SQL + ", pg_current_xact_id_if_assigned()",
                       [1])
        wanted, xid = cursor.fetchone()
    assert wanted is False and xid is None


def test_a_value_too_long_for_its_column_is_refused_when_the_event_would_wait(on_postgres):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        # Refused, as an inline event's INSERT refuses it: never cut short.
        with pytest.raises(DatabaseError), transaction.atomic():
            log_event(action="request.created", target_id="x" * 256)
    assert not AuditPendingEvent.objects.exists()
    assert chain() == [("before", 1)]



def _vacuums(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("VACUUM")]


VACUUM_BOTH = (
    f"VACUUM (SKIP_LOCKED, TRUNCATE false) {AuditPendingEvent._meta.db_table}, "
    f"{services._HEAD}"
)


def test_writers_vacuum_the_seal_tables_after_so_many_dead_rows(on_postgres, monkeypatch):
    # Every waiting event leaves a dead row in the pending table, and every move of the
    # head one in the head's; "does anything wait?" and the head's read walk them all until
    # a vacuum (1.4 ms, against 0.005 ms vacuumed, after 85,000 events). Autovacuum may be
    # off, or a minute away: the writers vacuum them themselves, after their commit.
    monkeypatch.setattr(services, "VACUUM_AFTER", 5)
    monkeypatch.setattr(services, "_dead_rows_left", 0)
    with CaptureQueriesContext(connection) as captured:
        for index in range(6):
            log_event(action="request.created", target_id=f"e{index}")
    assert _vacuums(captured) == [VACUUM_BOTH]
    assert services._dead_rows_left == 1  # the sixth head move, since the vacuum
    assert verify_chain().ok


def test_a_waiting_event_counts_as_a_dead_row_to_come(on_postgres, monkeypatch):
    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        monkeypatch.setattr(services, "_dead_rows_left", 0)
        for index in range(3):
            log_event(action="request.created", target_id=f"w{index}")
        assert services._dead_rows_left == 3  # deleted by whoever seals them


def test_beat_vacuums_the_seal_tables_every_sweep(on_postgres, monkeypatch):
    monkeypatch.setattr(services, "_dead_rows_left", 1)
    with CaptureQueriesContext(connection) as captured:
        seal_audit_log()
    assert _vacuums(captured) == [VACUUM_BOTH]
    assert services._dead_rows_left == 0


def test_no_vacuum_ever_cuts_the_seal_tables_end(on_postgres):
    # Cutting a table's end waits up to 5 s for its exclusive lock, which every audited
    # transaction's read of the pending table holds off: the vacuum's caller waited, and
    # writers queued behind it. Neither Airlock's vacuum nor autovacuum does it here.
    assert "TRUNCATE false" in services._VACUUM_SQL
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN (%s, %s)",
            [AuditPendingEvent._meta.db_table, services._HEAD],
        )
        options = dict(cursor.fetchall())
    assert len(options) == 2
    assert all("vacuum_truncate=false" in (found or []) for found in options.values())


def test_nothing_is_vacuumed_with_autocommit_turned_off_by_hand(on_postgres, monkeypatch):
    monkeypatch.setattr(services, "_dead_rows_left", 10**6)
    transaction.set_autocommit(False)
    try:
        assert services.audit_tables_vacuum(force=True) is False
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


def test_the_head_row_follows_every_seal(on_postgres):
    from audit.models import AuditChainHead

    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        for index in range(3):
            log_event(action="request.created", target_id=f"w{index}")
    assert audit_pending_seal() == 3
    newest = AuditEvent.objects.order_by("-seq").first()
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (newest.seq, newest.hash) == (4, newest.hash)


def test_a_writer_that_seals_what_waits_writes_the_head_once(on_postgres):
    from audit.models import AuditChainHead

    log_event(action="request.created", target_id="before")
    with head_held_elsewhere(commit=False):
        log_event(action="request.created", target_id="waiting")
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        event = log_event(action="request.created", target_id="sealer")
    head_writes = [q for q in captured.captured_queries
                   if q["sql"].startswith(f"UPDATE {services._HEAD}") or "moved AS" in q["sql"]]
    assert len(head_writes) == 1
    assert chain() == [("before", 1), ("waiting", 2), ("sealer", 3)] and event.seq == 3
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (3, event.hash)
    assert verify_chain().ok


def test_nothing_is_vacuumed_inside_a_transaction_nor_on_sqlite(monkeypatch):
    monkeypatch.setattr(services, "_dead_rows_left", 10**6)
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        # VACUUM cannot run inside a transaction: this would fail, not wait.
        assert services.audit_tables_vacuum(force=True) is False
        log_event(action="request.created", target_id="inside")
    assert _vacuums(captured) == []
    # Outside one, only PostgreSQL's tables are vacuumed (SQLite's VACUUM rewrites the file).
    assert services.audit_tables_vacuum(force=True) is (connection.vendor == "postgresql")
