"""The API tests' helpers now live in tests/fixtures.py; their modules import them from here."""

from tests.fixtures import active_request, oidc_client, token_client  # noqa: F401
