"""What GitHub looked like over time, read back from the local GitHub's request log: each
environment's reviewer history, and the revocation lag from it."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

ENVIRONMENT_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/environments/([^/]+)$")


def environment_key(repository: str, environment: str) -> tuple[str, str]:
    return (repository.lower(), environment.lower())


@dataclass
class Timeline:
    """Accepted reviewer lists per environment: [(at, frozenset of user ids)], oldest first."""

    puts: dict[tuple[str, str], list[tuple[float, frozenset]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    reads: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    writes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    refused_writes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    other_calls: int = 0

    @classmethod
    def from_requests(cls, requests, *, since: float = 0.0, until: float | None = None):
        timeline = cls()
        for request in requests:
            at = request.at
            if at < since or (until is not None and at > until):
                continue
            match = ENVIRONMENT_PATH.match(request.path)
            if not match:
                timeline.other_calls += 1
                continue
            owner, name, environment = match.groups()
            key = environment_key(f"{owner}/{name}", environment)
            if request.method == "GET":
                timeline.reads[key] += 1
            elif request.method == "PUT":
                if request.status == 200:
                    timeline.writes[key] += 1
                    reviewers = (request.json or {}).get("reviewers") or []
                    ids = frozenset(r["id"] for r in reviewers if r.get("type") == "User")
                    timeline.puts[key].append((at, ids))
                else:
                    timeline.refused_writes[key] += 1
        return timeline

    def left_at(self, key, user_id: int, *, after: float = 0.0, present_at_start=False):
        """When user_id was last taken out of the environment (the accepted PUT that no
        longer listed them) at or after `after`; None if they are still (or never were)
        there. present_at_start: they were a reviewer before the first PUT logged."""
        present = present_at_start
        left = None
        for at, ids in self.puts.get(key, []):
            if user_id in ids:
                present, left = True, None
            elif present:
                present = False
                if at >= after:
                    left = at
        return None if present else left

    def missing_during(self, key, user_id: int, start: float, end: float) -> list[float]:
        """Accepted PUTs strictly between start and end that did not list user_id: each is a
        moment the reviewer was lost while their grant was in force."""
        return [at for at, ids in self.puts.get(key, []) if start < at < end and user_id not in ids]

    def present_after(self, key, user_id: int, moment: float) -> list[float]:
        """Accepted PUTs after `moment` that still listed user_id (put back after revocation)."""
        return [at for at, ids in self.puts.get(key, []) if at > moment and user_id in ids]

    def without(self, key, user_id: int) -> list[float]:
        """Accepted PUTs that dropped user_id (for a baseline reviewer: never allowed)."""
        return [at for at, ids in self.puts.get(key, []) if user_id not in ids]


def percentile(values, fraction: float) -> float | None:
    """Nearest-rank percentile (fraction 0..1); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summary(values) -> dict:
    values = list(values)
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }
