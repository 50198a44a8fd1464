"""On PostgreSQL, the audit table refuses TRUNCATE too.

Row triggers (0002) do not fire on TRUNCATE, so without this anyone allowed to TRUNCATE
the table could empty the log in one statement, and an emptied log verifies. The same
function refuses it, from a statement-level trigger.

Django's flush (`manage.py flush`) uses TRUNCATE, so it is refused as well: that is the
point. The test database switches this one trigger off, because pytest-django flushes
the database after every transactional test (tests/conftest.py).
"""

from django.db import migrations

FORWARD_SQL = """
CREATE TRIGGER audit_event_refuse_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS audit_event_refuse_truncate ON audit_auditevent;
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_on_postgresql"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(FORWARD_SQL), _on_postgresql(REVERSE_SQL)),
    ]
