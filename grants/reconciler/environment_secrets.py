"""The pass for one environment secret: present while a grant wants it, deleted after."""

from __future__ import annotations

import hashlib

from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.minted import minted_token_value
from grants.models import EnvironmentSecret, Grant, Target
from requests_app.models import SecretDefinition

from .context import PassContext
from .expiry import schedule_expiries
from .github_errors import RECORDED, record_github_error
from .token_secrets import (
    NoPermissionLeft,
    secret_token_fresh,
    secret_token_to_write,
    secret_tokens_replaced_end,
)
from .tokens import tokens_carry_over, tokens_end, tokens_revoke_now
from .transitions import fail_all, lock_grants, mark_applied, mark_revoked


def reconcile_environment_secret(ctx: PassContext, name: str, grants: list[Grant]) -> None:
    """Present while any grant for it is active; deleted when the last one ends.

    Airlock only deletes a secret it wrote. If the environment already had a secret of that
    name before Airlock first wrote it, that secret belongs to someone else: Airlock does not
    overwrite it (that would change what their workflows see) and so would never delete it
    either; the grant fails with a message that says so.

    A GitHub token secret's value is a token minted for one of its grants
    (token_secrets): written when none is there, replaced before it expires, and each
    grant's tokens revoked on GitHub before the grant is recorded as revoked.
    """
    target, gh, result = ctx.target, ctx.gh, ctx.result
    plan = ctx.plan(grants)
    row, _ = EnvironmentSecret.objects.get_or_create(target=target, name=name)
    wanted = bool(plan.wanted)
    minted = wanted and plan.wanted[0].secret.kind == SecretDefinition.Kind.GITHUB_TOKEN
    changed = None  # "written" | "deleted" | None
    before_present = None
    token = None  # the token written, for a GitHub token secret
    # An extension continuing an ending grant keeps its tokens, so the secret's token may
    # stay (tokens_carry_over).
    carried = tokens_carry_over(ctx, plan.ending)
    try:
        if minted:
            must_write = not secret_token_fresh(ctx, row, plan)
        elif wanted:
            digest = _secret_digest(plan.wanted[0])
            must_write = bool(plan.to_apply) and (
                not row.airlock_wrote or row.written_digest != digest
            )
        if wanted:
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
                # Intent first: from here on, this secret is Airlock's to delete. A token
                # is recorded before it is written (it is revoked at its grant's end
                # whatever happens next), and named as the secret's value unconfirmed
                # (written_at cleared) until GitHub has it.
                intent = {"airlock_wrote": True}
                if minted:
                    token = secret_token_to_write(ctx, row, plan)
                    value, digest = minted_token_value(token), token.digest
                    intent.update(written_digest=digest, written_at=None)
                else:
                    value = plan.wanted[0].secret.get_value()
                EnvironmentSecret.objects.filter(pk=row.pk).update(**intent)
                gh.put_environment_secret(target.repository, target.environment, name, value)
                result.github_reads += 1  # the public key
                result.github_writes += 1
                changed = "written"
                row.written_at, row.written_digest = timezone.now(), digest
                EnvironmentSecret.objects.filter(pk=row.pk).update(
                    written_at=row.written_at, written_digest=digest
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
        if minted:
            # A token that could not be replaced: the grants keep the one there, shown.
            Grant.objects.filter(pk__in=[g.pk for g in plan.keep]).update(last_error=str(exc))
        # The ending grants' tokens are revoked all the same (a token needs only itself):
        # the grants stay applied, overdue, until the secret is gone too.
        tokens_revoke_now(ctx, plan.ending + plan.withdrawn)
        shown = f"GitHub refused: {exc.message}"
        if isinstance(exc, NoPermissionLeft):
            shown = exc.message
        # A 404: the environment (and its secrets) is gone, or Airlock lost access; as for
        # reviewers, only an admin can tell, so the revocation stays overdue and visible.
        record_github_error(
            ctx,
            plan,
            exc,
            refused=shown,
            missing=(
                f"GitHub has no {ctx.where} (404 {exc.message}); "
                "Airlock does not create environments."
            ),
            on_target=False,
        )
        return

    if minted:
        secret_tokens_replaced_end(ctx, row, plan)
    # Every token minted for an ending grant is revoked first (none for a stored value).
    ended = tokens_end(ctx, plan.ending + plan.withdrawn, carried=carried)
    at = timezone.now()
    with transaction.atomic():
        lock_grants(plan.to_apply + [grant for grant, _ in ended])
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
                    **({"token": token.digest, "expires_at": token.expires_at} if token else {}),
                },
            )
        if token is not None and changed:
            # A refresh that failed before is behind them now.
            Grant.objects.filter(pk__in=[g.pk for g in plan.keep]).update(last_error="")
        for grant in plan.to_apply:
            if mark_applied(
                grant, at=at, detail={"github": f"secret {changed or 'already present'}"}
            ):
                result.applied.append(grant.pk)
        for grant, tokens in ended:
            detail = {"dry_run": target.dry_run}
            if any(tokens.values()):
                detail["tokens"] = tokens
            if mark_revoked(grant, at=at, detail=detail):
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
