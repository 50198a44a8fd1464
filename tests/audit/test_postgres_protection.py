"""On PostgreSQL the audit table itself refuses UPDATE and DELETE (migration 0002)."""

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from audit.verification import verify_chain
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.postgres

TABLE = AuditEvent._meta.db_table


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


@pytest.mark.django_db(transaction=True)
def test_flush_between_transactional_tests_still_empties_the_table(on_postgres):
    # pytest-django resets the database after a transactional test with Django's flush,
    # which uses TRUNCATE: the row triggers leave it alone, as they must.
    AuditEventFactory.create_batch(2)

    call_command("flush", verbosity=0, interactive=False)

    assert AuditEvent.objects.count() == 0
    assert AuditEventFactory().seq == 1
    assert verify_chain().ok
