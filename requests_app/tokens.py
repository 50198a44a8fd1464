"""Personal API tokens (`alk_...`, stored as their sha256): making them, revoking them, and
recognising one on a request."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from requests_app.models import ApiToken

TOKEN_PREFIX = "alk_"
# What the "API tokens" page and the admin show of a token: "alk_" and 8 characters.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=366)
# last_used_at is written at most this often per token: a script calling in a loop must
# not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenRefused(Exception):
    """The presented token is unknown, expired or revoked (the message says which)."""


class UnknownApiToken(ApiTokenRefused):
    """No token has this text: a typo, a deleted token, or a guess (see portal.ratelimit)."""


def looks_like_api_token(raw: str) -> bool:
    return raw.startswith(TOKEN_PREFIX)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(
    *, user, name: str, lifetime: timedelta = DEFAULT_LIFETIME, actor=None
) -> tuple[ApiToken, str]:
    """Make a token for user; returns it with the token text, which is never shown again."""
    name = name.strip()
    if not name:
        raise ValueError("Give the token a name.")
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"A token lives at most {MAX_LIFETIME.days} days.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=raw[:DISPLAY_PREFIX_LENGTH],
            digest=token_digest(raw),
            expires_at=timezone.now() + lifetime,
        )
        audit.log_event(
            action=AuditAction.API_TOKEN_CREATED,
            actor=actor or user,
            target=token,
            detail={
                "user": user.get_username(),
                "name": token.name,
                "expires_at": token.expires_at,
            },
        )
    return token, raw


def api_token_revoke(*, token: ApiToken, user) -> ApiToken:
    """Revoke at once. Its owner may, and so may a superuser (for a leaked token)."""
    if token.user_id != user.pk and not user.is_superuser:
        raise NotAllowed("Only the token's owner can revoke it.")
    now = timezone.now()
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if updated != 1:
            raise WrongState(f"The token {token.prefix}… is already revoked.")
        token.revoked_at = now
        audit.log_event(
            action=AuditAction.API_TOKEN_REVOKED,
            actor=user,
            target=token,
            detail={"user": token.user.get_username(), "name": token.name},
        )
    return token


def api_token_authenticate(*, raw: str) -> ApiToken:
    """The live token for this text, with its user loaded; raises ApiTokenRefused."""
    token = (
        ApiToken.objects.select_related("user").filter(digest=token_digest(raw)).first()
    )
    if token is None:
        raise UnknownApiToken("This API token is not valid.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise ApiTokenRefused(f"The API token {token.prefix}… was revoked.")
    if token.is_expired(now):
        raise ApiTokenRefused(
            f"The API token {token.prefix}… expired at {token.expires_at.isoformat()}; "
            "make a new one on the API tokens page."
        )
    if not token.user.is_active:
        raise ApiTokenRefused("The API token's user account is disabled.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent calls in the same minute write once between them.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def api_tokens_of(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)
