"""How long a GitHub call is retried: the bounds (from settings, or shorter for a call an
HTTP request waits on) and the backoff between attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings

from core.durations import exponential_backoff

# A call someone is waiting on (the grant check asking who started a re-run) holds a web
# worker and the job's HTTP request: its retries stop after this long, whatever the engine's.
INTERACTIVE_RETRY_MAX_SECONDS = 10


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
