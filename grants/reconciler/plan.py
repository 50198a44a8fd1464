"""What should be on GitHub now: a target's grants sorted into apply, keep, end and withdrawn."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from grants.models import Grant
from requests_app.models import AccessRequest

State = Grant.State

# A grant ending within this margin is treated as ended: a timer that fires a few
# milliseconds early must not leave access in place until the next sweep.
EXPIRY_TOLERANCE = timedelta(milliseconds=500)


def is_wanted(grant: Grant, now: datetime) -> bool:
    if grant.revoke_requested_at is not None:
        return False
    if grant.state == State.APPLIED:
        return grant.expires_at > now + EXPIRY_TOLERANCE
    if grant.state == State.PENDING:
        request = grant.access_request
        return request.status == AccessRequest.Status.APPROVED and (
            request.starts_at is None or request.starts_at <= now
        )
    return False


def is_withdrawn(grant: Grant) -> bool:
    """A pending grant whose request was closed (revoked early) before it was applied."""
    return grant.state == State.PENDING and (
        grant.revoke_requested_at is not None
        or grant.access_request.status != AccessRequest.Status.APPROVED
    )


@dataclass
class Plan:
    """The grants of one target (or one secret) sorted by what the pass must do."""

    to_apply: list[Grant] = field(default_factory=list)  # pending, should be active now
    keep: list[Grant] = field(default_factory=list)  # applied, still active
    ending: list[Grant] = field(default_factory=list)  # applied, should be gone now
    withdrawn: list[Grant] = field(default_factory=list)  # pending, request closed
    # Pending and due, but held back while GitHub's budget is critical (PassContext):
    # left pending, untouched, for the first pass after the reset.
    deferred: list[Grant] = field(default_factory=list)

    @property
    def wanted(self) -> list[Grant]:
        return self.keep + self.to_apply

    @property
    def has_work(self) -> bool:
        return bool(self.to_apply or self.ending or self.withdrawn)

    @property
    def all(self) -> list[Grant]:
        return self.keep + self.to_apply + self.ending + self.withdrawn


def plan_grants(grants, now: datetime, *, defer_grants: bool = False) -> Plan:
    plan = Plan()
    for grant in sorted(grants, key=priority):
        if grant.state == State.APPLIED:
            (plan.keep if is_wanted(grant, now) else plan.ending).append(grant)
        elif is_withdrawn(grant):
            plan.withdrawn.append(grant)
        elif is_wanted(grant, now):
            (plan.deferred if defer_grants else plan.to_apply).append(grant)
    return plan


def priority(grant: Grant):
    # Applied grants first (they hold their place), then by when they were approved.
    decided = grant.access_request.decided_at or grant.created_at
    return (grant.state != State.APPLIED, decided, grant.pk)
