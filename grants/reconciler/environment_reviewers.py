"""The environment pass for required reviewers: one read, at most one write, per environment."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.models import Grant, Target
from integrations.github import (
    EnvironmentProtection,
    GitHubError,
    NotFoundError,
    PermanentGitHubError,
    Reviewer,
    TransientGitHubError,
)

from .context import PassContext
from .expiry import schedule_expiries
from .github_errors import RECORDED, record_github_error
from .plan import Plan
from .runner import dry_run_id
from .transitions import (
    fail_all,
    lock_grants,
    mark_applied,
    mark_failed,
    mark_revoked,
    record_failed_attempt,
    revoke_withdrawn,
)


def reconcile_reviewers(ctx: PassContext, grants: list[Grant]) -> None:
    target, gh, result = ctx.target, ctx.gh, ctx.result
    plan = ctx.plan(grants)
    airlock = [Reviewer.from_json(r) for r in target.airlock_reviewers]
    airlock_keys = {r.key for r in airlock}
    kept_keys = {("User", g.github_user_id) for g in plan.keep}
    needs_github = plan.to_apply or plan.ending or ctx.check or (airlock_keys - kept_keys)
    if not needs_github:
        revoke_withdrawn(plan.withdrawn, at=ctx.now, result=result)
        return

    # Resolve logins to ids first: a login GitHub does not know fails only its own grant.
    for grant in list(plan.to_apply):
        try:
            _resolve_user_id(ctx, grant)
        except NotFoundError as exc:
            with transaction.atomic():
                lock_grants([grant])
                mark_failed(
                    grant,
                    message=f"GitHub has no user named {grant.login} ({exc.message}).",
                )
            result.failed.append(grant.pk)
            plan.to_apply.remove(grant)
        except TransientGitHubError as exc:
            result.retrying += record_failed_attempt([grant], [], exc, ctx.now)
            result.errors.append(str(exc))
            plan.to_apply.remove(grant)

    # Within one lease, a later pass starts from what the previous one wrote: nobody else
    # in Airlock writes this environment meanwhile, so it need not be read again.
    current = ctx.cache.get("environment")
    fresh = current is None
    try:
        if fresh:
            current = gh.get_environment(target.repository, target.environment)
            result.github_reads += 1
    except NotFoundError as exc:
        _environment_missing(ctx, plan, exc)
        return
    except RECORDED as exc:
        # 401/403: Airlock's credentials cannot read it. Revocations stay overdue, shown.
        record_github_error(
            ctx, plan, exc, refused=f"GitHub refused to read {ctx.where}: {exc.message}"
        )
        return

    if target.baseline_recorded_at is None:
        _record_baseline(target, current)
    drift = None
    if fresh and target.observed is not None and target.observed != current.as_json():
        drift = {"expected": target.observed, "found": current.as_json()}

    # The new list: GitHub's order kept, Airlock's users no longer wanted taken out, the
    # wanted users not there yet appended. GitHub enforces its six-reviewer limit (and read
    # access) itself, and its refusal is what the grant shows (see _put_reviewers).
    wanted_ids = {g.github_user_id for g in plan.wanted}
    new = [r for r in current.reviewers if not (r.key in airlock_keys and r.id not in wanted_ids)]
    removed = [r for r in current.reviewers if r not in new]
    added: list[Reviewer] = []
    present_keys = {r.key for r in new}
    for grant in plan.wanted:
        key = ("User", grant.github_user_id)
        if key not in present_keys:
            added.append(Reviewer("User", grant.github_user_id, grant.login))
            present_keys.add(key)

    rejected: dict[int, str] = {}
    written = current
    if added or removed:
        # Intent first: the users about to be added are Airlock's, even if we crash next.
        intent = airlock + [r for r in added if r.key not in airlock_keys]
        _set_airlock_reviewers(target, intent)
        try:
            written, accepted, rejected = _put_reviewers(ctx, current, new, added)
        except RECORDED as exc:
            # A refusal of even the removals alone: revocations stay overdue and visible.
            record_github_error(ctx, plan, exc, refused=f"GitHub refused: {exc.message}")
            return
        added = accepted
    ctx.cache["environment"] = written

    written_keys = {r.key for r in written.reviewers}
    applied_at = timezone.now()
    with transaction.atomic():
        lock_grants(plan.all)
        target.airlock_reviewers = [
            r.as_json()
            for r in airlock + [a for a in added if a.key not in airlock_keys]
            if r.key in written_keys
        ]
        target.observed = None if target.dry_run else written.as_json()
        Target.objects.filter(pk=target.pk).update(
            airlock_reviewers=target.airlock_reviewers, observed=target.observed, last_error=""
        )
        if drift is not None:
            result.drift = True
            audit.log_event(
                action=AuditAction.TARGET_DRIFT,
                target=target,
                detail={**drift, "repaired": {"added": _names(added), "removed": _names(removed)}},
            )
        if written is not current:
            audit.log_event(
                action=AuditAction.GITHUB_ENVIRONMENT_UPDATED,
                target=target,
                detail={
                    "before": current.as_json(),
                    "after": written.as_json(),
                    "added": _names(added),
                    "removed": _names(removed),
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        for grant in plan.to_apply:
            if grant.github_user_id in rejected:
                if mark_failed(grant, message=rejected[grant.github_user_id]):
                    result.failed.append(grant.pk)
            elif ("User", grant.github_user_id) in written_keys:
                how = "added" if any(a.id == grant.github_user_id for a in added) else "already"
                if mark_applied(
                    grant,
                    at=applied_at,
                    detail={"github": f"reviewer {how}", "dry_run": target.dry_run},
                ):
                    result.applied.append(grant.pk)
        for grant in plan.keep:
            if grant.github_user_id in rejected:
                # Re-adding a reviewer someone removed by hand was refused (no room, say).
                Grant.objects.filter(pk=grant.pk).update(last_error=rejected[grant.github_user_id])
                result.errors.append(rejected[grant.github_user_id])
        for grant in plan.ending:
            if ("User", grant.github_user_id) in written_keys and grant.github_user_id in {
                r.id for r in removed
            }:
                continue  # the PUT did not take them out after all; next pass retries
            if mark_revoked(grant, at=applied_at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        for grant in plan.withdrawn:
            if mark_revoked(grant, at=applied_at, detail={"github": "never applied"}):
                result.revoked.append(grant.pk)
        schedule_expiries(Target, target.pk, [g for g in plan.to_apply if g.expires_at])


def _resolve_user_id(ctx: PassContext, grant: Grant) -> None:
    """Fill in github_user_id, once per grant: the id the requester signed in with GitHub
    with, or else the one GitHub answered for the login before (ids never change, so a
    login is looked up once, not once per grant), or else GET /users/{login}."""
    if grant.github_user_id is not None:
        return
    if ctx.target.dry_run:
        user_id = dry_run_id(grant.login)
    else:
        user_id = _social_account_id(grant) or ctx.gh.known_user_id(grant.login)
        if user_id is None:
            user_id = ctx.gh.user_id(grant.login)
            ctx.result.github_reads += 1
    Grant.objects.filter(pk=grant.pk).update(github_user_id=user_id)
    grant.github_user_id = user_id


def _social_account_id(grant: Grant) -> int | None:
    """The GitHub id the requester signed in with, when they did: it names the person even
    if the login was renamed or taken over since."""
    from allauth.socialaccount.models import SocialAccount

    uid = (
        SocialAccount.objects.filter(user_id=grant.access_request.requester_id, provider="github")
        .values_list("uid", flat=True)
        .first()
    )
    return int(uid) if uid and uid.isdigit() else None


def _put_reviewers(ctx: PassContext, current: EnvironmentProtection, base, added):
    """PUT base + added. If GitHub refuses (422) and more than one user was being added,
    add them one by one to find who it refuses; the others still get access. Returns the
    environment as written, the users added and {user id: GitHub's reason} for the refused.
    Only on this error path is there more than one write."""
    target, gh, result = ctx.target, ctx.gh, ctx.result
    try:
        result.github_writes += 1
        written = gh.put_environment(
            target.repository, target.environment, current.with_reviewers(base + added)
        )
        return written, added, {}
    except PermanentGitHubError as exc:
        if not added:
            raise
        if len(added) == 1:
            rejected = {added[0].id: _refusal(exc, added[0])}
            accepted: list[Reviewer] = []
        else:
            rejected, accepted = {}, []
            for reviewer in added:
                try:
                    result.github_writes += 1
                    gh.put_environment(
                        target.repository,
                        target.environment,
                        current.with_reviewers(base + accepted + [reviewer]),
                    )
                    accepted.append(reviewer)
                except PermanentGitHubError as one:
                    rejected[reviewer.id] = _refusal(one, reviewer)
        if accepted:
            written = current.with_reviewers(base + accepted)
        elif [r.key for r in base] != [r.key for r in current.reviewers]:
            result.github_writes += 1
            written = gh.put_environment(
                target.repository, target.environment, current.with_reviewers(base)
            )
        else:
            written = current
        return written, accepted, rejected


def _refusal(exc: GitHubError, reviewer: Reviewer) -> str:
    return f"GitHub refused {reviewer.name} as a required reviewer: {exc.message}"


def _environment_missing(ctx: PassContext, plan: Plan, exc: NotFoundError) -> None:
    """GET environment answered 404. Pending grants fail with GitHub's answer. For grants
    to revoke, a 404 can also mean Airlock lost access to the repository: only when the
    repository itself is still readable is the environment really gone (and its reviewers
    with it); otherwise the revocation stays overdue for an admin to look at."""
    target, result, now = ctx.target, ctx.result, ctx.now
    fail_all(
        plan.to_apply,
        f"GitHub has no {ctx.where} (404 {exc.message}); Airlock does not create environments.",
        result,
    )
    if not (plan.ending or plan.keep or plan.withdrawn):
        ctx.note_target_error(str(exc), in_result=False)
        return
    gone = target.dry_run
    if not gone:
        try:
            ctx.gh.repository_id(target.repository)
            result.github_reads += 1
            gone = True
        except GitHubError:
            gone = False
    with transaction.atomic():
        lock_grants(plan.keep + plan.ending + plan.withdrawn)
        for grant in plan.withdrawn:
            if mark_revoked(grant, at=now, detail={"github": "never applied"}):
                result.revoked.append(grant.pk)
        if gone:
            audit.log_event(
                action=AuditAction.TARGET_ENVIRONMENT_DELETED,
                target=target,
                detail={"before": target.observed, "message": exc.message},
            )
            Target.objects.filter(pk=target.pk).update(airlock_reviewers=[], observed=None)
            for grant in plan.ending + plan.keep:
                if mark_revoked(grant, at=now, detail={"github": "environment deleted"}):
                    result.revoked.append(grant.pk)
    if not gone:
        result.retrying += record_failed_attempt([], plan.ending, exc, now)
    ctx.note_target_error(str(exc))


def _record_baseline(target: Target, current: EnvironmentProtection) -> None:
    now = timezone.now()
    with transaction.atomic():
        updated = Target.objects.filter(pk=target.pk, baseline_recorded_at__isnull=True).update(
            baseline_reviewers=[r.as_json() for r in current.reviewers],
            baseline_recorded_at=now,
        )
        if updated == 1:
            audit.log_event(
                action=AuditAction.TARGET_BASELINE_RECORDED,
                target=target,
                detail={"environment": current.as_json(), "dry_run": target.dry_run},
            )
    target.baseline_reviewers = [r.as_json() for r in current.reviewers]
    target.baseline_recorded_at = now


def _set_airlock_reviewers(target: Target, reviewers: list[Reviewer]) -> None:
    target.airlock_reviewers = [r.as_json() for r in reviewers]
    Target.objects.filter(pk=target.pk).update(airlock_reviewers=target.airlock_reviewers)


def _names(reviewers) -> list[str]:
    return [r.name for r in reviewers]
