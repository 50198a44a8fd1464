"""Running the check's query: it stands in for Django's connection health check, and on
PostgreSQL it runs as a prepared statement."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from django.db import InterfaceError, OperationalError, connection

# The name the check logged under before it became a package.
logger = logging.getLogger("grants.check")

# Both tricks use attributes of Django's connection wrapper that its documentation does not
# cover (health_check_enabled/health_check_done, make_cursor, queries_logged, debug_sql):
# kept here, away from the SQL, and held by tests (test_grant_check's dropped connection
# test on PostgreSQL, the query count tests), so that a Django upgrade that moves them
# fails a test instead of slowing the check.


def fetch_all(sql: str, params: list) -> list[tuple]:
    """Run the check's query, which also serves as the connection's health check.

    Django's health check (CONN_HEALTH_CHECKS) costs a round trip, SELECT 1, before a
    request's first query on a reused connection: a fifth of the check's time. The check
    skips it and lets its own query find out instead: if the reused connection turns out
    dead, it is closed and the query runs once more on a new one. The query only reads,
    so running it twice is harmless.
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
            logger.warning("The database connection was lost; the grant check reconnects")
            connection.close()
    return _run(sql, params)


def _run(sql: str, params: list) -> list[tuple]:
    """On PostgreSQL, as a prepared statement.

    PostgreSQL spends longer planning this six-table query than running it. psycopg
    prepares a statement once it has run this often on a connection (prepare_threshold),
    but only for a cursor that binds parameters on the server; Django's cursors bind them
    on the client. So this one query runs on a server-binding cursor over Django's
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
