"""GitHub token secrets: an environment secret whose value is a token minted for a grant,
replaced before GitHub's one-hour expiry while grants want it (docs/reconciler.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Exists, Min, OuterRef

from grants.models import EnvironmentSecret, Grant, MintedToken

from .context import PassContext
from .github_errors import RECORDED
from .plan import Plan
from .tokens import token_end, token_mint

Purpose = MintedToken.Purpose

# A token secret's token is replaced this long before GitHub's expiry (one hour after the
# mint, so about every 50 minutes). The margin covers a refresh that runs late: the sweep
# (every AIRLOCK_SWEEP_SECONDS) may find it only on its next run, and the mint and the
# secret's write have their own retries; a job started just before the refresh keeps the
# old token until then, and at most this long less than GitHub would have given it.
REFRESH_MARGIN = timedelta(minutes=10)

# Every GitHub App holds metadata (read); a mint's answer may list it unasked.
IMPLIED_PERMISSIONS = {"metadata"}


def secret_token_current(row: EnvironmentSecret) -> MintedToken | None:
    """The token GitHub confirmed the secret holds (written_at is cleared while a write is
    under way, written_digest names the token), if it has not been erased."""
    if not row.airlock_wrote or row.written_at is None or not row.written_digest:
        return None
    return MintedToken.objects.filter(
        digest=row.written_digest, purpose=Purpose.SECRET, erased_at__isnull=True
    ).first()


def secret_token_fresh(ctx: PassContext, row: EnvironmentSecret, plan: Plan) -> bool:
    """Whether the secret's token may stay: minted for a grant that still wants it, with
    the definition's permissions, and either far from its expiry or outliving every grant
    that wants the secret (their end revokes it). Otherwise a new one is written."""
    current = secret_token_current(row)
    if current is None or current.grant_id not in {g.pk for g in plan.wanted}:
        return False
    if not permissions_match(current.permissions, plan.wanted[0].secret.permissions):
        return False
    if current.expires_at - REFRESH_MARGIN > ctx.now:
        return True
    return current.expires_at >= max(_ends_at(ctx, g) for g in plan.wanted)


def permissions_match(held: dict, wanted: dict) -> bool:
    extra = set(held) - set(wanted) - IMPLIED_PERMISSIONS
    return not extra and all(held.get(name) == level for name, level in wanted.items())


def secret_token_mint(ctx: PassContext, plan: Plan) -> MintedToken:
    """A new token for the secret, minted for the wanted grant that lasts longest."""
    owner = max(plan.wanted, key=lambda g: (_ends_at(ctx, g), g.pk))
    return token_mint(ctx, owner, permissions=owner.secret.permissions, purpose=Purpose.SECRET)


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


def _ends_at(ctx: PassContext, grant: Grant) -> datetime:
    # A grant not applied yet lasts its duration from now (transitions.grant_expiry).
    return grant.expires_at or ctx.now + grant.access_request.duration
