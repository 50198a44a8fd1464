"""The property tests drive the real services and reconciler in this process against the
faithful local GitHub, with a token (not dry-run) and fast in-call retries."""

import pytest


@pytest.fixture
def local_github(github, settings):
    settings.GITHUB_API_URL = github.api_url
    settings.GITHUB_TOKEN = github.app_token
    settings.AIRLOCK_DRY_RUN = False
    settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS = 1
    settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS = 5
    settings.AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS = 3
    settings.AIRLOCK_GITHUB_RETRY_BASE_SECONDS = 0.01
    settings.AIRLOCK_GITHUB_RETRY_CAP_SECONDS = 0.05
    settings.AIRLOCK_GRANT_RETRY_BASE_SECONDS = 1
    return github
