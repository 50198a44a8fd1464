"""The audit chain's keys: the one that chains new events, and those that verify older ones
(rotation and the SECRET_KEY fallback: docs/audit-log.md)."""

import hashlib
import hmac
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

# Long enough that a key cannot be guessed from its id; `secrets.token_urlsafe(32)` is 43.
MIN_KEY_LENGTH = 32
KEY_ID_LENGTH = 12


class UnknownAuditKeyError(LookupError):
    """An event names a key id that none of the configured keys has."""


class AuditKey:
    """One key: its public id, and the HMAC it chains with."""

    def __init__(self, secret: bytes):
        fingerprint = hmac.new(secret, b"airlock audit key id", hashlib.sha256).hexdigest()
        self.id = fingerprint[:KEY_ID_LENGTH]
        # Keyed once: each link copies this instead of hashing the key again.
        self._hmac = hmac.new(secret, digestmod=hashlib.sha256)

    def sign(self, message: bytes) -> str:
        mac = self._hmac.copy()
        mac.update(message)
        return mac.hexdigest()

    def __repr__(self):
        return f"<AuditKey {self.id}>"


@dataclass(frozen=True)
class AuditKeyring:
    signing: AuditKey
    by_id: dict[str, AuditKey]

    def get(self, key_id: str) -> AuditKey:
        try:
            return self.by_id[key_id]
        except KeyError:
            raise UnknownAuditKeyError(key_id) from None


@cache
def audit_keyring() -> AuditKeyring:
    configured = list(settings.AIRLOCK_AUDIT_KEYS)
    if any(len(key) < MIN_KEY_LENGTH for key in configured):
        raise ImproperlyConfigured(
            f"AIRLOCK_AUDIT_KEYS must be secrets of at least {MIN_KEY_LENGTH} characters "
            "each, comma-separated, newest first"
        )
    derived = [
        hmac.new(secret.encode(), b"airlock audit chain", hashlib.sha256).digest()
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]
    keys = [AuditKey(key.encode()) for key in configured] + [AuditKey(key) for key in derived]
    return AuditKeyring(signing=keys[0], by_id={key.id: key for key in keys})


@receiver(setting_changed)
def _forget_keys(*, setting, **kwargs):
    # Tests change the keys with override_settings; a process otherwise keeps its keys.
    if setting in {"AIRLOCK_AUDIT_KEYS", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}:
        audit_keyring.cache_clear()
