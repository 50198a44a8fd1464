"""Fault injection: answers the local GitHub gives instead of (or after) the real one.

A Fault matches requests by method and path glob and is used up after `times` matches
(None: until cleared). Globs match the canonical path (no /api/v3 prefix, no query):
`*` stays inside one path segment, `**` crosses segments, so "/repos/*/*/environments/*"
matches an environment but not its secrets.

A fault may delay (hold the connection, then answer: longer than a client's timeout, that is
a timeout), answer a status of its own, or both. The rate-limit helpers build GitHub's exact
403/429 answers, so PyGithub and our own client recognise them.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

DOCS_RATE_LIMITS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:0000000:0000000:00000000."
)


def _glob_to_regex(glob: str) -> re.Pattern:
    parts = re.split(r"(\*\*|\*|\?)", glob)
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(p, re.escape(p)) for p in parts) + r"\Z")


@dataclass
class Fault:
    method: str = "*"
    path_glob: str = "**"
    status: int | None = None  # None: after any delay, answer normally
    times: int | None = 1  # None: every matching request until cleared
    delay: float = 0.0  # seconds to hold the connection before answering
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._pattern = _glob_to_regex(self.path_glob)

    def matches(self, method: str, path: str) -> bool:
        return self.method in {"*", method} and bool(self._pattern.match(path))

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._writes_per_minute: int | None = None
        self._write_times: deque[float] = deque()

    def add(
        self,
        method: str = "*",
        path_glob: str = "**",
        status: int | None = 502,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        body: dict | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Answer `status` (GitHub-style error body unless `body`) to the next `times` matches."""
        if body is None and status is not None:
            body = {
                "message": _REASONS.get(status, "Server Error"),
                "documentation_url": "https://docs.github.com/rest",
            }
        fault = Fault(method, path_glob, status, times, delay, body, dict(headers or {}))
        with self._lock:
            self._faults.append(fault)
        return fault

    def timeout(
        self, method: str = "*", path_glob: str = "**", *, delay: float, times: int | None = 1
    ) -> Fault:
        """Hold matching requests for `delay` seconds, then answer them normally."""
        return self.add(method, path_glob, None, times=times, delay=delay)

    def secondary_rate_limit(
        self,
        method: str = "*",
        path_glob: str = "**",
        *,
        retry_after: int = 60,
        times: int | None = 1,
    ) -> Fault:
        """GitHub's 403 for going too fast, with retry-after."""
        return self.add(
            method,
            path_glob,
            403,
            times=times,
            body={
                "message": SECONDARY_MESSAGE,
                "documentation_url": f"{DOCS_RATE_LIMITS}#about-secondary-rate-limits",
            },
            headers={"retry-after": str(retry_after)},
        )

    def primary_rate_limit(
        self,
        method: str = "*",
        path_glob: str = "**",
        *,
        reset_in: int = 60,
        status: int = 403,
        times: int | None = 1,
    ) -> Fault:
        """GitHub's 403 (or 429) for a spent hourly quota: x-ratelimit-remaining 0 until reset."""
        reset = int(time.time()) + reset_in
        return self.add(
            method,
            path_glob,
            status,
            times=times,
            body={
                "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub "
                "Support for help, please include the request ID "
                "0000:0000:0000000:0000000:00000000.",
                "documentation_url": f"{DOCS_RATE_LIMITS}#about-primary-rate-limits",
            },
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            },
        )

    def limit_writes(self, per_minute: int | None = 80) -> None:
        """GitHub's secondary limit on content-creating requests (80 a minute); None lifts it."""
        with self._lock:
            self._writes_per_minute = per_minute
            self._write_times.clear()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._writes_per_minute = None
            self._write_times.clear()

    @property
    def pending(self) -> list[Fault]:
        """Faults not used up yet."""
        with self._lock:
            return [f for f in self._faults if not f.spent]

    def add_from_json(self, spec: dict) -> Fault | None:
        """POST /_fake/faults: {"kind": "add"|"timeout"|"secondary_rate_limit"|..., ...kwargs}."""
        spec = dict(spec)
        kind = spec.pop("kind", "add")
        if kind == "clear":
            self.clear()
            return None
        if kind == "limit_writes":
            self.limit_writes(spec.get("per_minute", 80))
            return None
        if kind not in {"add", "timeout", "secondary_rate_limit", "primary_rate_limit"}:
            raise ValueError(f"unknown fault kind {kind!r}")
        return getattr(self, kind)(**spec)

    def take(self, method: str, path: str, is_write: bool) -> Fault | None:
        """The fault to apply to this request, if any, counting it as used."""
        with self._lock:
            for fault in self._faults:
                if not fault.spent and fault.matches(method, path):
                    fault.hits += 1
                    return fault
            if is_write and self._writes_per_minute is not None:
                return self._write_limit_fault()
        return None

    def _write_limit_fault(self) -> Fault | None:
        moment = time.monotonic()
        while self._write_times and moment - self._write_times[0] >= 60:
            self._write_times.popleft()
        if len(self._write_times) < self._writes_per_minute:
            self._write_times.append(moment)
            return None
        wait = math.ceil(60 - (moment - self._write_times[0]))
        return Fault(
            status=403,
            body={
                "message": SECONDARY_MESSAGE,
                "documentation_url": f"{DOCS_RATE_LIMITS}#about-secondary-rate-limits",
            },
            headers={"retry-after": str(max(wait, 1))},
            hits=1,
        )


_REASONS = {
    400: "Bad Request",
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that. Please try "
    "resubmitting your request and contact us if the problem persists.",
}
