"""The GitHub client of the grant engine: the only module in Airlock that calls GitHub.

It speaks in the engine's terms (an environment's protection, a secret, a repository on an
organization secret) and hides PyGithub, authentication and retries. Every call either
returns what GitHub answered or raises one of two errors:

- TransientGitHubError: worth trying again later (5xx, timeouts, connection errors, rate
  limits). Calls are already retried here, with exponential backoff and jitter, honouring
  ``retry-after`` and ``x-ratelimit-reset``, for at most AIRLOCK_GITHUB_RETRY_MAX_SECONDS;
  the error says when GitHub allowed the next call (``retry_at``).
- PermanentGitHubError: trying again will not help (404, 422, 401, 403 other than rate
  limits). It carries GitHub's own message, which people see on the grant.

PyGithub's own urllib3 retry is turned off: its backoff cannot be bounded per call, cannot
renew the reconciler's lease while it waits, and hides the rate-limit reset time we need to
schedule the next attempt. Its request pacing (seconds_between_writes) is off too: Airlock
makes a handful of writes per reconcile and a revocation must not wait for a pacing sleep.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import requests
from django.conf import settings
from github import Auth, Github, GithubException
from github.EnvironmentDeploymentBranchPolicy import EnvironmentDeploymentBranchPolicyParams
from github.EnvironmentProtectionRuleReviewer import ReviewerParams
from nacl.public import PublicKey, SealedBox

from core import metrics
from core.durations import exponential_backoff

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = {500, 502, 503, 504}
# A call someone is waiting on (the grant check asking who started a re-run) holds a web
# worker and the job's HTTP request: its retries stop after this long, whatever the engine's.
INTERACTIVE_RETRY_MAX_SECONDS = 10


# --- errors ----------------------------------------------------------------------------------


class GitHubError(Exception):
    def __init__(self, message: str, *, status: int | None = None, operation: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.operation = operation

    def __str__(self):
        status = f"{self.status} " if self.status else ""
        where = f" ({self.operation})" if self.operation else ""
        return f"GitHub {status}{self.message}{where}".strip()


class PermanentGitHubError(GitHubError):
    """GitHub refused for a reason that retrying does not change."""


class NotFoundError(PermanentGitHubError):
    """404: the repository, environment, user, secret or organization does not exist (or the
    credentials cannot see it, which GitHub answers the same way)."""


class TransientGitHubError(GitHubError):
    def __init__(self, message: str, *, retry_at: datetime | None = None, **kwargs):
        super().__init__(message, **kwargs)
        # When GitHub said the next call may be made (rate limits); None: back off normally.
        self.retry_at = retry_at


class LeaseLost(Exception):
    """Raised by a heartbeat when the reconciler no longer holds its target's lease."""


# --- what the engine reads and writes ----------------------------------------------------------


@dataclass(frozen=True)
class Reviewer:
    """A required reviewer: a user (by id, with its login) or a team (by id, with its slug)."""

    type: str  # "User" | "Team"
    id: int | None  # None only in dry-run, where logins are not resolved
    name: str  # login or "org/slug"

    @property
    def key(self) -> tuple:
        return (self.type, self.id if self.id is not None else self.name.lower())

    def as_json(self) -> dict:
        label = "login" if self.type == "User" else "slug"
        return {"type": self.type, "id": self.id, label: self.name}

    @classmethod
    def from_json(cls, value: dict) -> Reviewer:
        return cls(value["type"], value.get("id"), value.get("login") or value.get("slug") or "")


@dataclass(frozen=True)
class EnvironmentProtection:
    """An environment's protection settings, as read from GitHub. Written back with only the
    reviewers changed (the PUT replaces every field it is given, and resets the others)."""

    reviewers: tuple[Reviewer, ...]
    wait_timer: int = 0
    prevent_self_review: bool = False
    deployment_branch_policy: dict | None = None
    can_admins_bypass: bool | None = None

    def with_reviewers(self, reviewers) -> EnvironmentProtection:
        return replace(self, reviewers=tuple(reviewers))

    def create_environment_arguments(self) -> dict:
        """Repository.create_environment's arguments: all four settings the PUT replaces.
        (can_admins_bypass is not in the PUT's schema, so GitHub keeps it as it is.)"""
        policy = self.deployment_branch_policy
        return {
            "wait_timer": self.wait_timer,
            "prevent_self_review": self.prevent_self_review,
            "reviewers": [ReviewerParams(r.type, r.id) for r in self.reviewers],
            "deployment_branch_policy": (
                EnvironmentDeploymentBranchPolicyParams(
                    protected_branches=policy["protected_branches"],
                    custom_branch_policies=policy["custom_branch_policies"],
                )
                if policy is not None
                else None
            ),
        }

    def as_json(self) -> dict:
        return {
            "reviewers": [r.as_json() for r in self.reviewers],
            "wait_timer": self.wait_timer,
            "prevent_self_review": self.prevent_self_review,
            "deployment_branch_policy": self.deployment_branch_policy,
            "can_admins_bypass": self.can_admins_bypass,
        }

    @classmethod
    def from_json(cls, value: dict) -> EnvironmentProtection:
        return cls(
            reviewers=tuple(Reviewer.from_json(r) for r in value.get("reviewers", [])),
            wait_timer=value.get("wait_timer", 0),
            prevent_self_review=value.get("prevent_self_review", False),
            deployment_branch_policy=value.get("deployment_branch_policy"),
            can_admins_bypass=value.get("can_admins_bypass"),
        )

    @classmethod
    def from_github(cls, payload: dict) -> EnvironmentProtection:
        """Parse GET/PUT .../environments/{name}. The reviewers, wait timer and
        prevent-self-review live in protection_rules; an environment without rules has
        neither, which means no reviewers, no wait and no self-review prevention."""
        reviewers: list[Reviewer] = []
        wait_timer = 0
        prevent_self_review = False
        for rule in payload.get("protection_rules") or []:
            if rule.get("type") == "wait_timer":
                wait_timer = int(rule.get("wait_timer") or 0)
            elif rule.get("type") == "required_reviewers":
                prevent_self_review = bool(rule.get("prevent_self_review"))
                for entry in rule.get("reviewers") or []:
                    who = entry.get("reviewer") or {}
                    if entry.get("type") == "Team":
                        org = (who.get("organization") or {}).get("login")
                        slug = who.get("slug") or who.get("name") or ""
                        name = f"{org}/{slug}" if org else slug
                        reviewers.append(Reviewer("Team", who.get("id"), name))
                    else:
                        reviewers.append(Reviewer("User", who.get("id"), who.get("login") or ""))
        policy = payload.get("deployment_branch_policy")
        if policy is not None:
            policy = {
                "protected_branches": bool(policy.get("protected_branches")),
                "custom_branch_policies": bool(policy.get("custom_branch_policies")),
            }
        return cls(
            reviewers=tuple(reviewers),
            wait_timer=wait_timer,
            prevent_self_review=prevent_self_review,
            deployment_branch_policy=policy,
            can_admins_bypass=payload.get("can_admins_bypass"),
        )


# --- retries -----------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    max_seconds: float
    max_attempts: int
    base_seconds: float
    cap_seconds: float

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            max_seconds=settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS,
            max_attempts=settings.AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS,
            base_seconds=settings.AIRLOCK_GITHUB_RETRY_BASE_SECONDS,
            cap_seconds=settings.AIRLOCK_GITHUB_RETRY_CAP_SECONDS,
        )

    @classmethod
    def interactive(cls) -> RetryPolicy:
        """The configured policy, bounded for a call an HTTP request waits on."""
        policy = cls.from_settings()
        return replace(policy, max_seconds=min(policy.max_seconds, INTERACTIVE_RETRY_MAX_SECONDS))

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so that workers that
        failed together do not all come back at the same instant."""
        ceiling = exponential_backoff(
            attempt,
            base=timedelta(seconds=self.base_seconds),
            cap=timedelta(seconds=self.cap_seconds),
        ).total_seconds()
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _header(headers: dict | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _github_message(exc: GithubException) -> str:
    """GitHub's own words: the message, plus the details of a 422's errors list."""
    payload = exc.data if isinstance(exc.data, dict) else {}
    message = payload.get("message") or exc.message or f"HTTP {exc.status}"
    details = []
    for error in payload.get("errors") or []:
        if isinstance(error, dict):
            details.append(error.get("message") or error.get("code") or "")
        elif error:
            details.append(str(error))
    details = [d for d in details if d and d not in message]
    return f"{message} ({'; '.join(details)})" if details else message


def classify(exc: GithubException, operation: str) -> GitHubError:
    """Tell a transient GitHub answer from a permanent one."""
    status = exc.status
    message = _github_message(exc)
    retry_after = _header(exc.headers, "retry-after")
    remaining = _header(exc.headers, "x-ratelimit-remaining")
    reset = _header(exc.headers, "x-ratelimit-reset")
    rate_limited = status == 429 or (
        status == 403
        and (
            retry_after is not None
            or remaining == "0"
            or "rate limit" in message.lower()
        )
    )
    if rate_limited:
        retry_at = None
        if retry_after is not None and retry_after.strip().isdigit():
            retry_at = datetime.now(UTC) + timedelta(seconds=int(retry_after))
        elif remaining == "0" and reset is not None and reset.strip().isdigit():
            retry_at = datetime.fromtimestamp(int(reset), UTC)
        elif status == 403 or status == 429:
            # Secondary limit without a header: GitHub asks to wait at least a minute.
            retry_at = datetime.now(UTC) + timedelta(seconds=60)
        return TransientGitHubError(
            message, status=status, operation=operation, retry_at=retry_at
        )
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientGitHubError(message, status=status, operation=operation)
    if status == 404:
        return NotFoundError(message, status=status, operation=operation)
    return PermanentGitHubError(message, status=status, operation=operation)


# --- the client -----------------------------------------------------------------------------


_clients = threading.local()


def _pygithub() -> Github:
    """One PyGithub instance per thread and configuration: an App installation token is
    minted once and reused until it is about to expire (PyGithub renews it)."""
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
        auth = Auth.AppInstallationAuth(
            Auth.AppAuth(int(settings.GITHUB_APP_ID), settings.GITHUB_APP_PRIVATE_KEY),
            int(settings.GITHUB_APP_INSTALLATION_ID),
        )
    client = _new_pygithub(auth)
    _clients.github = (config, client)
    return client


def _new_pygithub(auth) -> Github:
    # PyGithub's own retries and throttling are off: GitHubClient retries, honouring
    # retry-after and the rate-limit reset, and renews the reconciler's lease in between.
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


def _path(*parts: str) -> str:
    return "/" + "/".join(urllib.parse.quote(str(p), safe="") for p in parts)


def _repo_path(repository: str, *rest: str) -> str:
    owner, name = repository.split("/", 1)
    return _path("repos", owner, name, *rest)


@dataclass
class GitHubClient:
    """Talks to GitHub. heartbeat is called before every attempt and during waits; the
    reconciler uses it to renew its lease (and it raises LeaseLost to stop)."""

    heartbeat: Callable[[], None] = field(default=lambda: None)
    retry: RetryPolicy = field(default_factory=RetryPolicy.from_settings)
    dry_run = False
    # Whose hourly quota its answers report (airlock_github_rate_limit_remaining).
    rate_limit_client = "engine"

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, operation: str, send: Callable[[], object], *, family: str):
        """family: the endpoint family, as airlock_github_requests_total counts it."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.heartbeat()
            try:
                answer = send()
            except GithubException as exc:
                self._count(family, str(exc.status))
                error = classify(exc, operation)
            except (
                requests.Timeout,
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                timed_out = isinstance(exc, requests.Timeout)
                self._count(family, "timeout" if timed_out else "connection_error")
                error = TransientGitHubError(
                    f"{type(exc).__name__}: {exc}", operation=operation
                )
            else:
                self._count(family, "2xx")
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
        remaining = self._requester().rate_limiting[0] if answered else None
        metrics.github_answered(
            family=family, status=status, client=self.rate_limit_client, remaining=remaining
        )

    def _requester(self):
        return _pygithub().requester

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
        requester = _pygithub().requester
        headers, payload = requester.requestJsonAndCheck(
            verb, path, parameters=parameters, input=body
        )
        return payload

    # -- users and repositories --------------------------------------------------------------

    def user_id(self, login: str) -> int:
        """GET /users/{login}: the numeric id the environment API wants."""
        return self._call(
            f"GET user {login}", lambda: _pygithub().get_user(login).id, family="users"
        )

    def repository_id(self, repository: str) -> int:
        return self._call(
            f"GET repository {repository}",
            lambda: _pygithub().get_repo(repository).id,
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
        path = _repo_path(
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
        payload = self._call(
            f"GET environment {repository}:{environment}",
            lambda: _pygithub().get_repo(repository).get_environment(environment).raw_data,
            family="environments",
        )
        return EnvironmentProtection.from_github(payload)

    def put_environment(
        self, repository: str, environment: str, protection: EnvironmentProtection
    ) -> EnvironmentProtection:
        """One PUT with every setting as read, only the reviewers changed: PyGithub's
        create_environment sends all four fields, and GitHub resets one left at a default."""
        arguments = protection.create_environment_arguments()
        payload = self._call(
            f"PUT environment {repository}:{environment}",
            lambda: _pygithub()
            .get_repo(repository)
            .create_environment(environment, **arguments)
            .raw_data,
            family="environments",
        )
        return EnvironmentProtection.from_github(payload)

    # -- environment secrets -----------------------------------------------------------------

    def environment_secret_exists(self, repository: str, environment: str, name: str) -> bool:
        try:
            self._call(
                f"GET environment secret {name} of {repository}:{environment}",
                lambda: self._request(
                    "GET", _repo_path(repository, "environments", environment, "secrets", name)
                ),
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
        key = self._call(
            f"GET public key of {repository}:{environment}",
            lambda: self._request(
                "GET",
                _repo_path(repository, "environments", environment, "secrets", "public-key"),
            ),
            family="environment_secrets",
        )
        box = SealedBox(PublicKey(base64.b64decode(key["key"])))
        sealed = base64.b64encode(box.encrypt(value.encode())).decode()
        body = {"encrypted_value": sealed, "key_id": key["key_id"]}
        self._call(
            f"PUT environment secret {name} of {repository}:{environment}",
            lambda: self._request(
                "PUT",
                _repo_path(repository, "environments", environment, "secrets", name),
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
                    _repo_path(repository, "environments", environment, "secrets", name),
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
            lambda: self._request("GET", _path("orgs", org, "actions", "secrets", name)),
            family="organization_secrets",
        )
        return payload.get("visibility", "")

    def org_secret_repository_ids(self, org: str, name: str) -> list[int]:
        """The secret's selected repositories (one GET per 100)."""
        ids: list[int] = []
        page = 1
        while True:
            payload = self._call(
                f"GET repositories of organization secret {org}/{name}",
                lambda page=page: self._request(
                    "GET",
                    _path("orgs", org, "actions", "secrets", name, "repositories"),
                    parameters={"per_page": 100, "page": page},
                ),
                family="organization_secrets",
            )
            batch = [int(r["id"]) for r in payload.get("repositories") or []]
            ids.extend(batch)
            if len(batch) < 100 or len(ids) >= int(payload.get("total_count", 0)):
                return ids
            page += 1

    def add_org_secret_repository(self, org: str, name: str, repository_id: int) -> None:
        self._call(
            f"PUT repository {repository_id} on organization secret {org}/{name}",
            lambda: self._request(
                "PUT",
                _path("orgs", org, "actions", "secrets", name, "repositories", repository_id),
            ),
            family="organization_secrets",
        )

    def remove_org_secret_repository(self, org: str, name: str, repository_id: int) -> None:
        self._call(
            f"DELETE repository {repository_id} from organization secret {org}/{name}",
            lambda: self._request(
                "DELETE",
                _path("orgs", org, "actions", "secrets", name, "repositories", repository_id),
            ),
            family="organization_secrets",
        )

    # -- teams (approver groups synced from a team: requests_app.services) ---------------

    def team_member_logins(self, org: str, team_slug: str) -> list[str]:
        """The logins of a team's members, page by page (PyGithub follows the Link
        header; it is lazy about the team, so this is GET .../teams/{slug}/members only).
        NotFoundError when the team does not exist or the credentials may not see it."""

        def read():
            team = _pygithub().get_organization(org).get_team_by_slug(team_slug)
            return [member.login for member in team.get_members()]

        return self._call(f"GET members of team {org}/{team_slug}", read, family="teams")


class DryRunGitHub:
    """Stands in for GitHub when no credentials are configured: it reads nothing and writes
    nothing. Reads answer from `simulated` (what earlier dry-run writes left, kept by the
    reconciler on the target), so a demo grant is "added" and later "removed"."""

    dry_run = True  # logins and repositories get stand-in ids (reconciler._dry_run_id)

    def __init__(self, simulated: dict | None = None, heartbeat=None):
        self.simulated = simulated if simulated is not None else {}
        self.heartbeat = heartbeat or (lambda: None)

    def get_environment(self, repository, environment) -> EnvironmentProtection:
        return EnvironmentProtection.from_json(self.simulated.get("environment", {}))

    def put_environment(self, repository, environment, protection):
        self.simulated["environment"] = protection.as_json()
        return protection

    def environment_secret_exists(self, repository, environment, name) -> bool:
        return name in self.simulated.get("secrets", [])

    def put_environment_secret(self, repository, environment, name, value) -> None:
        secrets = self.simulated.setdefault("secrets", [])
        if name not in secrets:
            secrets.append(name)

    def delete_environment_secret(self, repository, environment, name) -> bool:
        secrets = self.simulated.setdefault("secrets", [])
        if name in secrets:
            secrets.remove(name)
            return True
        return False

    def org_secret_visibility(self, org, name) -> str:
        return "selected"

    def org_secret_repository_ids(self, org, name) -> list:
        return list(self.simulated.get("repositories", []))

    def add_org_secret_repository(self, org, name, repository_id) -> None:
        repositories = self.simulated.setdefault("repositories", [])
        if repository_id not in repositories:
            repositories.append(repository_id)

    def remove_org_secret_repository(self, org, name, repository_id) -> None:
        repositories = self.simulated.setdefault("repositories", [])
        if repository_id in repositories:
            repositories.remove(repository_id)


# --- deployment protection rules: answering as Airlock's GitHub App ------------------------------


class CallbackUrlError(ValueError):
    """A deployment_callback_url that is not GITHUB_API_URL's own review endpoint."""


_CALLBACK_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def deployment_callback_target(url: str) -> tuple[str, int]:
    """(repository, run_id) of a webhook's deployment_callback_url.

    The URL arrives in a webhook, so it is never requested as given (a forged or mistaken
    one would make Airlock send an App token wherever it pointed). It must be
    GITHUB_API_URL's own `/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`
    (same scheme, host and port; no credentials, query or fragment); the answer is then
    posted to that path, rebuilt from the parts, under GITHUB_API_URL.
    """
    base = urllib.parse.urlsplit(settings.GITHUB_API_URL)
    try:
        given = urllib.parse.urlsplit(url)
        same_origin = (given.scheme, given.hostname, given.port) == (
            base.scheme,
            base.hostname,
            base.port,
        )
    except ValueError:  # a malformed port, for instance
        same_origin = False
    if not same_origin or given.username or given.password or given.query or given.fragment:
        raise CallbackUrlError(
            f"deployment_callback_url is not on GITHUB_API_URL ({settings.GITHUB_API_URL})."
        )
    prefix = base.path.rstrip("/")
    match = re.fullmatch(
        re.escape(prefix)
        + r"/repos/([^/]+)/([^/]+)/actions/runs/([0-9]{1,19})/deployment_protection_rule",
        given.path,
    )
    owner, name = (urllib.parse.unquote(p) for p in match.groups()[:2]) if match else ("", "")
    if not (match and _CALLBACK_NAME.fullmatch(owner) and _CALLBACK_NAME.fullmatch(name)):
        raise CallbackUrlError(
            "deployment_callback_url is not a deployment protection rule callback "
            "(/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule)."
        )
    return f"{owner}/{name}", int(match.group(3))


def app_credentials_configured() -> bool:
    """Whether Airlock can act as its GitHub App (needed to answer protection rules)."""
    return bool(settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY)


_installation_clients = threading.local()


def _installation_pygithub(installation_id: int) -> Github:
    """PyGithub acting as one installation of the App, one per thread and installation;
    the installation token is minted with the App's JWT on first use and renewed by
    PyGithub before it expires."""
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
        auth = Auth.AppAuth(
            int(settings.GITHUB_APP_ID), settings.GITHUB_APP_PRIVATE_KEY
        ).get_installation_auth(installation_id)
        client = cache[1][installation_id] = _new_pygithub(auth)
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
        path = _repo_path(
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
