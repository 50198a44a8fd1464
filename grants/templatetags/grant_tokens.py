"""The tokens minted for a grant, as the request pages and the admin list them: when, for
what, which permissions, until when, and whether revoked, expired or live. Never a value:
the digest's first characters name each one."""

from datetime import datetime

from django import template
from django.utils import timezone

from grants.models import Grant, MintedToken
from integrations.github.permissions import format_permissions

register = template.Library()

# A grant delivering a GitHub token secret is refreshed about hourly: the page lists the
# newest ones and counts the rest.
SHOWN = 20


def minted_token_state(record: MintedToken, now: datetime | None = None) -> str:
    """revoked (on GitHub, when its grant ended), expired (on its own), or live."""
    now = now or timezone.now()
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at <= now or record.erased_at is not None:
        return "expired"
    return "live"


def minted_token_permissions(record: MintedToken) -> str:
    permissions = record.permissions
    if not isinstance(permissions, dict) or not permissions:
        return "none"
    return format_permissions(permissions)


@register.inclusion_tag("grants/_minted_tokens.html")
def minted_tokens(grant: Grant):
    now = timezone.now()
    tokens = list(grant.minted_tokens.all()[: SHOWN + 1])
    rows = [
        {
            "name": record.digest[:12],
            "purpose": record.get_purpose_display(),
            "repository": record.repository,
            "permissions": minted_token_permissions(record),
            "minted_at": record.minted_at,
            "expires_at": record.expires_at,
            "revoked_at": record.revoked_at,
            "state": minted_token_state(record, now),
            "dry_run": record.dry_run,
        }
        for record in tokens[:SHOWN]
    ]
    more = grant.minted_tokens.count() - SHOWN if len(tokens) > SHOWN else 0
    return {"grant": grant, "rows": rows, "more": more}
