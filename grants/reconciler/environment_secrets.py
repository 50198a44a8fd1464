"""The pass for one environment secret: present while a grant wants it, deleted after."""

from __future__ import annotations

import hashlib

from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.models import EnvironmentSecret, Grant, Target

from .context import PassContext
from .expiry import schedule_expiries
from .github_errors import RECORDED, record_github_error
from .plan import plan_grants
from .transitions import fail_all, lock_grants, mark_applied, mark_revoked


def reconcile_environment_secret(ctx: PassContext, name: str, grants: list[Grant]) -> None:
    """Present while any grant for it is active; deleted when the last one ends.

    Airlock only deletes a secret it wrote. If the environment already had a secret of that
    name before Airlock first wrote it, that secret belongs to someone else: Airlock does not
    overwrite it (that would change what their workflows see) and so would never delete it
    either; the grant fails with a message that says so.
    """
    target, gh, result = ctx.target, ctx.gh, ctx.result
    plan = plan_grants(grants, ctx.now)
    row, _ = EnvironmentSecret.objects.get_or_create(target=target, name=name)
    wanted = bool(plan.wanted)
    changed = None  # "written" | "deleted" | None
    before_present = None
    try:
        if wanted:
            digest = _secret_digest(plan.wanted[0])
            must_write = bool(plan.to_apply) and (
                not row.airlock_wrote or row.written_digest != digest
            )
            if not row.airlock_wrote:
                before_present = gh.environment_secret_exists(
                    target.repository, target.environment, name
                )
                result.github_reads += 1
                if row.baseline_present is None:
                    _record_secret_baseline(row, before_present)
                if before_present:
                    message = (
                        f"{ctx.where} already has a secret named {name} that Airlock did not "
                        "write; Airlock will neither overwrite nor delete it. Remove it on "
                        "GitHub (or choose another secret name) and retry the grant."
                    )
                    fail_all(plan.to_apply, message, result)
                    return
                must_write = True
            elif ctx.check and not plan.to_apply:
                before_present = gh.environment_secret_exists(
                    target.repository, target.environment, name
                )
                result.github_reads += 1
                if not before_present:
                    must_write = True
                    result.drift = True
                    with transaction.atomic():
                        audit.log_event(
                            action=AuditAction.TARGET_DRIFT,
                            target=target,
                            detail={"secret": name, "expected": "present", "found": "absent"},
                        )
            if must_write:
                # Intent first: from here on, this secret is Airlock's to delete.
                EnvironmentSecret.objects.filter(pk=row.pk).update(airlock_wrote=True)
                value = plan.wanted[0].secret.get_value()
                gh.put_environment_secret(target.repository, target.environment, name, value)
                result.github_reads += 1  # the public key
                result.github_writes += 1
                changed = "written"
                EnvironmentSecret.objects.filter(pk=row.pk).update(
                    written_at=timezone.now(), written_digest=digest
                )
        elif row.airlock_wrote:
            result.github_writes += 1
            before_present = gh.delete_environment_secret(
                target.repository, target.environment, name
            )
            EnvironmentSecret.objects.filter(pk=row.pk).update(
                airlock_wrote=False, written_digest=""
            )
            changed = "deleted"
    except RECORDED as exc:
        # A 404: the environment (and its secrets) is gone, or Airlock lost access; as for
        # reviewers, only an admin can tell, so the revocation stays overdue and visible.
        record_github_error(
            ctx,
            plan,
            exc,
            refused=f"GitHub refused: {exc.message}",
            missing=(
                f"GitHub has no {ctx.where} (404 {exc.message}); "
                "Airlock does not create environments."
            ),
            on_target=False,
        )
        return

    at = timezone.now()
    with transaction.atomic():
        lock_grants(plan.to_apply + plan.ending + plan.withdrawn)
        if changed:
            audit.log_event(
                action=AuditAction(f"github.environment_secret_{changed}"),
                target=target,
                detail={
                    "secret": name,
                    "before": {"present": before_present if changed == "written" else True},
                    "after": {"present": changed == "written"},
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        for grant in plan.to_apply:
            if mark_applied(
                grant, at=at, detail={"github": f"secret {changed or 'already present'}"}
            ):
                result.applied.append(grant.pk)
        for grant in plan.ending + plan.withdrawn:
            if mark_revoked(grant, at=at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        schedule_expiries(Target, target.pk, [g for g in plan.to_apply if g.expires_at])


def _secret_digest(grant: Grant) -> str:
    return hashlib.sha256(bytes(grant.secret.encrypted_value)).hexdigest()


def _record_secret_baseline(row: EnvironmentSecret, present: bool) -> None:
    with transaction.atomic():
        updated = EnvironmentSecret.objects.filter(
            pk=row.pk, baseline_present__isnull=True
        ).update(baseline_present=present, baseline_recorded_at=timezone.now())
        if updated == 1:
            audit.log_event(
                action=AuditAction.TARGET_BASELINE_RECORDED,
                target=row.target,
                detail={"secret": row.name, "present": present},
            )
    row.baseline_present = present
