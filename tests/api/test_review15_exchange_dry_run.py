"""Review of issue 15 (failing test): a grant simulated in dry-run yields a real token.

Dry-run decides per target (Target.dry_run, fixed when the grant is made, and the engine
keeps reconciling a dry-run target in dry-run after the setting changes), but the
exchange decides by the setting at the moment of the call (settings.AIRLOCK_DRY_RUN). A
token grant approved and "applied" only as a simulation, once dry-run is switched off,
mints a real GitHub token on the exchange."""

import pytest

from grants.models import Grant
from tests.api.test_token_exchange import app, exchange, policy, token_request  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_grant_made_in_dry_run_mints_no_real_token(app, oidc, policy, settings):  # noqa: F811
    settings.AIRLOCK_DRY_RUN = True
    access_request = token_request(policy)
    assert Grant.objects.get(access_request=access_request).target.dry_run

    settings.AIRLOCK_DRY_RUN = False  # the evaluation is over; Airlock goes live
    response = exchange(oidc())

    assert not app.state.installation_tokens, (
        f"a simulated grant minted a real token (HTTP {response.status_code})"
    )
