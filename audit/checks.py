"""System checks of the audit log's set-up."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def audit_key_check(app_configs, **kwargs):
    if settings.AIRLOCK_AUDIT_KEYS:
        return []
    return [
        Warning(
            "AIRLOCK_AUDIT_KEYS is not set: the audit log's hash chain is keyed with a key "
            "derived from SECRET_KEY.",
            hint=(
                "Give the audit log a key of its own, kept outside the database, e.g. "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. Events "
                "chained so far keep verifying while SECRET_KEY (or SECRET_KEY_FALLBACKS) "
                "holds the same secret."
            ),
            id="audit.W001",
        )
    ]
