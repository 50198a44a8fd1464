import pytest

from audit import verification
from audit.models import AuditChainHead, AuditEvent
from audit.verification import verify_chain
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def test_an_empty_log_verifies():
    result = verify_chain()

    assert result.ok
    assert result.checked == 0
    assert result.first_broken is None


def test_chain_verifies_after_many_events_read_in_chunks(monkeypatch):
    # Small chunks, so the walk crosses many fetch boundaries as it would on a long log.
    monkeypatch.setattr(verification, "CHUNK_SIZE", 7)
    events = AuditEventFactory.create_batch(120)

    result = verify_chain()

    assert result.ok, result.problem
    assert result.checked == 120
    assert result.head_hash == events[-1].hash


def test_edited_reason_is_detected_at_that_event(tamper):
    events = AuditEventFactory.create_batch(5)
    tamper("UPDATE {table} SET reason = %s WHERE seq = %s", ["nothing to see", 3])

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[2].pk
    assert result.checked == 2
    assert "row edited" in result.problem


def test_edited_detail_is_detected_at_that_event(tamper):
    events = AuditEventFactory.create_batch(5)
    tamper("UPDATE {table} SET detail = %s WHERE seq = %s", ['{"environment": "staging"}', 4])

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[3].pk
    assert "row edited" in result.problem


def test_edit_with_a_recomputed_hash_breaks_the_next_link(tamper):
    events = AuditEventFactory.create_batch(4)
    forged = AuditEvent.objects.get(seq=2)
    forged.reason = "rewritten"
    tamper(
        "UPDATE {table} SET reason = %s, hash = %s WHERE seq = %s",
        ["rewritten", forged.compute_hash(), 2],
    )

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[2].pk
    assert "broken link" in result.problem


def test_deleted_row_is_detected_at_the_event_after_the_gap(tamper):
    events = AuditEventFactory.create_batch(6)
    tamper("DELETE FROM {table} WHERE seq IN (3, 4)")

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[4].pk
    assert result.problem == "seq 3 to 4 missing before it (deleted rows)"


def test_deleted_and_renumbered_rows_are_detected(tamper):
    events = AuditEventFactory.create_batch(5)
    tamper("DELETE FROM {table} WHERE seq = 3")
    tamper("UPDATE {table} SET seq = seq - 1 WHERE seq > 3")

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[3].pk
    assert "broken link" in result.problem


def test_deleting_the_newest_events_is_detected(tamper):
    AuditEventFactory.create_batch(5)
    tamper("DELETE FROM {table} WHERE seq >= 4")

    result = verify_chain()

    assert not result.ok
    assert result.first_broken is None
    assert result.checked == 3
    assert "ends at seq 3 but reached seq 5" in result.problem


def test_swapped_events_are_detected(tamper):
    events = AuditEventFactory.create_batch(4)
    # Swap the positions of seq 2 and 3, going through a free number for the unique index.
    tamper("UPDATE {table} SET seq = 1000 WHERE seq = 2")
    tamper("UPDATE {table} SET seq = 2 WHERE seq = 3")
    tamper("UPDATE {table} SET seq = 3 WHERE seq = 1000")

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == events[2].pk
    assert "broken link" in result.problem


def test_events_appended_after_the_head_was_read_still_verify():
    events = AuditEventFactory.create_batch(5)
    # The head as verification reads it when two writers append while it walks the log.
    AuditChainHead.objects.update(seq=3, hash=events[2].hash)

    result = verify_chain()

    assert result.ok, result.problem
    assert result.checked == 5


def test_a_missing_chain_head_is_reported():
    AuditEventFactory.create_batch(2)
    AuditChainHead.objects.all().delete()

    result = verify_chain()

    assert not result.ok
    assert "chain head record is missing" in result.problem


def test_a_head_that_disagrees_with_its_event_is_reported():
    events = AuditEventFactory.create_batch(3)
    AuditChainHead.objects.update(hash=events[0].hash)

    result = verify_chain()

    assert not result.ok
    assert result.problem == "seq 3 does not have the hash recorded in the chain head"


def test_appending_after_the_head_was_lost_continues_the_chain():
    AuditEventFactory.create_batch(2)
    AuditChainHead.objects.all().delete()

    assert AuditEventFactory().seq == 3
    assert verify_chain().ok
