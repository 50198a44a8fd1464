"""GitHub's hourly budget: the quota each client's last answer reported (models.RateLimitBudget),
and which work may still spend it.

When the quota runs low, work goes in this order until GitHub's window resets
(x-ratelimit-reset): revocations always (access that should end must end); then grants;
then the drift check and the team sync, which only confirm what should already be so.

- NORMAL: everything runs.
- LOW (under AIRLOCK_GITHUB_BUDGET_LOW_PERCENT left): the drift check and the team sync wait.
- CRITICAL (under AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT left): grants wait too. They stay
  pending and their requests approved: the first sweep after the reset applies them.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

# The client whose quota the grant engine and the team sync spend (GitHubClient's).
ENGINE = "engine"
# A client's row is written at most this often while its band and window stay the same: the
# remaining count shown is at most this stale; a change of band is written at once.
WRITE_EVERY_SECONDS = 10


class Band(enum.IntEnum):
    """How low the quota is; the value is airlock_github_rate_limit_band's."""

    NORMAL = 0
    LOW = 1
    CRITICAL = 2


class Work(enum.StrEnum):
    REVOCATION = "revocation"
    GRANT = "grant"
    DRIFT_CHECK = "drift check"
    TEAM_SYNC = "team sync"


# What each band still lets spend GitHub's quota, revocations first.
ALLOWED = {
    Band.NORMAL: frozenset(Work),
    Band.LOW: frozenset({Work.REVOCATION, Work.GRANT}),
    Band.CRITICAL: frozenset({Work.REVOCATION}),
}

WAITING = {
    Band.NORMAL: "",
    Band.LOW: "the drift check and the team sync wait",
    Band.CRITICAL: "only revocations run: grants, the drift check and the team sync wait",
}


def band_for(remaining: int, limit: int) -> Band:
    if limit <= 0:
        return Band.NORMAL  # no quota reported (GitHub Enterprise with rate limits off)
    percent = 100 * remaining / limit
    if percent < settings.AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT:
        return Band.CRITICAL
    if percent < settings.AIRLOCK_GITHUB_BUDGET_LOW_PERCENT:
        return Band.LOW
    return Band.NORMAL


@dataclass(frozen=True)
class Budget:
    """One client's quota as last seen."""

    client: str
    remaining: int
    limit: int
    reset_at: datetime
    seen_at: datetime

    def band(self, now: datetime | None = None) -> Band:
        # Once the window has reset, the quota is whole again, whatever was seen before it.
        if (now or timezone.now()) >= self.reset_at:
            return Band.NORMAL
        return band_for(self.remaining, self.limit)

    def allows(self, work: Work, now: datetime | None = None) -> bool:
        return work in ALLOWED[self.band(now)]

    def waiting(self, now: datetime | None = None) -> str:
        """What waits for the reset, in words ("" when nothing does)."""
        return WAITING[self.band(now)]

    @property
    def percent_left(self) -> int:
        return round(100 * self.remaining / self.limit) if self.limit > 0 else 100


# The model is imported in each function, as in remembered.py: this package is imported
# while Django loads the apps.


def _budget(row) -> Budget:
    return Budget(
        client=row.client,
        remaining=row.remaining,
        limit=row.limit,
        reset_at=row.reset_at,
        seen_at=row.seen_at,
    )


def github_budget(client: str = ENGINE) -> Budget | None:
    """The client's quota as last seen, or None before its first answer."""
    from integrations.github.models import RateLimitBudget

    row = RateLimitBudget.objects.filter(client=client).first()
    return _budget(row) if row is not None else None


def github_budgets() -> list[Budget]:
    """Every client's, for the dashboard and /metrics."""
    from integrations.github.models import RateLimitBudget

    return [_budget(row) for row in RateLimitBudget.objects.order_by("client")]


def github_work_allowed(work: Work, *, client: str = ENGINE, now: datetime | None = None) -> bool:
    """Whether this work may spend the client's quota now. Revocations always may."""
    if work == Work.REVOCATION:
        return True
    budget = github_budget(client)
    return budget is None or budget.allows(work, now)


def budget_observed(*, client: str, remaining: int, limit: int, reset: int) -> None:
    """After each answer from GitHub (GitHubClient._count): keep the quota it reported.

    Cheap on the way of every call: a cache key per client, band and window lets one write
    through per WRITE_EVERY_SECONDS (CACHE_URL shares it between processes; otherwise each
    process writes its own at that pace), and a new band or window writes at once. Never
    raises: a quota that could not be kept must not fail the call that reported it."""
    if remaining < 0 or limit <= 0 or reset <= 0:
        return  # PyGithub's -1 before any answer carried the headers
    band = band_for(remaining, limit)
    try:
        if not cache.add(f"airlock:github-budget:{client}:{int(band)}:{reset}", 1,
                         WRITE_EVERY_SECONDS):
            return
        _write(client=client, remaining=remaining, limit=limit, reset=reset, band=band)
    except Exception as exc:  # the database's or the cache's (Redis down): the call goes on
        logger.warning("GitHub's budget for %s not recorded: %s", client, exc)


def _write(*, client: str, remaining: int, limit: int, reset: int, band: Band) -> None:
    from integrations.github.models import RateLimitBudget

    now = timezone.now()
    reset_at = datetime.fromtimestamp(reset, UTC)
    # A savepoint: a failed write must not break a transaction the caller may be in.
    with transaction.atomic():
        before = RateLimitBudget.objects.filter(client=client).first()
        RateLimitBudget.objects.update_or_create(
            client=client,
            defaults={"remaining": remaining, "limit": limit, "reset_at": reset_at, "seen_at": now},
        )
    # The band the stored answer was in, its reset aside: after a critical hour, the first
    # answer of the new window says that all work runs again.
    was = band_for(before.remaining, before.limit) if before is not None else Band.NORMAL
    if band != was:
        # Logged where the band changes, once for every process: not by each sweep that
        # holds work back while it lasts.
        if band == Band.NORMAL:
            logger.warning(
                "GitHub's budget for %s is back (%d of %d left): all work runs again",
                client, remaining, limit,
            )
        else:
            logger.warning(
                "GitHub's budget for %s is %s (%d of %d left until %s): %s",
                client, band.name.lower(), remaining, limit, reset_at.isoformat(),
                WAITING[band],
            )
