"""Running a hot path's hand-written read (the grant check's query, an API token's lookup):
it stands in for Django's connection health check, and on PostgreSQL it runs as a prepared
statement."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import cache as memoize

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError
from django.db import connections as databases
from django.utils import timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

# Both tricks use attributes of Django's connection wrapper that its documentation does not
# cover (health_check_enabled/health_check_done, close_if_health_check_failed,
# make_debug_cursor, queries_logged, debug_sql, wrap_database_errors):
# kept here, away from the SQL, and held by tests (test_grant_check's and
# test_authentication's dropped connection tests on PostgreSQL, the query count tests), so
# that a Django upgrade that moves them fails a test instead of slowing the check.


def fetch_all(sql: str, params: list) -> list[tuple]:
    """Run a read that also serves as the connection's health check.

    Django's health check (CONN_HEALTH_CHECKS) costs a round trip, SELECT 1, before a
    request's first query on a reused connection: a fifth of the check's time. The hot
    path skips it and lets its own first query find out instead: if the reused connection
    turns out dead, it is closed and the query runs once more on a new one. Only for a
    read, and only outside a transaction, where running it twice is harmless. Health
    checks stay on for everything else (CONN_HEALTH_CHECKS, portal/settings.py).

    The same goes for a prepared statement the server no longer honours (_stale_statement):
    the connection is replaced and the read runs once more, prepared afresh.
    """
    # Looked up once: each attribute read through django.db.connection (a proxy) is a
    # thread-local lookup, and these reads ask a dozen of them.
    db = databases[DEFAULT_DB_ALIAS]
    recover = (
        db.connection is not None
        and db.health_check_enabled
        and not db.health_check_done
        and not db.in_atomic_block
    )
    if recover:
        db.health_check_done = True
    try:
        return _run(db, sql, params)
    except (InterfaceError, OperationalError):
        if not recover:
            raise
        logger.warning("The database connection was lost; reconnecting for a read")
    except DatabaseError as error:
        if db.in_atomic_block or not _stale_statement(error):
            raise
        logger.warning("A prepared statement went stale (%s); reconnecting for a read", error)
    db.close()
    return _run(db, sql, params)


# The server's answers to a statement prepared on this connection that it cannot run any
# more: "prepared statement does not exist" (something ran DEALLOCATE or DISCARD behind
# psycopg's back: a pooler, a session reset) and "cached plan must not change result type"
# (a migration altered a column the statement returns, after it was prepared; PostgreSQL
# replans by itself for every other schema change). psycopg keeps the statement's name in
# its cache either way, so the connection would fail this read until it is closed.
STALE_STATEMENT_STATES = frozenset({"26000", "0A000"})


def _stale_statement(error: DatabaseError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in STALE_STATEMENT_STATES


def _run(db, sql: str, params: list) -> list[tuple]:
    """On PostgreSQL, as a prepared statement.

    PostgreSQL spends longer planning the check's six-table query than running it, so it
    is prepared on its first run on a connection (psycopg's prepare=True): parsed and
    planned once, then executed from its generic plan. psycopg prepares only on a cursor
    that binds parameters on the server, and Django's cursors bind them on the client; so
    these reads run on a server-binding cursor over Django's connection, with Django's
    errors and its debug query log (CaptureQueriesContext, django_assert_num_queries) but
    not its cursor wrapper: connection.execute_wrapper() hooks do not see them.
    DATABASE_PREPARED_STATEMENTS=false (prepare_threshold None) turns preparing off:
    psycopg then ignores prepare=True.
    """
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    # What Django's cursor() does first (a no-op once fetch_all stood in for the check).
    db.close_if_health_check_failed()
    db.ensure_connection()
    cursor = _kept_cursor(db)
    logged = (
        db.make_debug_cursor(cursor).debug_sql(db.ops.compose_sql(sql, params))
        if db.queries_logged
        else nullcontext()
    )
    # Django's errors, as its cursor wrapper raises them (and marks the connection as one
    # that had errors, for close_old_connections).
    with logged, db.wrap_database_errors:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _kept_cursor(db):
    """One cursor per database connection, kept for these reads: a new psycopg cursor and
    Django's wrapper around it cost half of the check's query's CPU in this process
    (about 60 of 115 us), for nothing the reads use. A new connection gets a new one."""
    kept = getattr(db, "_airlock_kept_cursor", None)
    if kept is None or kept[0] is not db.connection:
        kept = (db.connection, _preparing_cursor_class()(db.connection))
        db._airlock_kept_cursor = kept
    return kept[1]


@memoize
def _preparing_cursor_class():
    """psycopg's server-binding cursor, preparing what it runs from the first time (on
    PostgreSQL only: psycopg is imported here)."""
    import psycopg

    class PreparingCursor(psycopg.Cursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(
                query, params, prepare=True if prepare is None else prepare, binary=binary
            )

    return PreparingCursor


def aware_datetime(value) -> datetime | None:
    """A datetime column read by hand: SQLite gives naive UTC (or text), PostgreSQL aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value
