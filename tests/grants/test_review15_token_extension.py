"""Review of issue 15 (failing test): an extension that continues a token grant.

An extension approved while its original is in force "continues without a break" (the
portal says "your access continues without a break"; reviewers and secrets stay where
they are, shared by the two grants). For a token grant the original's end still revokes
every token minted under it, so a job holding one loses it mid-run although its access
goes on."""

import pytest

from grants.minted import minted_token_value
from grants.models import Grant
from grants.reconciler import reconcile_environment
from requests_app.services import access_request_extend
from tests.grants.factories import exchange_mint, register_token_app
from tests.requests_app.lifecycle import (
    approve,
    file_request,
    grant_now,
    move_expiry,
    policy_and_approvers,
)

pytestmark = pytest.mark.django_db


def test_an_extension_continuing_a_token_grant_keeps_the_job_s_token(gh, settings):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    register_token_app(gh, settings)
    _, users = policy_and_approvers(
        access_kinds=["token"], token_permissions={"contents": "read"}
    )
    original = grant_now(approve(file_request("dave", access="token"), users["alice"]))
    value = minted_token_value(exchange_mint(Grant.objects.get(access_request=original)))
    extension = access_request_extend(
        original=original, requester=original.requester, reason="The release needs longer",
        duration_minutes=45,
    )
    extension = grant_now(approve(extension, users["bob"]))
    assert extension.continues_original is True

    reconcile_environment(move_expiry(original).grant.target_id)

    assert gh.installation_token(value) is not None
    assert not gh.installation_token(value).revoked, (
        "access continues without a break, but the job's token was revoked"
    )
