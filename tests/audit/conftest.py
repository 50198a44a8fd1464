"""Audit test helpers: audit keys, and tampering with the table the way someone with
database access could."""

import sqlite3

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from audit.models import AuditEvent

TABLE = AuditEvent._meta.db_table
# The row trigger of migration 0002; the TRUNCATE trigger (0003) is off in the test
# database already (tests/conftest.py) and is left as it is.
ROW_TRIGGER = "audit_event_append_only"

# AIRLOCK_AUDIT_KEYS values, as an operator would generate them.
AUDIT_KEY = "new-audit-key-Qw8Zr2Lk9Tn4Vb7Xc1Md5Pf3Hs6Jg0Ye"
OLDER_AUDIT_KEY = "old-audit-key-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv"


@pytest.fixture
def tamper():
    """Run raw SQL against the audit table, bypassing the ORM's refusal.

    On PostgreSQL the append-only row trigger is switched off around the statement, as a
    table owner could do; the switch is transactional, so it ends with the test anyway.
    """

    def run(sql: str, params=()):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {ROW_TRIGGER}")
            cursor.execute(sql.format(table=TABLE), params)
            if connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {ROW_TRIGGER}")

    return run


@pytest.fixture
def writer_database(transactional_db, tmp_path):
    """Call the returned function at the start of every thread that writes or reads.

    On PostgreSQL it does nothing: each thread opens its own connection to the test
    database. SQLite's in-memory test database shares one cache between connections and
    answers a second writer with "table is locked" at once instead of queueing it, unlike
    the file Airlock runs on. So on SQLite the test database is copied to a file, and each
    thread connects to that with the project's settings (BEGIN IMMEDIATE, busy timeout).
    """
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield lambda: None
        return

    path = tmp_path / "audit-concurrency.sqlite3"
    connection.ensure_connection()
    copy = sqlite3.connect(path)
    connection.connection.backup(copy)
    copy.close()
    file_settings = {**connection.settings_dict, "NAME": str(path)}
    in_memory = connections[DEFAULT_DB_ALIAS]

    def use_file_database():
        connections[DEFAULT_DB_ALIAS] = type(in_memory)(file_settings, DEFAULT_DB_ALIAS)

    yield use_file_database
    connections[DEFAULT_DB_ALIAS].close()
    connections[DEFAULT_DB_ALIAS] = in_memory
