"""Minting and revoking GitHub App installation tokens restricted to one repository: the
credentials a `token` grant hands a job, and a GitHub token secret's value.

Minting asks as the App (its JWT): POST /app/installations/{id}/access_tokens with
`repositories` and `permissions`. GitHub revokes an installation token only when called
with it: DELETE /installation/token. Both go through GitHubClient's retries and metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils.dateparse import parse_datetime
from github import Auth

from integrations.github.app import app_credentials_configured
from integrations.github.client import GitHubClient
from integrations.github.connections import api_path, new_github
from integrations.github.errors import GitHubError, PermanentGitHubError

# PyGithub logs every answer's body at DEBUG, and a mint's answer is the token itself: these
# clients' requesters log to this logger instead, which never logs below INFO.
_quiet = logging.getLogger("integrations.github.tokens.pygithub")
_quiet.setLevel(logging.INFO)


def _quiet_requester(github):
    requester = github.requester
    requester._Requester__logger = _quiet  # PyGithub's Requester._logger reads this
    return requester


@dataclass(frozen=True)
class InstallationToken:
    """A minted token, as GitHub answered: the value is a secret (never logged)."""

    token: str
    expires_at: datetime
    permissions: dict
    repositories: tuple[str, ...]

    def __repr__(self):  # never the value, even in a traceback
        return (
            f"InstallationToken(expires_at={self.expires_at!r}, "
            f"permissions={self.permissions!r}, repositories={self.repositories!r})"
        )


@dataclass
class AppTokenClient(GitHubClient):
    """Talks to GitHub as Airlock's GitHub App itself (its JWT), for minting tokens."""

    rate_limit_client = "app"

    def _requester(self):
        requester = self.__dict__.get("_app_requester")
        if requester is None:
            auth = Auth.AppAuth(int(settings.GITHUB_APP_ID), settings.GITHUB_APP_PRIVATE_KEY)
            requester = self.__dict__["_app_requester"] = _quiet_requester(new_github(auth))
        return requester

    def installation_token_mint(
        self, *, repository: str, permissions: dict, installation_id: int | None = None
    ) -> InstallationToken:
        """A token for the App's installation restricted to `repository` ("owner/name")
        and `permissions` ({name: level}). PermanentGitHubError when GitHub refuses (422:
        a permission the App does not hold or a repository it cannot reach; 404: no such
        installation). GitHub takes repository *names* in the installation's account, so the
        answer must name exactly `repository`: a token for another owner's namesake is
        revoked at once and refused."""
        if not app_credentials_configured():
            raise PermanentGitHubError(
                "No GitHub App credentials (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY): only a "
                "GitHub App can mint tokens restricted to one repository.",
                operation="installation token mint",
            )
        installation = installation_id or settings.GITHUB_APP_INSTALLATION_ID
        if not installation:
            raise PermanentGitHubError(
                "No GitHub App installation (GITHUB_APP_INSTALLATION_ID) to mint tokens for.",
                operation="installation token mint",
            )
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise PermanentGitHubError(
                f"{repository!r} is not a repository's full name (owner/name).",
                operation="installation token mint",
            )
        body = {"repositories": [name], "permissions": dict(permissions)}
        requester = self._requester()
        _, answer = self._call(
            f"POST installation token for {repository}",
            lambda: requester.requestJsonAndCheck(
                "POST",
                api_path("app", "installations", str(int(installation)), "access_tokens"),
                input=body,
            ),
            family="installation_tokens",
        )
        minted = _minted(answer)
        token = minted.token
        if [r.lower() for r in minted.repositories] != [repository.lower()]:
            try:  # it reaches something else than asked: it must not outlive this call
                InstallationTokenClient(token=token, retry=self.retry).installation_token_revoke()
            except GitHubError:
                pass  # it expires within the hour; the refusal below says what happened
            reached = ", ".join(minted.repositories) or "every repository it reaches"
            raise PermanentGitHubError(
                f"GitHub minted a token for {reached}, not {repository}: the App's "
                f"installation is on another account than {owner}.",
                operation="installation token mint",
            )
        return minted


    def installation_token_mint_whole(self, *, installation_id: int) -> InstallationToken:
        """A token for everything the installation may reach, as the engine acts with it:
        the one token every process shares (installation_tokens.py)."""
        _, answer = self._call(
            f"POST installation token for installation {int(installation_id)}",
            lambda: self._requester().requestJsonAndCheck(
                "POST",
                api_path("app", "installations", str(int(installation_id)), "access_tokens"),
            ),
            family="installation_tokens",
        )
        return _minted(answer)

    def _token_refused(self) -> bool:
        return False  # the App's JWT is made afresh for each client: nothing shared to drop


@dataclass
class InstallationTokenClient(GitHubClient):
    """Talks to GitHub with one minted token, only to revoke it."""

    token: str = ""
    rate_limit_client = "minted_token"

    def __repr__(self):
        return "InstallationTokenClient(token=<hidden>)"

    def _token_refused(self) -> bool:
        return False  # a 401 here means the minted token is gone already, as wanted

    def _requester(self):
        requester = self.__dict__.get("_token_requester")
        if requester is None:
            requester = self.__dict__["_token_requester"] = _quiet_requester(
                new_github(Auth.Token(self.token))
            )
        return requester

    def installation_token_revoke(self) -> bool:
        """DELETE /installation/token: True when GitHub revoked it now, False when GitHub no
        longer knows it (expired, or revoked before: 401). Transient errors raise, to be
        retried by the engine."""
        requester = self._requester()
        try:
            self._call(
                "DELETE installation token",
                lambda: requester.requestJsonAndCheck("DELETE", "/installation/token"),
                family="installation_tokens",
            )
        except PermanentGitHubError as error:
            if error.status == 401:
                return False
            raise
        return True


def _minted(answer: dict) -> InstallationToken:
    """The token GitHub's answer to POST .../access_tokens carries, or PermanentGitHubError."""
    expires_at = parse_datetime(answer.get("expires_at") or "")
    token = answer.get("token")
    if not token or expires_at is None:
        raise PermanentGitHubError(
            "GitHub's answer to the token mint carries no token or expiry.",
            operation="installation token mint",
        )
    return InstallationToken(
        token=token,
        expires_at=expires_at,
        permissions=dict(answer.get("permissions") or {}),
        repositories=tuple(
            r.get("full_name", "") for r in answer.get("repositories") or [] if isinstance(r, dict)
        ),
    )
