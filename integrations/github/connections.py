"""PyGithub as Airlock uses it: one instance per thread and credentials, with PyGithub's own
retries and pacing off, and the REST paths the client requests directly. Under GitHub App
credentials it acts with the installation token all processes share (installation_tokens.py)."""

from __future__ import annotations

import threading
import urllib.parse

from django.conf import settings
from github import Auth, Github

from integrations.github.installation_tokens import SharedInstallationAuth

_clients = threading.local()


def engine_github() -> Github:
    """One PyGithub instance per thread and configuration. Under App credentials it sends
    the installation token every process shares, renewed shortly before it expires."""
    config = (
        settings.GITHUB_API_URL,
        settings.GITHUB_TOKEN,
        settings.GITHUB_APP_ID,
        settings.GITHUB_APP_PRIVATE_KEY,
        settings.GITHUB_APP_INSTALLATION_ID,
        settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS,
    )
    cached = getattr(_clients, "github", None)
    if cached is not None and cached[0] == config:
        return cached[1]
    if settings.GITHUB_TOKEN:
        auth = Auth.Token(settings.GITHUB_TOKEN)
    else:
        auth = SharedInstallationAuth(int(settings.GITHUB_APP_INSTALLATION_ID))
    client = new_github(auth)
    _clients.github = (config, client, auth)
    return client


def engine_token_refused() -> bool:
    """After GitHub answered 401 to this thread's engine client: drop the shared installation
    token it sent, if that is what it sent. True when one more try, with a new token, may
    succeed (a GITHUB_TOKEN's 401 stays a 401)."""
    cached = getattr(_clients, "github", None)
    auth = cached[2] if cached is not None else None
    return isinstance(auth, SharedInstallationAuth) and auth.refused()


def new_github(auth) -> Github:
    # PyGithub's own urllib3 retry is off: its backoff cannot be bounded per call, cannot
    # renew the reconciler's lease while it waits, and hides the rate-limit reset time the
    # next attempt is scheduled by; GitHubClient retries instead. Its request pacing is off
    # too: a reconcile makes a handful of writes, and a revocation must not wait for a sleep.
    return Github(
        auth=auth,
        base_url=settings.GITHUB_API_URL,
        timeout=max(1, int(settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS)),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
        user_agent="airlock",
        lazy=True,
    )


def api_path(*parts: str) -> str:
    return "/" + "/".join(urllib.parse.quote(str(p), safe="") for p in parts)


def repository_path(repository: str, *rest: str) -> str:
    owner, name = repository.split("/", 1)
    return api_path("repos", owner, name, *rest)
