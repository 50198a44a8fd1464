# Every event in the chain writes one entry into each index on audit_auditevent, under the
# chain head: fewer indexes, more events per second (benchmark 8). Three served nothing:
# - action's own index and its LIKE twin: audit_event_action_seq_idx (action, -seq)
#   serves every lookup by action;
# - the LIKE twin of hash's unique index: nothing matches a hash by pattern. The unique
#   index itself stays, as the constraint audit_event_hash_unique.
# On SQLite, dropping action's index makes Django rebuild the table (a copy of the log).
#
# And the seal's two tables are never truncated by a vacuum (vacuum_truncate): to cut
# empty pages off a table's end, VACUUM waits up to 5 seconds for its exclusive lock,
# which every audited transaction's read of the pending table holds off; writers then
# queue behind it (audit.services.audit_tables_vacuum says the same to its own VACUUM).

from django.db import migrations, models


def _hash_unique_as_constraint(apps, schema_editor):
    """PostgreSQL: keep the unique index unique=True built (no rebuild, which would stop
    every audited write while it ran on a long log), under the constraint's name, and drop
    its LIKE twin. SQLite has no LIKE twin and names no constraint: nothing to do."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = "audit_auditevent"
    with schema_editor.connection.cursor() as cursor:
        found = schema_editor.connection.introspection.get_constraints(cursor, table)
    for name, info in found.items():
        if info["columns"] != ["hash"] or name == "audit_event_hash_unique":
            continue
        if info["unique"]:
            schema_editor.execute(
                f'ALTER TABLE "{table}" RENAME CONSTRAINT "{name}" TO "audit_event_hash_unique"'
            )
        elif name.endswith("_like"):
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def _hash_unique_as_field(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = "audit_auditevent"
    schema_editor.execute(
        f'ALTER TABLE "{table}" RENAME CONSTRAINT "audit_event_hash_unique" '
        f'TO "audit_auditevent_hash_key"'
    )
    schema_editor.execute(
        f'CREATE INDEX IF NOT EXISTS "audit_auditevent_hash_d0c402da_like" '
        f'ON "{table}" ("hash" varchar_pattern_ops)'
    )


NO_TRUNCATE = """
ALTER TABLE audit_auditpendingevent SET (vacuum_truncate = false);
ALTER TABLE audit_auditchainhead SET (vacuum_truncate = false);
"""
TRUNCATE_AGAIN = """
ALTER TABLE audit_auditpendingevent RESET (vacuum_truncate);
ALTER TABLE audit_auditchainhead RESET (vacuum_truncate);
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0007_pending_events"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(editable=False, max_length=100),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="hash",
                    field=models.CharField(editable=False, max_length=64),
                ),
                migrations.AddConstraint(
                    model_name="auditevent",
                    constraint=models.UniqueConstraint(
                        fields=["hash"], name="audit_event_hash_unique"
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(_hash_unique_as_constraint, _hash_unique_as_field),
            ],
        ),
        migrations.RunPython(_on_postgresql(NO_TRUNCATE), _on_postgresql(TRUNCATE_AGAIN)),
    ]
