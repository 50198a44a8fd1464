"""Minted tokens at rest: recording one (encrypted, audited by digest), reading its value
back to revoke or write it, and erasing it once revoked or expired. The exchange
(POST /api/v1/tokens) and the engine (revocation, GitHub token secrets) share these, so a
token's value is handled in one place and never logged or audited."""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.models import Grant, MintedToken
from integrations.github.permissions import format_permissions
from integrations.github.tokens import InstallationToken
from requests_app.crypto import decrypt_value, encrypt_value


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def minted_token_record(
    *,
    grant: Grant,
    purpose: str,
    repository: str,
    minted: InstallationToken,
    dry_run: bool = False,
    actor=None,
    actor_label: str = "",
) -> MintedToken:
    """Keep a token just minted for a grant, encrypted, and audit the mint (permissions,
    repository, expiry and the token's digest; never the token)."""
    digest = token_digest(minted.token)
    with transaction.atomic():
        record = MintedToken.objects.create(
            grant=grant,
            purpose=purpose,
            repository=repository,
            permissions=dict(minted.permissions),
            encrypted_token=encrypt_value(minted.token),
            digest=digest,
            dry_run=dry_run,
            expires_at=minted.expires_at,
        )
        audit.log_event(
            action=AuditAction.TOKEN_MINTED,
            actor=actor,
            actor_label=actor_label,
            target=grant,
            reason=f"{format_permissions(minted.permissions)} on {repository}",
            detail={
                "token": digest,
                "minted_token": record.pk,
                "purpose": purpose,
                "repository": repository,
                "permissions": dict(minted.permissions),
                "expires_at": minted.expires_at,
                "dry_run": dry_run,
            },
        )
    return record


def minted_token_value(record: MintedToken) -> str:
    """The token itself, to revoke it or write it as a secret; "" once erased."""
    if record.is_erased or not record.encrypted_token:
        return ""
    return decrypt_value(bytes(record.encrypted_token))


def minted_token_erase(
    record: MintedToken, *, revoked: bool, now: datetime | None = None
) -> bool:
    """Forget a token's value: it was revoked on GitHub now (revoked=True, audited
    token.revoked), or it expired on its own (token.expired). Compare-and-set: False when
    it was erased already."""
    now = now or timezone.now()
    fields = {"erased_at": now, "encrypted_token": b""}
    if revoked:
        fields["revoked_at"] = now
    with transaction.atomic():
        updated = MintedToken.objects.filter(pk=record.pk, erased_at__isnull=True).update(
            **fields
        )
        if updated != 1:
            return False
        for name, value in fields.items():
            setattr(record, name, value)
        audit.log_event(
            action=AuditAction.TOKEN_REVOKED if revoked else AuditAction.TOKEN_EXPIRED,
            target_type="grants.grant",
            target_id=str(record.grant_id),
            target_repr=f"grant #{record.grant_id}",
            detail={
                "token": record.digest,
                "minted_token": record.pk,
                "purpose": record.purpose,
                "repository": record.repository,
                "permissions": record.permissions,
                "expires_at": record.expires_at,
                "dry_run": record.dry_run,
            },
        )
    return True


def minted_tokens_to_end(grant: Grant):
    """The grant's tokens not yet erased, oldest first."""
    return MintedToken.objects.filter(grant=grant, erased_at__isnull=True).order_by("pk")
