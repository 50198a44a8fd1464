"""Minted tokens in the engine: a token grant is applied with nothing written to GitHub, and
every token minted for a grant (exchange or secret) is revoked on GitHub when it ends, before
the grant is recorded as revoked (docs/reconciler.md "Minted tokens")."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.minted import (
    minted_token_erase,
    minted_token_record,
    minted_token_value,
    minted_tokens_to_end,
)
from grants.models import Grant, MintedToken, Target
from integrations.github import GitHubError
from integrations.github.permissions import LEVEL_RANK, narrower_permissions
from integrations.github.retry import RetryPolicy
from integrations.github.tokens import AppTokenClient, InstallationToken, InstallationTokenClient
from requests_app.models import AccessRequest, SecretDefinition

from .context import PassContext
from .expiry import schedule_expiries
from .github_errors import RECORDED
from .plan import plan_grants
from .transitions import lock_grants, mark_applied, mark_revoked, record_failed_attempt

logger = logging.getLogger(__name__)

# How long GitHub's installation tokens last; a dry-run token pretends the same.
TOKEN_LIFETIME = timedelta(hours=1)

# Every GitHub App holds metadata (read); a mint's answer may list it unasked.
IMPLIED_PERMISSIONS = {"metadata"}


def reconcile_token_grants(ctx: PassContext, grants: list[Grant]) -> None:
    """Token grants: applied at once (the job mints on demand, POST /api/v1/tokens); when
    one ends, its tokens are revoked on GitHub, and only then is the grant revoked. A
    revocation GitHub does not answer leaves the grant applied, overdue and retried."""
    # Not ctx.plan: applying a token grant writes nothing to GitHub, so it never waits for
    # GitHub's budget (each mint is the job's own call, when it asks).
    plan = plan_grants(grants, ctx.now)
    if not plan.has_work:
        return
    carried = tokens_carry_over(ctx, plan.ending)
    ended = tokens_end(ctx, plan.ending + plan.withdrawn, carried=carried)
    at = timezone.now()
    with transaction.atomic():
        lock_grants(plan.to_apply + [grant for grant, _ in ended])
        for grant in plan.to_apply:
            if mark_applied(
                grant,
                at=at,
                detail={
                    "github": "nothing to write: tokens are minted on demand",
                    "dry_run": ctx.target.dry_run,
                },
            ):
                ctx.result.applied.append(grant.pk)
        for grant, tokens in ended:
            detail = {"dry_run": ctx.target.dry_run, "tokens": tokens}
            if grant.state == Grant.State.PENDING:
                detail["github"] = "never applied"
            if mark_revoked(grant, at=at, detail=detail):
                ctx.result.revoked.append(grant.pk)
        schedule_expiries(Target, ctx.target.pk, [g for g in plan.to_apply if g.expires_at])


def tokens_end(
    ctx: PassContext, grants: list[Grant], *, carried: dict[int, int] | None = None
) -> list[tuple[Grant, dict]]:
    """End every token minted for these grants: the grants whose tokens are all revoked
    (or expired) now, each with what was done ({"revoked": n, "expired": n}, and
    "carried_over": n for those tokens_carry_over moved). A grant whose revocation GitHub
    did not answer is left out, with its failure recorded (overdue, retried by every
    sweep), as for a reviewer GitHub would not remove."""
    done = []
    for grant in grants:
        counts = {"revoked": 0, "expired": 0}
        if carried and carried.get(grant.pk):
            counts["carried_over"] = carried[grant.pk]
        try:
            for record in minted_tokens_to_end(grant):
                how = token_end(ctx, record)
                if how:
                    counts[how] += 1
        except RECORDED as exc:
            ending = [grant] if grant.state == Grant.State.APPLIED else []
            ctx.result.retrying += record_failed_attempt([], ending, exc, ctx.now)
            ctx.result.errors.append(str(exc))
            continue
        done.append((grant, counts))
    return done


def tokens_revoke_now(ctx: PassContext, grants: list[Grant]) -> None:
    """Revoke (or erase, if expired) the tokens of these ending grants now, whatever else
    the pass could not do: a token needs nothing but itself to be revoked, so a secret's
    deletion GitHub refused must not keep a job's token valid. Only the tokens: the grants
    stay applied (the pass records its own failure on them) and a revocation GitHub does
    not answer now is tried again by the next pass, with the grant."""
    for grant in grants:
        try:
            for record in minted_tokens_to_end(grant):
                token_end(ctx, record)
        except RECORDED as exc:
            ctx.result.errors.append(str(exc))


def grant_token_permissions(grant: Grant) -> dict:
    """What a token minted for this grant may do: the permissions approved with its
    request (AccessRequest.token_permissions, copied at filing), for a GitHub token secret
    narrowed by a later edit of its definition, never widened by one."""
    approved = dict(grant.access_request.token_permissions or {})
    secret = grant.secret
    if secret is not None and secret.kind == SecretDefinition.Kind.GITHUB_TOKEN:
        return narrower_permissions(approved, secret.permissions or {})
    return approved


def permissions_within(held: dict, allowed: dict) -> bool:
    """Whether a token's permissions go no further than `allowed` (metadata aside)."""
    for name, level in held.items():
        if name in IMPLIED_PERMISSIONS:
            continue
        granted = allowed.get(name)
        if granted not in LEVEL_RANK or LEVEL_RANK.get(level, 99) > LEVEL_RANK[granted]:
            return False
    return True


def tokens_carry_over(ctx: PassContext, grants: list[Grant]) -> dict[int, int]:
    """An extension that continues its original without a gap (continues_original) goes
    on with the original's tokens: a job holding one (or reading the secret that holds it)
    keeps it, although the original has ended. For each of these grants that ended by
    expiry, its still-valid tokens within the extension's permissions move to the
    extension's grant (audited token.carried_over), so the extension's end revokes them;
    the others are revoked with the original. {grant id: tokens carried}."""
    carried = {}
    for grant in grants:
        if grant.state != Grant.State.APPLIED or grant.revoke_requested_at is not None:
            continue
        extension = (
            Grant.objects.select_related("access_request", "secret")
            .filter(
                target_id=grant.target_id,
                access_request__extends_id=grant.access_request_id,
                access_request__status=AccessRequest.Status.ACTIVE,
                access_request__continues_original=True,
                state=Grant.State.APPLIED,
                revoke_requested_at__isnull=True,
                expires_at__gt=ctx.now,
            )
            .first()
        )
        if extension is None:
            continue
        allowed = grant_token_permissions(extension)
        for record in MintedToken.objects.filter(
            grant=grant, erased_at__isnull=True, expires_at__gt=ctx.now
        ).order_by("pk"):
            if permissions_within(record.permissions, allowed) and _carry_over(
                record, grant, extension
            ):
                carried[grant.pk] = carried.get(grant.pk, 0) + 1
    return carried


def _carry_over(record: MintedToken, grant: Grant, extension: Grant) -> bool:
    with transaction.atomic():
        moved = MintedToken.objects.filter(
            pk=record.pk, grant=grant, erased_at__isnull=True
        ).update(grant=extension)
        if moved != 1:
            return False
        audit.log_event(
            action=AuditAction.TOKEN_CARRIED_OVER,
            target=extension,
            reason=f"grant #{extension.pk} continues grant #{grant.pk} without a gap",
            detail={
                "token": record.digest,
                "minted_token": record.pk,
                "from_grant": grant.pk,
                "to_grant": extension.pk,
                "purpose": record.purpose,
                "repository": record.repository,
                "permissions": record.permissions,
                "expires_at": record.expires_at,
                "dry_run": record.dry_run,
            },
        )
    return True


def tokens_left_end(ctx: PassContext) -> None:
    """Revoke the tokens still kept for this environment's grants that are closed: one
    minted for a grant that failed before its secret was written, or one the exchange
    recorded just as its grant ended (after the pass that ended it had listed its tokens).
    What GitHub does not answer now, the sweep asks for again (tokens_left_targets)."""
    left = MintedToken.objects.filter(
        grant__target=ctx.target, erased_at__isnull=True
    ).exclude(grant__state__in=Grant.OPEN_STATES)
    for record in left.order_by("pk"):
        try:
            token_end(ctx, record)
        except RECORDED as exc:
            ctx.result.errors.append(str(exc))
            return


def tokens_left_targets(now: datetime) -> set[int]:
    """For the sweep: the environments with a live token kept for a closed grant."""
    left = MintedToken.objects.filter(erased_at__isnull=True, expires_at__gt=now).exclude(
        grant__state__in=Grant.OPEN_STATES
    )
    return set(left.values_list("grant__target_id", flat=True))


def token_end(ctx: PassContext, record: MintedToken) -> str:
    """Revoke one token on GitHub and erase it: "revoked"; or, past its expiry, erase it
    without a call: "expired"; "" when another worker erased it first.

    GitHub's 401 (it no longer knows the token) counts as done: the only ways there are an
    earlier revocation whose outcome was never recorded (a worker that died after the
    DELETE) and the token's own expiry. A simulated (dry-run) token has nothing to call."""
    now = timezone.now()
    if record.expires_at <= now:
        return "expired" if minted_token_erase(record, revoked=False, now=now) else ""
    value = minted_token_value(record)
    if value and not record.dry_run:
        ctx.result.github_writes += 1
        InstallationTokenClient(heartbeat=ctx.gh.heartbeat, token=value).installation_token_revoke()
    return "revoked" if minted_token_erase(record, revoked=True) else ""


def tokens_erase_expired(now: datetime) -> int:
    """Forget the values of the tokens that expired on their own by `now`, whether their
    grant lasts or not (the sweep): GitHub no longer accepts them, so there is nothing to
    revoke and nothing to keep. Compare-and-set, so a reconcile ending one meanwhile is
    harmless."""
    expired = MintedToken.objects.filter(erased_at__isnull=True, expires_at__lte=now)
    return sum(minted_token_erase(record, revoked=False, now=now) for record in expired)


def token_mint(ctx: PassContext, grant: Grant, *, permissions: dict, purpose: str) -> MintedToken:
    """Mint a token for the grant, restricted to the target's repository, and keep it
    (grants.minted): recorded before it is used anywhere, so whatever happens next it is
    revoked when the grant ends. In dry-run nothing is minted: a stand-in value is kept."""
    repository = ctx.target.repository
    if ctx.target.dry_run:
        minted = InstallationToken(
            token=f"dry-run-{secrets.token_hex(20)}",
            expires_at=timezone.now() + TOKEN_LIFETIME,
            permissions=dict(permissions),
            repositories=(repository,),
        )
    else:
        ctx.result.github_writes += 1
        minted = AppTokenClient(heartbeat=ctx.gh.heartbeat).installation_token_mint(
            repository=repository, permissions=permissions
        )
    try:
        return minted_token_record(
            grant=grant,
            purpose=purpose,
            repository=repository,
            minted=minted,
            dry_run=ctx.target.dry_run,
        )
    except Exception:
        # Not recorded, so nothing would ever revoke it: revoke it now, then fail as before.
        if not ctx.target.dry_run:
            _revoke_unrecorded(ctx, minted.token)
        raise


def _revoke_unrecorded(ctx: PassContext, token: str) -> None:
    """Best effort and quiet: the error that stopped the record is the one to raise."""
    client = InstallationTokenClient(
        heartbeat=ctx.gh.heartbeat, token=token, retry=RetryPolicy.interactive()
    )
    try:
        ctx.result.github_writes += 1
        client.installation_token_revoke()
    except GitHubError as error:
        logger.warning("Could not revoke a token minted but not recorded: %s", error)
    except Exception:
        logger.exception("Could not revoke a token minted but not recorded")
