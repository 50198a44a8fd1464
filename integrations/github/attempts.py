"""Who started a workflow run attempt: whose grant a job may use, and who files a request
from it. Asked of GitHub once per re-run attempt, and remembered."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from django.conf import settings
from django.core.cache import cache

from core.errors import NotAllowed
from core.names import ascii_lower
from integrations.github.actions import WorkflowJob
from integrations.github.client import GitHubClient
from integrations.github.errors import GitHubError, TransientGitHubError
from integrations.github.retry import RetryPolicy

# Who started a run attempt never changes; remembered this long, so that a job checking
# before every step costs GitHub one call per re-run attempt.
ATTEMPT_STARTER_SECONDS = 7 * 24 * 3600


def _cache_key(repository: str, run_id: int, attempt: int) -> str:
    material = "\x1f".join(("attempt-starter", ascii_lower(repository), str(run_id), str(attempt)))
    return f"airlock:attempt-starter:{hashlib.sha256(material.encode()).hexdigest()}"


def oidc_caller_of_attempt(caller: WorkflowJob) -> WorkflowJob:
    """The caller, knowing who started its run attempt (whose grant it may use).

    A token's triggering_actor claim says it; so does the actor of a first attempt. For a
    re-run whose token names only the run's author (GitHub's tokens never carry
    triggering_actor) GitHub's REST API is asked, once per attempt: the answer is kept in
    the cache. NotAllowed when GitHub cannot say: a re-run never falls back to `actor`.
    """
    if caller.claims.get("triggering_actor") or caller.attempt_starter is not None:
        return caller
    if caller.run_attempt == "1":
        return caller  # the hot path: no cache, no GitHub
    run_id, attempt = caller.claims.get("run_id", ""), caller.run_attempt
    if not (run_id.isascii() and run_id.isdigit() and attempt.isascii() and attempt.isdigit()):
        raise _attempt_starter_unknown(
            "the OIDC token's run_id and run_attempt claims name no run attempt"
        )
    key = _cache_key(caller.repository, int(run_id), int(attempt))
    starter = cache.get(key)
    if starter is None:
        # Only an answer is kept: a failure (an outage, missing permission) is asked again.
        starter = _attempt_starter_from_github(caller.repository, int(run_id), int(attempt))
        cache.set(key, starter, ATTEMPT_STARTER_SECONDS)
    return replace(caller, attempt_starter=tuple(starter))


def _attempt_starter_from_github(repository: str, run_id: int, attempt: int) -> tuple[str, str]:
    if settings.AIRLOCK_DRY_RUN:
        raise _attempt_starter_unknown(
            "Airlock runs in dry-run mode, without GitHub credentials to ask GitHub"
        )
    client = GitHubClient(retry=RetryPolicy.interactive())
    try:
        login, account_id = client.run_attempt_triggering_actor(repository, run_id, attempt)
    except TransientGitHubError as error:
        raise _attempt_starter_unknown(f"{error}; try again shortly") from None
    except GitHubError as error:
        raise _attempt_starter_unknown(
            f"{error}; Airlock's GitHub credentials need the Actions read permission on the "
            f"repository"
        ) from None
    return login, str(account_id)


def _attempt_starter_unknown(why: str) -> NotAllowed:
    return NotAllowed(
        f"Airlock cannot tell who started this re-run: {why}. A re-run may use only the grant "
        f"of the person who started it, so it is refused."
    )
