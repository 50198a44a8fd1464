"""GitHub's answers as Airlock's errors: transient (worth trying again later) or permanent
(retrying will not help), and classify, which tells one from the other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from github import GithubException

TRANSIENT_STATUSES = {500, 502, 503, 504}


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
    """GitHub refused for a reason that retrying does not change (404, 422, 401, 403 other
    than rate limits). It carries GitHub's own message, which people see on the grant."""


class NotFoundError(PermanentGitHubError):
    """404: the repository, environment, user, secret or organization does not exist (or the
    credentials cannot see it, which GitHub answers the same way)."""


class TransientGitHubError(GitHubError):
    """Worth trying again later: 5xx, timeouts, connection errors, rate limits. The client
    has already retried it (integrations.github.retry); retry_at says when GitHub allows the
    next call."""

    def __init__(self, message: str, *, retry_at: datetime | None = None, **kwargs):
        super().__init__(message, **kwargs)
        # When GitHub said the next call may be made (rate limits); None: back off normally.
        self.retry_at = retry_at


class LeaseLost(Exception):
    """Raised by a heartbeat when the reconciler no longer holds its target's lease."""


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
        and (retry_after is not None or remaining == "0" or "rate limit" in message.lower())
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
        return TransientGitHubError(message, status=status, operation=operation, retry_at=retry_at)
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientGitHubError(message, status=status, operation=operation)
    if status == 404:
        return NotFoundError(message, status=status, operation=operation)
    return PermanentGitHubError(message, status=status, operation=operation)
