"""Running passes over one target under its lease, with the GitHub client (or dry run) for it."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core import metrics
from grants.models import Target
from grants.scheduling import schedule_reconcile
from integrations.github import DryRunGitHub, GitHubClient, LeaseLost, Work, github_budget
from requests_app.models import AccessRequest

from .context import PassContext, ReconcileResult
from .lease import Lease, request_reconcile

logger = logging.getLogger(__name__)

# Passes one lease holder makes when changes keep arriving before it hands over.
MAX_PASSES = 5


def client_for(target, lease: Lease):
    if target.dry_run:
        return DryRunGitHub(dict(target.dry_run_state), heartbeat=lease.renew)
    return GitHubClient(heartbeat=lease.renew)


def dry_run_id(name: str) -> int:
    # Dry-run never asks GitHub; a stable stand-in id keeps the simulated lists keyed alike.
    return -zlib.crc32(name.lower().encode())


def save_dry_run_state(ctx: PassContext) -> None:
    if ctx.target.dry_run:
        type(ctx.target).objects.filter(pk=ctx.target.pk).update(dry_run_state=ctx.gh.simulated)
        ctx.target.dry_run_state = ctx.gh.simulated


def reconcile_under_lease(
    model,
    pk: int,
    one_pass: Callable[[PassContext], None],
    *,
    check: bool,
    requested_at: datetime | None = None,
) -> ReconcileResult:
    """Take the target's lease and make passes (at most MAX_PASSES) until nobody asked
    for another reconcile meanwhile; only the first pass is a drift check.

    A message asking for a reconcile that a later pass has already covered is dropped
    (last_reconciled_at is when the last completed pass started). Without that, every
    sweep during a GitHub outage queues another pass per target while each pass crawls
    through timeouts, and once GitHub is back the worker spends its time on that backlog
    while new expiries wait behind it. A drift check always runs."""
    target = model.objects.get(pk=pk)
    result = ReconcileResult(target=str(target))
    covered = target.last_reconciled_at
    if requested_at is not None and not check and covered and covered >= requested_at:
        result.skipped = True
        return result
    check, defer_grants = _within_budget(target, result, check=check)
    request_reconcile(model, pk)
    lease = Lease(model, pk)
    if not lease.acquire():
        result.busy = True
        return result
    target_kind = "environment" if model is Target else "organization_secret"
    # Within one lease, a later pass may start from what an earlier one wrote.
    cache: dict = {}
    try:
        for _ in range(MAX_PASSES):
            target = model.objects.get(pk=pk)
            ctx = PassContext(
                target=target,
                gh=client_for(target, lease),
                result=result,
                now=timezone.now(),
                check=check,
                cache=cache,
                defer_grants=defer_grants,
            )
            try:
                with metrics.reconcile_pass(target_kind=target_kind, errors=result.errors):
                    one_pass(ctx)
            finally:
                result.github_unchanged += ctx.gh.unchanged_reads
            check = False
            if lease.release_if_unchanged():
                break
        else:
            # Changes keep arriving: let go and queue another reconcile rather than hold on.
            transaction.on_commit(lambda: schedule_reconcile(model, pk))
    except LeaseLost as exc:
        result.errors.append(str(exc))
        logger.warning("%s", exc)
    finally:
        lease.release()
    return result


def _within_budget(target, result: ReconcileResult, *, check: bool) -> tuple[bool, bool]:
    """(check, defer_grants) as GitHub's budget allows now: a drift check runs as a plain
    pass while the budget is low, and pending grants wait while it is critical. Revocations
    never wait. A dry-run target spends nothing."""
    if target.dry_run:
        return check, False
    budget = github_budget()
    if budget is None:
        return check, False
    now = timezone.now()
    if check and not budget.allows(Work.DRIFT_CHECK, now):
        check = False
        result.deferred.append("drift check")
    return check, not budget.allows(Work.GRANT, now)


def adopt_extensions(**original_grant) -> None:
    """Give approved extensions of this target's grants their grant now, if the apply task
    has not yet: the pass that ends an original must see its extension, or it would remove
    the reviewer (or secret) only for the extension to add it back."""
    from grants.services import grant_create_for_request

    waiting = AccessRequest.objects.filter(
        status=AccessRequest.Status.APPROVED,
        grant__isnull=True,
        **{f"extends__grant__{name}": value for name, value in original_grant.items()},
    ).select_related("requester", "secret")
    for access_request in waiting:
        grant_create_for_request(access_request=access_request)
