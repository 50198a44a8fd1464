"""Reconciling one environment: its required reviewers, its token grants, then each of its
secrets, in one pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from grants.models import EnvironmentSecret, Grant, Target

from .context import PassContext, ReconcileResult
from .environment_reviewers import reconcile_reviewers
from .environment_secrets import reconcile_environment_secret
from .runner import adopt_extensions, reconcile_under_lease, save_dry_run_state
from .tokens import reconcile_token_grants, tokens_left_end

Kind = Grant.Kind


def reconcile_environment(
    target_id: int, *, check: bool = False, requested_at: datetime | None = None
) -> ReconcileResult:
    """Reconcile one environment now. Returns busy=True when another worker holds it; that
    worker then passes again, because this call raised the target's generation first.
    With requested_at (when the reconcile was asked for), skipped=True when a pass that
    started since then has completed: it saw everything this one would."""
    return reconcile_under_lease(
        Target, target_id, environment_pass, check=check, requested_at=requested_at
    )


def environment_pass(ctx: PassContext) -> None:
    started = ctx.now  # becomes last_reconciled_at: every change before it is seen
    target = ctx.target
    if target.dry_run == settings.AIRLOCK_DRY_RUN:
        adopt_extensions(target=target)
    ctx = replace(ctx, now=timezone.now())
    grants = list(
        Grant.objects.filter(
            target=target,
            kind__in=[Kind.REVIEWER, Kind.TOKEN, Kind.ENVIRONMENT_SECRET],
            state__in=Grant.OPEN_STATES,
        ).select_related("access_request", "secret", "access_request__requester")
    )
    for grant in grants:
        grant.target = target  # already loaded: the audit log names it for every grant
    reconcile_reviewers(ctx, [g for g in grants if g.kind == Kind.REVIEWER])
    reconcile_token_grants(ctx, [g for g in grants if g.kind == Kind.TOKEN])
    secret_grants = [g for g in grants if g.kind == Kind.ENVIRONMENT_SECRET]
    names = {g.secret.name for g in secret_grants}
    names |= set(
        EnvironmentSecret.objects.filter(target=target, airlock_wrote=True).values_list(
            "name", flat=True
        )
    )
    for name in sorted(names):
        reconcile_environment_secret(
            ctx, name, [g for g in secret_grants if g.secret.name == name]
        )
    tokens_left_end(ctx)
    save_dry_run_state(ctx)
    Target.objects.filter(pk=target.pk).update(
        last_reconciled_at=started,
        **({"last_checked_at": timezone.now()} if ctx.check else {}),
    )
