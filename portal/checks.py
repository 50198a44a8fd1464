"""System checks of the portal's own settings, run by `manage.py check` (the deploy ones by
`check --deploy`), next to Django's security checks."""

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def encryption_keys_check(app_configs, **kwargs):
    keys = settings.AIRLOCK_ENCRYPTION_KEYS
    if not keys:
        return [
            Warning(
                "AIRLOCK_ENCRYPTION_KEYS is not set: secret values are encrypted at rest with "
                "a key derived from SECRET_KEY.",
                hint=(
                    "Set AIRLOCK_ENCRYPTION_KEYS to a Fernet key of its own (README "
                    "\"Configuration\" says how to make one), so that a leaked or rotated "
                    "SECRET_KEY does not also give away, or lose, the stored secret values."
                ),
                id="airlock.W001",
            )
        ]
    problems = []
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            problems.append(
                Error(
                    f"key {number} of AIRLOCK_ENCRYPTION_KEYS is not a Fernet key (32 url-safe "
                    "base64-encoded bytes).",
                    id="airlock.E001",
                )
            )
    return problems
