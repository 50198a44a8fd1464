"""The check's query (and the API token's read) run as prepared statements on PostgreSQL
(core/statement.py): prepared on their first run on a connection, prepared again on a new
one, and recovered when the server no longer honours them (DEALLOCATE behind psycopg's
back, a migration that alters a column they return)."""

from itertools import product

import psycopg
import pytest
from django.db import close_old_connections

from grants.check.query import _in_force_sql
from tests.api.conftest import active_request, oidc_client, token_client

pytestmark = pytest.mark.django_db(transaction=True)

CHECK = "/api/v1/grants/check"
TARGET = {"repository": "acme/api", "environment": "production"}


def _prepared_statements(connection) -> list[str]:
    # Read through psycopg's own connection: pg_prepared_statements is per session.
    with connection.connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _is_the_check_s(text: str, connection) -> bool:
    """Whether a prepared statement's text is one of the check's queries (psycopg writes
    each %s as $1, $2, ...: the text around the parameters is compared)."""
    return any(
        all(part in text for part in _in_force_sql(connection.vendor, *flags).split("%s"))
        for flags in product((False, True), repeat=3)
    )


def _check_is_prepared(connection) -> bool:
    return any(_is_the_check_s(text, connection) for text in _prepared_statements(connection))


def _other_session(connection):
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
        password=db["PASSWORD"] or None, autocommit=True,
    )


def test_the_check_s_query_is_prepared_on_its_first_run(oidc, on_postgres):
    active_request("dave")
    assert oidc_client(oidc()).get(CHECK).json()["allowed"] is True
    assert _check_is_prepared(on_postgres), _prepared_statements(on_postgres)


def test_the_api_token_s_read_is_prepared_too(on_postgres):
    client = token_client(active_request("dave").requester)
    assert client.get(CHECK, TARGET).json()["allowed"] is True
    assert any("digest" in text for text in _prepared_statements(on_postgres))


def test_the_prepared_statement_is_prepared_again_after_a_reconnect(oidc, on_postgres):
    active_request("dave")
    client = oidc_client(oidc())
    assert client.get(CHECK).json()["allowed"] is True
    dropped = on_postgres.connection.info.backend_pid
    with _other_session(on_postgres) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    close_old_connections()  # what a request's start does in production
    assert client.get(CHECK).json()["allowed"] is True
    assert on_postgres.connection.info.backend_pid != dropped
    assert _check_is_prepared(on_postgres)


def test_a_statement_deallocated_behind_psycopg_s_back_is_prepared_again(oidc, on_postgres):
    """A pooler or a session reset may drop the server's prepared statements while psycopg
    still believes in them: the next check must answer, not fail with "prepared statement
    does not exist"."""
    dave = active_request("dave").requester
    client = oidc_client(oidc())
    assert client.get(CHECK).json()["allowed"] is True
    assert _check_is_prepared(on_postgres)
    # Straight to libpq: psycopg does not see it, as it would not see a pooler's.
    on_postgres.connection.pgconn.exec_(b"DEALLOCATE ALL")
    assert _prepared_statements(on_postgres) == []
    response = client.get(CHECK)
    assert response.status_code == 200, response.content
    assert response.json()["allowed"] is True
    assert _check_is_prepared(on_postgres)
    # The API token's read recovers the same way.
    token = token_client(dave)
    assert token.get(CHECK, TARGET).json()["allowed"] is True
    on_postgres.connection.pgconn.exec_(b"DEALLOCATE ALL")
    assert token.get(CHECK, TARGET).json()["allowed"] is True


def test_a_migration_altering_a_returned_column_does_not_break_the_check(oidc, on_postgres):
    """PostgreSQL replans a prepared statement after a schema change, except when a column
    it returns changed type ("cached plan must not change result type"): a migration run
    while the portal serves must not leave its workers failing every check."""
    from requests_app.models import AccessRequest

    active_request("dave")
    client = oidc_client(oidc())
    assert client.get(CHECK).json()["allowed"] is True
    table = AccessRequest._meta.db_table
    column = AccessRequest._meta.get_field("ref_pattern").column
    length = AccessRequest._meta.get_field("ref_pattern").max_length
    with _other_session(on_postgres) as other:
        other.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar({length + 1})')
        try:
            response = client.get(CHECK)
            assert response.status_code == 200, response.content
            assert response.json()["allowed"] is True
            assert response.json()["grant"]["ref_pattern"] == ""
        finally:
            other.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar({length})')
    close_old_connections()
    on_postgres.close()  # the next test's connection starts with no stale statement


def test_a_revoked_grant_is_refused_at_once_by_a_prepared_check(oidc, on_postgres):
    """The prepared statement holds a plan, never an answer: the revocation's commit is
    seen by the very next check on the same connection."""
    from grants.services import grant_revoke

    access_request = active_request("dave")
    client = oidc_client(oidc())
    for _ in range(3):
        assert client.get(CHECK).json()["allowed"] is True
    grant_revoke(grant=access_request.grant, user=access_request.requester, comment="done")
    body = client.get(CHECK).json()
    assert body["allowed"] is False
    assert "holds no access" in body["reason"]
