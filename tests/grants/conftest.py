"""The grant engine's tests talk to the faithful local GitHub with a token, not dry-run,
and retry fast: backoffs of milliseconds, a few seconds at most per call."""

import pytest


@pytest.fixture
def gh(github, settings):
    """The local GitHub, with Airlock configured to write to it."""
    settings.GITHUB_API_URL = github.api_url
    settings.GITHUB_TOKEN = github.app_token
    settings.AIRLOCK_DRY_RUN = False
    settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS = 1
    settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS = 5
    settings.AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS = 4
    settings.AIRLOCK_GITHUB_RETRY_BASE_SECONDS = 0.02
    settings.AIRLOCK_GITHUB_RETRY_CAP_SECONDS = 0.1
    settings.AIRLOCK_GRANT_RETRY_BASE_SECONDS = 1
    github.add_repo("acme/api")
    return github

