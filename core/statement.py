"""Running a hot path's hand-written read (the grant check's query, an API token's lookup):
it stands in for Django's connection health check, and on PostgreSQL it runs as a prepared
statement."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

# Both tricks use attributes of Django's connection wrapper that its documentation does not
# cover (health_check_enabled/health_check_done, make_cursor, queries_logged, debug_sql):
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
    """
    recover = (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and not connection.in_atomic_block
    )
    if recover:
        connection.health_check_done = True
        try:
            return _run(sql, params)
        except (InterfaceError, OperationalError):
            logger.warning("The database connection was lost; reconnecting for a read")
            connection.close()
    return _run(sql, params)


def _run(sql: str, params: list) -> list[tuple]:
    """On PostgreSQL, as a prepared statement.

    PostgreSQL spends longer planning the check's six-table query than running it. psycopg
    prepares a statement once it has run this often on a connection (prepare_threshold),
    but only for a cursor that binds parameters on the server; Django's cursors bind them
    on the client. So these queries run on a server-binding cursor over Django's
    connection, wrapped by Django (errors, execute wrappers, the debug query log).
    DATABASE_PREPARED_STATEMENTS=false (prepare_threshold None) turns preparing off.
    """
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(sql, params)
            return cursor.fetchall()
        import psycopg

        prepared = connection.make_cursor(psycopg.Cursor(connection.connection))
        logged = (
            cursor.debug_sql(connection.ops.compose_sql(sql, params))
            if connection.queries_logged
            else nullcontext()
        )
        with prepared, logged:
            prepared.execute(sql, params)
            return prepared.fetchall()


def aware_datetime(value) -> datetime | None:
    """A datetime column read by hand: SQLite gives naive UTC (or text), PostgreSQL aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value
