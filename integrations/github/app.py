"""Acting as Airlock's GitHub App: installation tokens, and answering the App's deployment
protection rules (the only credentials GitHub accepts for that)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings
from github import Github

from integrations.github.client import GitHubClient
from integrations.github.connections import new_github, repository_path
from integrations.github.errors import PermanentGitHubError
from integrations.github.installation_tokens import SharedInstallationAuth


def app_credentials_configured() -> bool:
    """Whether Airlock can act as its GitHub App (needed to answer protection rules)."""
    return bool(settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY)


_installation_clients = threading.local()


def _installation_pygithub(installation_id: int) -> Github:
    """PyGithub acting as one installation of the App, one per thread and installation,
    with the installation token every process shares (installation_tokens.py)."""
    config = (
        settings.GITHUB_API_URL,
        settings.GITHUB_APP_ID,
        settings.GITHUB_APP_PRIVATE_KEY,
        settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS,
    )
    cache = getattr(_installation_clients, "cache", None)
    if cache is None or cache[0] != config:
        cache = _installation_clients.cache = (config, {})
    client = cache[1].get(installation_id)
    if client is None:
        client = cache[1][installation_id] = new_github(SharedInstallationAuth(installation_id))
    return client


@dataclass
class AppInstallationClient(GitHubClient):
    """Talks to GitHub as one installation of Airlock's GitHub App: the only credentials
    GitHub accepts for answering the App's own deployment protection rule. Same retries
    and errors as GitHubClient."""

    installation_id: int = 0
    rate_limit_client = "app_installation"

    def _requester(self):
        return _installation_pygithub(self.installation_id).requester

    def _token_refused(self) -> bool:
        auth = _installation_pygithub(self.installation_id).requester.auth
        return isinstance(auth, SharedInstallationAuth) and auth.refused()

    def review_deployment_protection_rule(
        self,
        repository: str,
        run_id: int,
        environment: str,
        *,
        state: str | None = None,
        comment: str = "",
    ) -> None:
        """POST .../actions/runs/{run_id}/deployment_protection_rule: approve or reject
        (state "approved" | "rejected", comment optional), or, without a state, post a
        status comment and leave the deployment waiting."""
        if not app_credentials_configured():
            raise PermanentGitHubError(
                "No GitHub App credentials (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY): only the "
                "App can answer its deployment protection rule.",
                operation="deployment protection rule review",
            )
        body = {"environment_name": environment}
        if state is not None:
            body["state"] = state
        if comment or state is None:  # GitHub requires a comment when there is no state
            body["comment"] = comment
        path = repository_path(
            repository, "actions", "runs", str(int(run_id)), "deployment_protection_rule"
        )
        self._call(
            f"POST deployment protection rule {state or 'comment'} for run {run_id} of "
            f"{repository}:{environment}",
            lambda: _installation_pygithub(self.installation_id).requester.requestJsonAndCheck(
                "POST", path, input=body
            ),
            family="deployment_protection_rules",
        )
