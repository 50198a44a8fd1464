"""The chain table's indexes (audit 0008): every event writes one entry into each, under
the chain head, so none is kept that nothing reads; the hash stays unique."""

import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from audit.services import log_event

pytestmark = pytest.mark.django_db


def test_two_events_cannot_share_a_hash():
    first = log_event(action="request.created", target_id="1")
    copy = AuditEvent(
        seq=first.seq + 1,
        created_at=first.created_at,
        actor_label=first.actor_label,
        action=first.action,
        prev_hash=first.hash,
        hash=first.hash,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        copy.save(force_insert=True)


def _indexed_columns() -> list[tuple[tuple[str, ...], bool]]:
    """Each index's columns, and whether it is unique (a unique constraint's index too)."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, AuditEvent._meta.db_table)
    return sorted(
        (tuple(info["columns"]), bool(info["unique"]))
        for info in found.values()
        if info["index"] or info["unique"] or info["primary_key"]
    )


def test_no_index_serves_nothing(on_postgres):
    indexes = _indexed_columns()
    # One per purpose: (action, -seq) serves lookups by action, so action has none of its
    # own; and no LIKE (varchar_pattern_ops) twin of action's or hash's.
    assert [columns for columns, _ in indexes if columns[0] == "action"] == [("action", "seq")]
    assert [entry for entry in indexes if entry[0] == ("hash",)] == [(("hash",), True)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
            [AuditEvent._meta.db_table, "%\\_like"],
        )
        assert cursor.fetchall() == []
