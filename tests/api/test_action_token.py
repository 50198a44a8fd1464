"""The Action's token mode end to end: its step, run as a runner runs it
(tests/api/action_runner.py), exchanges the job's OIDC token at a live portal for a token
the local GitHub mints, masks it before anything else, and sets it as the output `token`."""

import pytest

from grants.models import MintedToken
from tests.api.action_runner import run_action
from tests.api.test_action_request import RUN_CLAIMS
from tests.api.test_token_exchange import APP_HOLDS, GRANTED, minted_on_github, token_request
from tests.requests_app.factories import AccessPolicyFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app(github_app):
    github_app(permissions=APP_HOLDS)
    return github_app.github


@pytest.fixture
def policy():
    return AccessPolicyFactory(
        name="tokens",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions=GRANTED,
    )


@pytest.fixture
def job(id_token_service):
    return id_token_service(**RUN_CLAIMS)


def run_token_mode(portal, job, tmp_path, **inputs):
    return run_action(
        {"airlock-url": portal, "mode": "token", **inputs},
        tmp_path=tmp_path,
        id_token_url=job.url,
    )


def test_the_output_is_the_token_github_minted_masked_first(
    app, policy, portal, job, tmp_path
):
    access_request = token_request(policy)
    status, output, outputs = run_token_mode(
        portal, job, tmp_path, permissions="contents:read, packages:read"
    )
    assert status == 0, output
    token = outputs["token"]
    assert token.startswith("ghs_")
    assert minted_on_github(app, token) == (
        ["acme/api"],
        {"contents": "read", "packages": "read"},
    )
    assert outputs["expires-at"] == MintedToken.objects.get().expires_at.isoformat().replace(
        "+00:00", "Z"
    )
    assert outputs["grant-id"] == str(access_request.grant.pk)
    # The mask comes before any other line could show it, and the value never otherwise.
    lines = output.splitlines()
    mask = lines.index(f"::add-mask::{token}")
    assert all(token not in line for index, line in enumerate(lines) if index != mask)
    assert token not in output.replace(f"::add-mask::{token}", "")
    assert token not in (tmp_path / "summary.md").read_text()
    assert "contents: read, packages: read" in output


def test_without_permissions_it_asks_for_all_the_grant_allows(app, policy, portal, job, tmp_path):
    token_request(policy)
    status, output, outputs = run_token_mode(portal, job, tmp_path)
    assert status == 0, output
    assert minted_on_github(app, outputs["token"]) == (["acme/api"], GRANTED)


def test_a_refusal_fails_the_step_saying_why(app, policy, portal, job, tmp_path):
    status, output, outputs = run_token_mode(portal, job, tmp_path)
    assert status == 1
    assert "Airlock refused a GitHub token (HTTP 403)" in output
    assert "dave holds no token access to acme/api" in output
    assert "access=token" in output
    assert outputs["token"] == ""
    assert output.count("::add-mask::") == 1  # the job's OIDC token's own, no other


def test_a_wider_permission_is_refused(app, policy, portal, job, tmp_path):
    token_request(policy)
    status, output, outputs = run_token_mode(portal, job, tmp_path, permissions="packages:write")
    assert status == 1
    assert "may only narrow" in output and "packages: write (granted: read)" in output
    assert outputs["token"] == ""
    assert app.state.installation_tokens == []


def test_a_malformed_permissions_input_fails_before_calling(app, policy, portal, job, tmp_path):
    status, output, _ = run_token_mode(portal, job, tmp_path, permissions="contents=read")
    assert status == 1
    assert "The permissions input must be name:level pairs" in output
    assert job.audiences == []  # no OIDC token asked for
