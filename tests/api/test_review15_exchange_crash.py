"""Review of issue 15 (failing test): a token minted by the exchange that could not be
recorded outlives everything.

token_exchange mints on GitHub first, then records the token (grants.tokens._record). If
recording fails (the database refuses or goes away between the two), the exception
leaves the view as a 500 and nothing ever revokes the token GitHub minted: it is in no
row, so neither the grant's end nor the sweep can find it. It stays valid for its hour.
"""

from contextlib import contextmanager

import pytest
from django.db import connection

from grants.models import MintedToken
from tests.api.test_token_exchange import app, exchange, policy, token_request  # noqa: F401

pytestmark = pytest.mark.django_db


@contextmanager
def refusing_to_record_tokens():
    table = MintedToken._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_token() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'database went away'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_token BEFORE INSERT ON {table} FOR EACH ROW "
                "EXECUTE FUNCTION refuse_token()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_token BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'database went away'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER refuse_token ON {table}")
                cursor.execute("DROP FUNCTION refuse_token()")
            else:
                cursor.execute("DROP TRIGGER refuse_token")


def test_a_token_the_exchange_could_not_record_is_revoked(app, oidc, policy):  # noqa: F811
    token_request(policy)

    with refusing_to_record_tokens():
        response = exchange(oidc())
    assert response.status_code == 500  # "Airlock hit an internal error"

    minted = app.state.installation_tokens
    assert len(minted) == 1
    assert MintedToken.objects.count() == 0
    # Nobody holds it and nothing will ever revoke it: it must be revoked now.
    assert minted[0].revoked, "a minted token no row records is live on GitHub"
