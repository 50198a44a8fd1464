"""The grant engine's GitHub client: every call in the engine's terms (an environment's
protection, a secret, a repository on an organization secret), retried and counted.

The reads the drift check and the team sync repeat are conditional: each sends the ETag of
the last answer (remembered.py) and takes the remembered answer on a 304, which GitHub does
not count against the hourly rate limit."""

from __future__ import annotations

import base64
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from django.conf import settings
from github import GithubException
from nacl.public import PublicKey, SealedBox

from core import metrics
from integrations.github.budget import budget_observed
from integrations.github.connections import (
    api_path,
    engine_github,
    engine_token_refused,
    repository_path,
)
from integrations.github.environments import EnvironmentProtection
from integrations.github.errors import (
    NotFoundError,
    PermanentGitHubError,
    TransientGitHubError,
    classify,
)
from integrations.github.installation_tokens import sending_with_heartbeat
from integrations.github.remembered import Remembered, forget, recall, remember
from integrations.github.retry import RetryPolicy

# What a conditional GET's attempt answers when GitHub said 304 Not Modified.
NOT_MODIFIED = object()
# Logins and numeric ids (GET /users/{login}) are remembered for good: GitHub ids never change.
USER_ID = "user_id"

# The HTTP calls of the whole package log under this name (app.AppInstallationClient's too).
logger = logging.getLogger(__name__)


@dataclass
class GitHubClient:
    """Talks to GitHub. heartbeat is called before every attempt and during waits; the
    reconciler uses it to renew its lease (and it raises LeaseLost to stop)."""

    heartbeat: Callable[[], None] = field(default=lambda: None)
    retry: RetryPolicy = field(default_factory=RetryPolicy.from_settings)
    dry_run = False
    # Whose hourly quota its answers report (airlock_github_rate_limit_remaining).
    rate_limit_client = "engine"
    # Conditional reads GitHub answered 304: the remembered answer stood, at no cost.
    unchanged_reads: int = field(default=0, init=False)

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, operation: str, send: Callable[[], object], *, family: str):
        """family: the endpoint family, as airlock_github_requests_total counts it."""
        started = time.monotonic()
        attempt = 0
        refused = False
        while True:
            attempt += 1
            self.heartbeat()
            try:
                with sending_with_heartbeat(self.heartbeat):
                    answer = send()
            except GithubException as exc:
                self._count(family, str(exc.status))
                if exc.status == 401 and not refused and self._token_refused():
                    # The shared installation token was revoked or expired early: dropped,
                    # the next try mints a new one. Once: a second 401 is GitHub's answer.
                    refused = True
                    logger.info("GitHub %s: 401, trying once more with a new token", operation)
                    continue
                error = classify(exc, operation)
            except (
                requests.Timeout,
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                timed_out = isinstance(exc, requests.Timeout)
                self._count(family, "timeout" if timed_out else "connection_error")
                error = TransientGitHubError(f"{type(exc).__name__}: {exc}", operation=operation)
            else:
                self._count(family, "304" if answer is NOT_MODIFIED else "2xx")
                return answer
            if isinstance(error, PermanentGitHubError):
                raise error
            if error.retry_at is not None:
                wait = max(0.0, (error.retry_at - datetime.now(UTC)).total_seconds())
                wait += random.uniform(0, self.retry.base_seconds)
            else:
                wait = self.retry.backoff(attempt)
            spent = time.monotonic() - started
            if attempt >= self.retry.max_attempts or spent + wait > self.retry.max_seconds:
                logger.warning("GitHub %s failed after %d attempts: %s", operation, attempt, error)
                raise error
            logger.info(
                "GitHub %s: %s; attempt %d, retrying in %.2fs", operation, error, attempt, wait
            )
            self._sleep(wait)

    def _count(self, family: str, status: str) -> None:
        # PyGithub keeps the x-ratelimit-* headers of each answer, an error's too (-1 before
        # the first); without an answer there is nothing new to report.
        answered = status not in ("timeout", "connection_error")
        requester = self._requester() if answered else None
        remaining = requester.rate_limiting[0] if answered else None
        metrics.github_answered(
            family=family, status=status, client=self.rate_limit_client, remaining=remaining
        )
        if answered:
            # What the sweep, the drift check and the team sync decide from (budget.py).
            budget_observed(
                client=self.rate_limit_client,
                remaining=requester.rate_limiting[0],
                limit=requester.rate_limiting[1],
                reset=requester.rate_limiting_resettime,
            )

    def _requester(self):
        return engine_github().requester

    def _token_refused(self) -> bool:
        """After a 401: whether the credentials were a shared token now dropped (so one more
        try may succeed)."""
        return engine_token_refused()

    def _sleep(self, seconds: float) -> None:
        # Sleep in short slices so a long rate-limit wait keeps the lease alive.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 5.0))
            self.heartbeat()

    def _request(self, verb: str, path: str, *, body=None, parameters=None):
        # PyGithub's requester directly, for secrets: Environment.delete_secret answers
        # False on a 5xx instead of raising (so a failed delete would look done), and
        # neither it nor OrganizationSecret.add_repo lets us tell 404 from other errors.
        requester = engine_github().requester
        headers, payload = requester.requestJsonAndCheck(
            verb, path, parameters=parameters, input=body
        )
        return payload

    def _read(
        self,
        operation: str,
        path: str,
        *,
        kind: str,
        parse: Callable[[object], object],
        family: str,
        parameters: dict | None = None,
    ):
        """A conditional GET: If-None-Match with the ETag of the last answer to this URL,
        and on 304 what was parsed from that answer; otherwise parse the new answer (parse
        returns JSON) and remember it with its ETag. kind names what parse returns
        (RememberedRead.kind)."""
        url = _absolute_url(path, parameters)
        known = recall(kind, url)
        try:
            answer = self._call(
                operation, lambda: self._conditional_get(path, parameters, known), family=family
            )
        except NotFoundError:
            if known is not None:
                forget(kind, url)  # gone: nothing to keep for it
            raise
        if answer is NOT_MODIFIED:
            self.unchanged_reads += 1
            return known.parsed
        etag, payload = answer
        parsed = parse(payload)
        if etag:
            remember(kind, url, etag=etag, parsed=parsed)
        return parsed

    def _conditional_get(self, path: str, parameters: dict | None, known: Remembered | None):
        # PyGithub's requestJsonAndCheck hides the status, so a 304 (no body) could not be
        # told from an empty answer: requestJson gives the status, and GitHub's errors are
        # raised as PyGithub raises them, for classify().
        requester = engine_github().requester
        headers = {"If-None-Match": known.etag} if known is not None and known.etag else {}
        status, answer_headers, body = requester.requestJson("GET", path, parameters, headers)
        if status == 304 and headers:
            return NOT_MODIFIED
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = {"message": "GitHub's answer is not JSON"}
            status = status if status >= 400 else 502
        if status >= 300:
            message = payload if isinstance(payload, dict) else {"message": str(payload)}
            raise requester.createException(status, answer_headers, message)
        return answer_headers.get("etag", ""), payload

    # -- users and repositories --------------------------------------------------------------

    def known_user_id(self, login: str) -> int | None:
        """The numeric id a GET /users/{login} answered before, without asking again: the
        id of an account never changes."""
        known = recall(USER_ID, _absolute_url(_user_path(login)))
        return known.parsed if known is not None else None

    def user_id(self, login: str) -> int:
        """GET /users/{login}: the numeric id the environment API wants (remembered, see
        known_user_id)."""
        return self._read(
            f"GET user {login}",
            _user_path(login),
            kind=USER_ID,
            parse=lambda payload: int(payload["id"]),
            family="users",
        )

    def repository_id(self, repository: str) -> int:
        return self._call(
            f"GET repository {repository}",
            lambda: engine_github().get_repo(repository).id,
            family="repositories",
        )

    # -- workflow runs -----------------------------------------------------------------------

    def run_attempt_triggering_actor(
        self, repository: str, run_id: int, attempt: int
    ) -> tuple[str, int]:
        """GET .../actions/runs/{run_id}/attempts/{attempt_number}: the login and numeric id
        of whoever triggered this attempt of the run (its `triggering_actor`; `actor` stays
        the run's author on a re-run). Needs the Actions read permission; NotFoundError
        when the run or attempt does not exist or the credentials may not see it."""
        path = repository_path(
            repository, "actions", "runs", str(int(run_id)), "attempts", str(int(attempt))
        )
        operation = f"GET attempt {attempt} of workflow run {run_id} of {repository}"
        payload = self._call(
            operation,
            lambda: self._request("GET", path, parameters={"exclude_pull_requests": "true"}),
            family="workflow_runs",
        )
        who = payload.get("triggering_actor") or {}
        login, account_id = who.get("login"), who.get("id")
        if not isinstance(login, str) or not login or not isinstance(account_id, int):
            raise PermanentGitHubError(
                "the workflow run attempt names no triggering actor", operation=operation
            )
        return login, account_id

    # -- environments ------------------------------------------------------------------------

    def get_environment(self, repository: str, environment: str) -> EnvironmentProtection:
        """One GET of the environment. NotFoundError when the repository or environment is
        missing (Airlock never creates environments: a typo must not make a new one)."""
        protection = self._read(
            f"GET environment {repository}:{environment}",
            repository_path(repository, "environments", environment),
            kind="environment_protection",
            parse=lambda payload: EnvironmentProtection.from_github(payload).as_json(),
            family="environments",
        )
        return EnvironmentProtection.from_json(protection)

    def put_environment(
        self, repository: str, environment: str, protection: EnvironmentProtection
    ) -> EnvironmentProtection:
        """One PUT with every setting as read, only the reviewers changed: PyGithub's
        create_environment sends all four fields, and GitHub resets one left at a default."""
        arguments = protection.create_environment_arguments()
        payload = self._call(
            f"PUT environment {repository}:{environment}",
            lambda: (
                engine_github()
                .get_repo(repository)
                .create_environment(environment, **arguments)
                .raw_data
            ),
            family="environments",
        )
        return EnvironmentProtection.from_github(payload)

    # -- environment secrets -----------------------------------------------------------------

    def environment_secret_exists(self, repository: str, environment: str, name: str) -> bool:
        try:
            self._read(
                f"GET environment secret {name} of {repository}:{environment}",
                repository_path(repository, "environments", environment, "secrets", name),
                kind="environment_secret_present",
                parse=lambda payload: True,
                family="environment_secrets",
            )
        except NotFoundError:
            return False
        return True

    def put_environment_secret(
        self, repository: str, environment: str, name: str, value: str
    ) -> None:
        """Seal the value to the environment's public key (libsodium sealed box) and store
        it: one GET of the key and one PUT. GitHub never sees the value in clear."""
        key = self._read(
            f"GET public key of {repository}:{environment}",
            repository_path(repository, "environments", environment, "secrets", "public-key"),
            kind="environment_public_key",
            parse=lambda payload: {"key": payload["key"], "key_id": payload["key_id"]},
            family="environment_secrets",
        )
        box = SealedBox(PublicKey(base64.b64decode(key["key"])))
        sealed = base64.b64encode(box.encrypt(value.encode())).decode()
        body = {"encrypted_value": sealed, "key_id": key["key_id"]}
        self._call(
            f"PUT environment secret {name} of {repository}:{environment}",
            lambda: self._request(
                "PUT",
                repository_path(repository, "environments", environment, "secrets", name),
                body=body,
            ),
            family="environment_secrets",
        )

    def delete_environment_secret(self, repository: str, environment: str, name: str) -> bool:
        """DELETE the secret; False when it was already gone (which is what we wanted)."""
        try:
            self._call(
                f"DELETE environment secret {name} of {repository}:{environment}",
                lambda: self._request(
                    "DELETE",
                    repository_path(repository, "environments", environment, "secrets", name),
                ),
                family="environment_secrets",
            )
        except NotFoundError:
            return False
        return True

    # -- organization secrets ----------------------------------------------------------------

    def org_secret_visibility(self, org: str, name: str) -> str:
        payload = self._call(
            f"GET organization secret {org}/{name}",
            lambda: self._request("GET", api_path("orgs", org, "actions", "secrets", name)),
            family="organization_secrets",
        )
        return payload.get("visibility", "")

    def org_secret_repository_ids(self, org: str, name: str) -> list[int]:
        """The secret's selected repositories (one GET per 100)."""
        ids: list[int] = []
        page = 1
        while True:
            answer = self._read(
                f"GET repositories of organization secret {org}/{name}",
                api_path("orgs", org, "actions", "secrets", name, "repositories"),
                parameters={"per_page": PAGE, "page": page},
                kind="org_secret_repository_ids",
                parse=lambda payload: {
                    "ids": [int(r["id"]) for r in payload.get("repositories") or []],
                    "total_count": int(payload.get("total_count", 0)),
                },
                family="organization_secrets",
            )
            ids.extend(answer["ids"])
            if len(answer["ids"]) < PAGE or len(ids) >= answer["total_count"]:
                return ids
            page += 1

    def add_org_secret_repository(self, org: str, name: str, repository_id: int) -> None:
        self._call(
            f"PUT repository {repository_id} on organization secret {org}/{name}",
            lambda: self._request(
                "PUT",
                api_path("orgs", org, "actions", "secrets", name, "repositories", repository_id),
            ),
            family="organization_secrets",
        )

    def remove_org_secret_repository(self, org: str, name: str, repository_id: int) -> None:
        self._call(
            f"DELETE repository {repository_id} from organization secret {org}/{name}",
            lambda: self._request(
                "DELETE",
                api_path("orgs", org, "actions", "secrets", name, "repositories", repository_id),
            ),
            family="organization_secrets",
        )

    # -- teams (approver groups synced from a team: requests_app.services.approver_groups)

    def team_member_logins(self, org: str, team_slug: str) -> list[str]:
        """The logins of a team's members: GET .../teams/{slug}/members, 100 a page, each
        page a conditional read. NotFoundError when the team does not exist or the
        credentials may not see it."""
        logins: list[str] = []
        page = 1
        while True:
            batch = self._read(
                f"GET members of team {org}/{team_slug}",
                api_path("orgs", org, "teams", team_slug, "members"),
                parameters={"per_page": PAGE, "page": page},
                kind="team_member_logins",
                parse=lambda payload: [member["login"] for member in payload or []],
                family="teams",
            )
            logins.extend(batch)
            if len(batch) < PAGE:
                return logins
            page += 1


# GitHub's largest page: fewer calls per list.
PAGE = 100


def _user_path(login: str) -> str:
    # Logins are case-insensitive on GitHub: one remembered answer per account.
    return api_path("users", login.lower())


def _absolute_url(path: str, parameters: dict | None = None) -> str:
    """What a remembered answer is filed under: the API's URL, so another GITHUB_API_URL
    never answers from this one's memory, and the query in a stable order."""
    query = urllib.parse.urlencode(sorted((parameters or {}).items()))
    return settings.GITHUB_API_URL.rstrip("/") + path + (f"?{query}" if query else "")
