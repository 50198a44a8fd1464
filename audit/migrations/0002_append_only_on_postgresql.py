"""On PostgreSQL, the audit table itself refuses UPDATE and DELETE.

TRUNCATE is left alone on purpose: Django's flush (and so every transactional test on
PostgreSQL) empties tables with TRUNCATE. Row triggers do not fire on TRUNCATE.
(Migration 0003 since refuses TRUNCATE as well; the test database switches that off.)
SQLite has no such protection; there the ORM refuses and verify_audit_log detects.
"""

from django.db import migrations

FORWARD_SQL = """
CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Audit events are never changed or removed; record a new event instead.';
END;
$$;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_refuse_change();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            # No parameters, so the % in RAISE is not taken for a placeholder.
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(FORWARD_SQL), _on_postgresql(REVERSE_SQL)),
    ]
