"""The organization secret pass: the secret's selected repositories follow the grants."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.models import Grant, OrgSecretTarget, Target
from integrations.github import (
    GitHubError,
    NotFoundError,
    PermanentGitHubError,
    TransientGitHubError,
)

from .context import PassContext, ReconcileResult
from .expiry import schedule_expiries
from .github_errors import RECORDED, record_github_error
from .runner import (
    adopt_extensions,
    dry_run_id,
    reconcile_under_lease,
    save_dry_run_state,
)
from .transitions import (
    fail_all,
    lock_grants,
    mark_applied,
    mark_failed,
    mark_revoked,
    record_failed_attempt,
    revoke_withdrawn,
)


def reconcile_org_secret(
    org_secret_id: int, *, check: bool = False, requested_at: datetime | None = None
) -> ReconcileResult:
    """Reconcile one organization secret's repository list now (busy and skipped as for an
    environment)."""

    def org_secret_pass(ctx: PassContext) -> None:
        _org_secret_pass(ctx)
        save_dry_run_state(ctx)

    return reconcile_under_lease(
        OrgSecretTarget, org_secret_id, org_secret_pass, check=check, requested_at=requested_at
    )


def _repository_id(ctx: PassContext, grant: Grant) -> int:
    """The grant's repository id, cached on its environment target."""
    target = grant.target
    if target.repository_id is None:
        target.refresh_from_db(fields=["repository_id"])
    if target.repository_id is None:
        if target.dry_run:
            repository_id = dry_run_id(target.repository)
        else:
            repository_id = ctx.gh.repository_id(target.repository)
            ctx.result.github_reads += 1
        Target.objects.filter(pk=target.pk).update(repository_id=repository_id)
        target.repository_id = repository_id
    return target.repository_id


def _org_secret_pass(ctx: PassContext) -> None:
    started = ctx.now  # becomes last_reconciled_at: every change before it is seen
    target, gh, result = ctx.target, ctx.gh, ctx.result
    if target.dry_run == settings.AIRLOCK_DRY_RUN:
        adopt_extensions(org_secret=target)
    ctx = replace(ctx, now=timezone.now())
    now = ctx.now
    grants = list(
        Grant.objects.filter(org_secret=target, state__in=Grant.OPEN_STATES).select_related(
            "access_request", "secret", "target"
        )
    )
    plan = ctx.plan(grants)
    secret = f"organization secret {target.org}/{target.name}"

    for grant in list(plan.to_apply):
        try:
            _repository_id(ctx, grant)
        except NotFoundError as exc:
            fail_all(
                [grant],
                f"GitHub has no repository {grant.target.repository} ({exc.message}).",
                result,
            )
            plan.to_apply.remove(grant)
        except TransientGitHubError as exc:
            result.retrying += record_failed_attempt([grant], [], exc, now)
            plan.to_apply.remove(grant)
    airlock = list(target.airlock_repository_ids)
    kept_ids = {g.target.repository_id for g in plan.keep}
    if not (plan.to_apply or plan.ending or ctx.check or set(airlock) - kept_ids):
        revoke_withdrawn(plan.withdrawn, at=now, result=result)
        return

    try:
        if target.baseline_recorded_at is None:
            visibility = gh.org_secret_visibility(target.org, target.name)
            result.github_reads += 1
            if visibility != "selected":
                fail_all(
                    plan.to_apply,
                    f"The {secret} is visible to '{visibility}' repositories; Airlock can "
                    "only grant organization secrets with selected repositories.",
                    result,
                )
                return
        current = gh.org_secret_repository_ids(target.org, target.name)
        result.github_reads += 1
    except RECORDED as exc:
        record_github_error(
            ctx,
            plan,
            exc,
            refused=f"GitHub refused: {exc.message}",
            missing=f"GitHub has no {secret} ({exc.message}).",
        )
        return

    if target.baseline_recorded_at is None:
        with transaction.atomic():
            updated = OrgSecretTarget.objects.filter(
                pk=target.pk, baseline_recorded_at__isnull=True
            ).update(baseline_repository_ids=current, baseline_recorded_at=now)
            if updated == 1:
                audit.log_event(
                    action=AuditAction.TARGET_BASELINE_RECORDED,
                    target=target,
                    detail={"repository_ids": current, "dry_run": target.dry_run},
                )
    drift = None
    if target.observed is not None and sorted(target.observed) != sorted(current):
        drift = {"expected": target.observed, "found": current}

    wanted_ids = {g.target.repository_id for g in plan.wanted}
    to_add = [i for i in sorted(wanted_ids) if i not in current]
    to_remove = [i for i in current if i in airlock and i not in wanted_ids]
    # Intent first, as for reviewers.
    intent = airlock + [i for i in to_add if i not in airlock]
    OrgSecretTarget.objects.filter(pk=target.pk).update(airlock_repository_ids=intent)

    after = list(current)
    refused: dict[int, str] = {}
    error: GitHubError | None = None
    for repository_id in to_add:
        try:
            result.github_writes += 1
            gh.add_org_secret_repository(target.org, target.name, repository_id)
            after.append(repository_id)
        except PermanentGitHubError as exc:
            refused[repository_id] = f"GitHub refused to add the repository: {exc.message}"
        except TransientGitHubError as exc:
            error = exc
            break
    if error is None:
        for repository_id in to_remove:
            try:
                result.github_writes += 1
                gh.remove_org_secret_repository(target.org, target.name, repository_id)
                after.remove(repository_id)
            except GitHubError as exc:
                error = exc
                break

    at = timezone.now()
    with transaction.atomic():
        lock_grants(plan.all)
        airlock_after = [i for i in intent if i in after]
        observed = None if target.dry_run else after
        OrgSecretTarget.objects.filter(pk=target.pk).update(
            airlock_repository_ids=airlock_after,
            observed=observed,
            last_error=str(error) if error else "",
            last_reconciled_at=started,
            **({"last_checked_at": at} if ctx.check else {}),
        )
        if drift is not None:
            result.drift = True
            audit.log_event(action=AuditAction.TARGET_DRIFT, target=target, detail=drift)
        if after != current:
            audit.log_event(
                action=AuditAction.GITHUB_ORG_SECRET_UPDATED,
                target=target,
                detail={
                    "before": current,
                    "after": after,
                    "baseline": target.baseline_repository_ids or current,
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        applied, waiting = [], []
        for grant in plan.to_apply:
            repository_id = grant.target.repository_id
            if repository_id in refused:
                if mark_failed(grant, message=refused[repository_id]):
                    result.failed.append(grant.pk)
            elif repository_id in after:
                if mark_applied(grant, at=at, detail={"dry_run": target.dry_run}):
                    result.applied.append(grant.pk)
                    applied.append(grant)
            else:
                waiting.append(grant)
        ending_left = []
        not_removed = set(to_remove) & set(after)  # a removal an error stopped
        for grant in plan.ending + plan.withdrawn:
            if grant in plan.ending and grant.target.repository_id in not_removed:
                ending_left.append(grant)
                continue
            if mark_revoked(grant, at=at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        schedule_expiries(OrgSecretTarget, target.pk, applied)
    if error is not None:
        result.retrying += record_failed_attempt(waiting, ending_left, error, at)
        result.errors.append(str(error))

