"""Personal API tokens (`alk_...`, stored as their sha256): making them, revoking them, and
recognising one on a request."""

import hashlib
import secrets
from datetime import timedelta
from functools import cache as memoize

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from core.statement import aware_datetime, fetch_all
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


# Column types read by hand as the database gives them; a user model with any other kind
# of column is read through the ORM instead (_token_and_user_sql says None).
_PLAIN_COLUMNS = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
    "SmallIntegerField", "PositiveIntegerField", "PositiveSmallIntegerField",
    "PositiveBigIntegerField", "CharField", "EmailField", "SlugField", "TextField",
    "ForeignKey",
}
_CONVERTED_COLUMNS = {"DateTimeField": aware_datetime, "BooleanField": bool}


def _read_column(field):
    kind = field.get_internal_type()
    if kind in _PLAIN_COLUMNS:
        return None
    if kind in _CONVERTED_COLUMNS:
        convert = _CONVERTED_COLUMNS[kind]
        return lambda value: None if value is None else convert(value)
    raise LookupError(kind)


@memoize
def _token_and_user_sql(vendor: str):
    """The token with this digest and its user, in one query written as SQL from the
    models' metadata (db_table, Field.column, quote_name), with how to read each column;
    None when a column is of a kind not read by hand.

    By hand because this is the API token's hot path (every call with one): the ORM took
    longer to build the query than the database took to answer it.
    """
    del vendor  # part of the cache key: quoting differs between backends
    q = connection.ops.quote_name
    User = get_user_model()
    token_fields, user_fields = ApiToken._meta.concrete_fields, User._meta.concrete_fields
    try:
        readers = [_read_column(f) for f in (*token_fields, *user_fields)]
    except LookupError:
        return None
    columns = [f"t.{q(f.column)}" for f in token_fields] + [
        f"u.{q(f.column)}" for f in user_fields
    ]
    sql = (
        f"SELECT {', '.join(columns)} FROM {q(ApiToken._meta.db_table)} t "
        f"JOIN {q(User._meta.db_table)} u "
        f"ON u.{q(User._meta.pk.column)} = t.{q(ApiToken._meta.get_field('user').column)} "
        f"WHERE t.{q(ApiToken._meta.get_field('digest').column)} = %s"
    )
    # Read once here rather than per call: the attribute names from_db is given, and the
    # user model.
    token_names = [f.attname for f in token_fields]
    user_names = [f.attname for f in user_fields]
    return sql, token_names, user_names, readers, User


def _token_with_user(digest: str) -> ApiToken | None:
    """The token with this digest, its user loaded (as select_related would), or None."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once, not through the proxy each time
    statement = _token_and_user_sql(db.vendor)
    if statement is None:
        return ApiToken.objects.select_related("user").filter(digest=digest).first()
    sql, token_names, user_names, readers, User = statement
    rows = fetch_all(sql, [digest])  # also the connection's health check (core.statement)
    if not rows:
        return None
    values = [v if read is None else read(v) for read, v in zip(readers, rows[0], strict=True)]
    split = len(token_names)
    # Model.from_db: how the ORM itself makes an instance from a row.
    token = ApiToken.from_db(db.alias, token_names, values[:split])
    token.user = User.from_db(db.alias, user_names, values[split:])
    return token


def api_token_authenticate(*, raw: str) -> ApiToken:
    """The live token for this text, with its user loaded; raises ApiTokenRefused."""
    token = _token_with_user(token_digest(raw))
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
