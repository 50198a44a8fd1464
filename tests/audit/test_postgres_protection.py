"""On PostgreSQL the audit table itself refuses UPDATE and DELETE (migration 0002) and
TRUNCATE (migration 0003)."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from audit.verification import verify_chain
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.postgres

TABLE = AuditEvent._meta.db_table
TRUNCATE_TRIGGER = "audit_event_refuse_truncate"


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=TABLE), params)


@pytest.mark.django_db
def test_update_is_refused_by_the_database(on_postgres):
    AuditEventFactory(reason="original")

    with pytest.raises(IntegrityError, match="audit log is append-only: UPDATE"):
        with transaction.atomic():
            raw("UPDATE {table} SET reason = %s", ["rewritten"])

    assert AuditEvent.objects.get().reason == "original"


@pytest.mark.django_db
def test_delete_is_refused_by_the_database(on_postgres):
    AuditEventFactory.create_batch(2)

    with pytest.raises(IntegrityError, match="audit log is append-only: DELETE"):
        with transaction.atomic():
            raw("DELETE FROM {table} WHERE seq = 2")

    assert AuditEvent.objects.count() == 2
    assert verify_chain().ok


def refuse_truncate_as_deployed():
    # The test database has this trigger switched off, so that pytest-django can flush it
    # between transactional tests (tests/conftest.py). Every deployment has it on. The
    # switch is transactional, so it ends with the test.
    raw("ALTER TABLE {table} ENABLE TRIGGER " + TRUNCATE_TRIGGER)


@pytest.mark.django_db
def test_truncate_is_refused_by_the_database(on_postgres):
    AuditEventFactory.create_batch(2)
    refuse_truncate_as_deployed()

    with pytest.raises(
        IntegrityError, match="audit log is append-only: TRUNCATE on audit_auditevent is refused"
    ):
        with transaction.atomic():
            raw("TRUNCATE {table} CASCADE")

    assert AuditEvent.objects.count() == 2
    assert verify_chain().ok


@pytest.mark.django_db
def test_manage_py_flush_cannot_empty_the_audit_log(on_postgres):
    AuditEventFactory.create_batch(2)
    refuse_truncate_as_deployed()

    with pytest.raises(CommandError, match="couldn't be flushed"):
        call_command("flush", verbosity=0, interactive=False)

    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_flush_between_transactional_tests_still_empties_the_table(on_postgres):
    # pytest-django resets the database after a transactional test with Django's flush,
    # which uses TRUNCATE: the row triggers leave it alone, and the test database has the
    # TRUNCATE trigger switched off (tests/conftest.py).
    AuditEventFactory.create_batch(2)

    call_command("flush", verbosity=0, interactive=False)

    assert AuditEvent.objects.count() == 0
    assert AuditEventFactory().seq == 1
    assert verify_chain().ok
