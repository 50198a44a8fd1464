"""Trigram indexes for the admin's request search, on PostgreSQL only.

The search (selectors.requests_matching_search) matches substrings: icontains, which
Django writes on PostgreSQL as `UPPER("col"::text) LIKE UPPER('%term%')`. No b-tree serves
that, so without these PostgreSQL reads requests until enough match, the whole history for
a rare term. A GIN index with pg_trgm's operator class on exactly that expression serves
the LIKE, one per searched column, and the planner ORs them (BitmapOr).

They are not in AccessRequest.Meta.indexes because SQLite has neither GIN nor pg_trgm: on
SQLite this migration does nothing, and search reads the table as it always has.

pg_trgm must be created in the database. It is a trusted extension since PostgreSQL 13, so
a role with CREATE on the database (its owner has it) may create it; when the role may
not, the migration stops with what to run instead (README "PostgreSQL"), rather than go on
without the indexes and leave the search slowing down with every request filed."""

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, transaction
from django.db.utils import ProgrammingError

EXTENSION = "pg_trgm"
TABLE = "requests_app_accessrequest"
# index name -> the column whose `UPPER(col::text)` it holds
INDEXES = {
    "request_repository_trgm": "repository",
    "request_environment_trgm": "environment",
    "request_reason_trgm": "reason",
}
INSUFFICIENT_PRIVILEGE = "42501"


def create_trigram_extension(connection) -> None:
    """CREATE EXTENSION pg_trgm unless it is there, or ImproperlyConfigured saying how to
    get it when PostgreSQL does not have it or refuses this role."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [EXTENSION])
        if cursor.fetchone():
            return
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", [EXTENSION])
        if cursor.fetchone() is None:
            raise ImproperlyConfigured(
                f"PostgreSQL has no {EXTENSION} extension to create: install the server's "
                "contrib modules (Debian and Ubuntu: postgresql-contrib; the official "
                "postgres image has them), then run `manage.py migrate` again. The admin's "
                "request search needs it (migration requests_app 0020)."
            )
        cursor.execute("SELECT current_user, current_database()")
        role, database = cursor.fetchone()
        try:
            # A savepoint: the refusal must not abort the migration's transaction before
            # it is explained.
            with transaction.atomic(using=connection.alias):
                cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
        except ProgrammingError as refusal:
            if getattr(refusal.__cause__, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                raise
            raise ImproperlyConfigured(
                f"PostgreSQL refused to let the role {role!r} (DATABASE_URL) create the "
                f"{EXTENSION} extension in the database {database!r}, which the admin's "
                "request search needs (migration requests_app 0020). Either have a superuser "
                f'run `CREATE EXTENSION {EXTENSION};` in "{database}" once, or let the role '
                f'create it (PostgreSQL 13 or later): `GRANT CREATE ON DATABASE "{database}" '
                f'TO "{role}";`. Then run `manage.py migrate` again.'
            ) from refusal


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    create_trigram_extension(schema_editor.connection)
    for name, column in INDEXES.items():
        # An interrupted CONCURRENTLY build leaves an INVALID index of that name behind,
        # which IF NOT EXISTS would keep: it serves no query. Dropped and built again.
        if _invalid_index(schema_editor.connection, name):
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        # CONCURRENTLY: filing, approving and the reconciler's updates go on while the index
        # is built over the whole history (a plain CREATE INDEX blocks every write to the
        # table until it is done: seconds per 100k requests).
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{TABLE}" '
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def _invalid_index(connection, name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid "
            "WHERE pg_class.relname = %s AND NOT pg_index.indisvalid",
            [name],
        )
        return cursor.fetchone() is not None


def drop_indexes(apps, schema_editor):
    # The extension stays: other objects may use it by then, and it costs nothing unused.
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction: each statement commits on
    # its own, and a migration stopped halfway is run again safely (IF NOT EXISTS, and an
    # invalid leftover is rebuilt).
    atomic = False

    dependencies = [
        ("requests_app", "0019_slack_card_sweep_claim"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
