"""GitHub token secrets: an environment secret whose value is a token minted for a grant,
replaced before GitHub's one-hour expiry while grants want it (docs/reconciler.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Exists, Min, OuterRef

from grants.models import EnvironmentSecret, Grant, MintedToken
from integrations.github import PermanentGitHubError
from integrations.github.permissions import format_permissions

from .context import PassContext
from .github_errors import RECORDED
from .plan import Plan
from .tokens import IMPLIED_PERMISSIONS, grant_token_permissions, token_end, token_mint

Purpose = MintedToken.Purpose

# A token secret's token is replaced this long before GitHub's expiry (one hour after the
# mint, so about every 50 minutes). The margin covers a refresh that runs late: the sweep
# (every AIRLOCK_SWEEP_SECONDS) may find it only on its next run, and the mint and the
# secret's write have their own retries; a job started just before the refresh keeps the
# old token until then, and at most this long less than GitHub would have given it.
REFRESH_MARGIN = timedelta(minutes=10)


def secret_token_current(row: EnvironmentSecret) -> MintedToken | None:
    """The token GitHub confirmed the secret holds (written_at is cleared while a write is
    under way, written_digest names the token), if it has not been erased."""
    if not row.airlock_wrote or row.written_at is None or not row.written_digest:
        return None
    return MintedToken.objects.filter(
        digest=row.written_digest, purpose=Purpose.SECRET, erased_at__isnull=True
    ).first()


class NoPermissionLeft(PermanentGitHubError):
    """The definition was edited so that none of the permissions its grant was approved
    for is left: there is nothing to mint (GitHub would give an empty ask everything the
    App holds). Not GitHub's answer, so its message is shown as it is."""


def secret_token_fresh(ctx: PassContext, row: EnvironmentSecret, plan: Plan) -> bool:
    """Whether the secret's token may stay: minted for a grant that still wants it, with
    that grant's permissions (tokens.grant_token_permissions: what was approved, narrowed
    by a later edit of the definition), and either far from its expiry or outliving every
    grant that wants the secret (their end revokes it). Otherwise a new one is written."""
    current = secret_token_current(row)
    if current is None or not _fits(ctx, current, plan):
        return False
    if current.expires_at - REFRESH_MARGIN > ctx.now:
        return True
    return current.expires_at >= max(_ends_at(ctx, g) for g in plan.wanted)


def permissions_match(held: dict, wanted: dict) -> bool:
    extra = set(held) - set(wanted) - IMPLIED_PERMISSIONS
    return not extra and all(held.get(name) == level for name, level in wanted.items())


def secret_token_to_write(ctx: PassContext, row: EnvironmentSecret, plan: Plan) -> MintedToken:
    """The token to write as the secret: the one recorded for a write GitHub never
    confirmed (it refused it, or the worker died before its answer) while it fits and is
    far from its expiry, so that however many passes GitHub refuses the write, one token
    waits for it; otherwise a new one, minted for the wanted grant that lasts longest."""
    if row.airlock_wrote and row.written_at is None and row.written_digest:
        unconfirmed = MintedToken.objects.filter(
            digest=row.written_digest, purpose=Purpose.SECRET, erased_at__isnull=True
        ).first()
        if (
            unconfirmed is not None
            and _fits(ctx, unconfirmed, plan)
            and unconfirmed.expires_at - REFRESH_MARGIN > ctx.now
        ):
            return unconfirmed
    owner = max(plan.wanted, key=lambda g: (_ends_at(ctx, g), g.pk))
    permissions = grant_token_permissions(owner)
    if not permissions:
        raise NoPermissionLeft(
            f"The secret {owner.secret.name}'s permissions "
            f"({format_permissions(owner.secret.permissions or {}) or 'none'}) no longer "
            "include any of those its grant was approved for "
            f"({format_permissions(owner.access_request.token_permissions or {}) or 'none'}): "
            "Airlock mints no token for it. Restore them, or file a new request.",
            operation="installation token mint",
        )
    return token_mint(ctx, owner, permissions=permissions, purpose=Purpose.SECRET)


def secret_tokens_replaced_end(ctx: PassContext, row: EnvironmentSecret, plan: Plan) -> None:
    """Revoke the tokens the secret held before its current one (and any minted for a write
    GitHub never confirmed). A revocation GitHub does not answer now is tried again by the
    next pass; the sweep asks for one while such a token is left (secret_token_refreshes)."""
    replaced = MintedToken.objects.filter(
        grant__in=[g.pk for g in plan.wanted], purpose=Purpose.SECRET, erased_at__isnull=True
    ).exclude(digest=row.written_digest)
    for record in replaced:
        try:
            token_end(ctx, record)
        except RECORDED as exc:
            ctx.result.errors.append(str(exc))
            return


def secret_token_refreshes(*, until: datetime) -> dict[int, datetime]:
    """For the sweep: {target id: when its reconcile must replace a token secret's token},
    for the refreshes due by `until` (those already due too), counting only a token that
    some grant of its secret outlives: otherwise the grant's end revokes it anyway."""
    outlived = Grant.objects.filter(
        state=Grant.State.APPLIED,
        revoke_requested_at__isnull=True,
        target_id=OuterRef("grant__target_id"),
        secret__name=OuterRef("grant__secret__name"),
        expires_at__gt=OuterRef("expires_at"),
    )
    due = (
        MintedToken.objects.filter(
            purpose=Purpose.SECRET,
            erased_at__isnull=True,
            expires_at__lte=until + REFRESH_MARGIN,
        )
        .filter(Exists(outlived))
        .values("grant__target_id")
        .annotate(first=Min("expires_at"))
    )
    return {row["grant__target_id"]: row["first"] - REFRESH_MARGIN for row in due}


def _fits(ctx: PassContext, record: MintedToken, plan: Plan) -> bool:
    """Minted for a grant that wants the secret, with that grant's permissions, in the
    target's mode (a simulated token is never written to GitHub, nor a real one kept as
    if simulated)."""
    grant = next((g for g in plan.wanted if g.pk == record.grant_id), None)
    return (
        grant is not None
        and record.dry_run == ctx.target.dry_run
        and permissions_match(record.permissions, grant_token_permissions(grant))
    )


def _ends_at(ctx: PassContext, grant: Grant) -> datetime:
    # A grant not applied yet lasts its duration from now (transitions.grant_expiry).
    return grant.expires_at or ctx.now + grant.access_request.duration
