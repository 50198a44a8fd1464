"""The API tests' helpers now live in tests/fixtures.py; their modules import them from here.
The Action's runner and its fixtures live in tests/api/action_runner.py."""

from tests.api.action_runner import id_token_service, portal, serial_portal  # noqa: F401
from tests.fixtures import active_request, oidc_client, token_client  # noqa: F401
