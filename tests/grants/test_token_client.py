"""integrations.github.tokens against the local GitHub: minting installation tokens
restricted to one repository and chosen permissions, and revoking them."""

import logging

import pytest
import requests

from integrations.github.errors import NotFoundError, PermanentGitHubError
from integrations.github.tokens import AppTokenClient, InstallationTokenClient


def mint(repository="acme/api", permissions=None, **kwargs):
    return AppTokenClient().installation_token_mint(
        repository=repository, permissions=permissions or {"contents": "read"}, **kwargs
    )


def test_a_mint_for_one_repository_yields_a_token_with_exactly_that_scope(github_app):
    installation = github_app()
    gh = github_app.github
    minted = mint("acme/api", {"contents": "read"})
    assert minted.repositories == ("acme/api",)
    assert minted.permissions == {"contents": "read"}
    [token] = gh.installation_tokens
    assert token.value == minted.token
    assert token.installation_id == installation
    assert gh.token_repositories(token) == ["acme/api"]
    assert token.permissions == {"contents": "read"}
    assert minted.expires_at == token.expires_at
    [call] = [r for r in gh.requests if r.path.endswith("/access_tokens")]
    assert call.json == {"repositories": ["api"], "permissions": {"contents": "read"}}


def test_a_minted_token_reaches_its_repository_and_no_other(github_app):
    github_app()
    gh = github_app.github
    gh.add_repo("acme/web")
    minted = mint("acme/api")

    def get(path):
        return requests.get(
            gh.api_url + path, headers={"Authorization": f"token {minted.token}"}, timeout=5
        ).status_code

    assert (get("/repos/acme/api"), get("/repos/acme/web")) == (200, 404)


def test_an_explicit_installation_id_wins_over_the_setting(github_app, settings):
    first = github_app()
    github_app()  # the setting now names the second installation
    mint(installation_id=first)
    [token] = github_app.github.installation_tokens
    assert token.installation_id == first


def test_a_permission_the_app_lacks_is_a_permanent_error_with_githubs_message(github_app):
    github_app(permissions={"contents": "read", "metadata": "read"})
    with pytest.raises(PermanentGitHubError) as refused:
        mint("acme/api", {"contents": "write"})
    assert refused.value.status == 422
    assert refused.value.message == (
        "The permissions requested are not granted to this installation."
    )
    assert github_app.github.installation_tokens == []


def test_a_repository_the_installation_cannot_reach_is_a_permanent_error(github_app):
    github_app()
    with pytest.raises(PermanentGitHubError) as refused:
        mint("acme/nope")
    assert refused.value.status == 422
    assert "not accessible to the parent installation" in refused.value.message


def test_a_namesake_in_another_account_is_refused_and_its_token_revoked(github_app):
    # GitHub takes names in the installation's account: asking for other/api on an App
    # installed on acme yields a token for acme/api, which must not be handed out.
    github_app(account="acme")
    github_app.github.add_repo("other/api")
    with pytest.raises(PermanentGitHubError) as refused:
        mint("other/api")
    assert "acme/api, not other/api" in refused.value.message
    [token] = github_app.github.installation_tokens
    assert token.revoked


def test_an_unknown_installation_is_not_found(github_app):
    github_app()
    with pytest.raises(NotFoundError):
        mint(installation_id=999_999)


@pytest.mark.parametrize("repository", ["api", "acme/", "/api", "acme/api/x"])
def test_a_repository_that_is_not_a_full_name_is_refused_before_any_call(github_app, repository):
    github_app()
    with pytest.raises(PermanentGitHubError, match="full name"):
        mint(repository)
    assert github_app.github.requests == []


def test_without_app_credentials_nothing_is_minted(github_app, settings):
    github_app()
    settings.GITHUB_APP_PRIVATE_KEY = ""
    with pytest.raises(PermanentGitHubError, match="GITHUB_APP_ID"):
        mint()


def test_a_502_is_retried(github_app):
    github_app()
    gh = github_app.github
    gh.faults.add("POST", "/app/installations/*/access_tokens", status=502, times=1)
    minted = mint()
    calls = [r for r in gh.requests if r.path.endswith("/access_tokens")]
    assert [c.status for c in calls] == [502, 201]
    assert [t.value for t in gh.installation_tokens] == [minted.token]


def test_revoke_answers_true_then_false_and_the_local_github_records_it(github_app):
    github_app()
    gh = github_app.github
    minted = mint()
    client = InstallationTokenClient(token=minted.token)
    assert client.installation_token_revoke() is True
    token = gh.installation_token(minted.token)
    assert token.revoked and token.revoked_at is not None
    assert InstallationTokenClient(token=minted.token).installation_token_revoke() is False


def test_revoking_an_unknown_token_is_false(github_app):
    github_app()
    assert InstallationTokenClient(token="ghs_unknown").installation_token_revoke() is False


def test_a_revoke_502_is_retried(github_app):
    github_app()
    gh = github_app.github
    minted = mint()
    gh.faults.add("DELETE", "/installation/token", status=502, times=1)
    assert InstallationTokenClient(token=minted.token).installation_token_revoke() is True
    assert [r.status for r in gh.requests if r.path == "/installation/token"] == [502, 204]


class Raw(logging.Handler):
    """Keeps each record's message as logged, before any handler's filter redacts it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def raw_logs():
    # On the loggers themselves, so they see records before the root handlers (whose
    # redaction filter rewrites records in place): the value must not be logged at all.
    handler = Raw()
    loggers = [logging.getLogger(name) for name in ("github", "integrations", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler.messages
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_token_value_never_appears_in_repr_or_logs(github_app, raw_logs):
    github_app()
    gh = github_app.github
    gh.faults.add("POST", "/app/installations/*/access_tokens", status=502, times=1)
    minted = mint()
    client = InstallationTokenClient(token=minted.token)
    client.installation_token_revoke()
    client.installation_token_revoke()
    assert minted.token not in repr(minted)
    assert minted.token not in repr(client)
    assert any("retrying" in m for m in raw_logs)  # the calls were logged, at DEBUG too
    assert [m for m in raw_logs if minted.token in m] == []
