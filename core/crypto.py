"""Values at rest: Fernet (AES-128-CBC + HMAC) with rotatable keys (AIRLOCK_ENCRYPTION_KEYS).

In the ground layer so that both requests_app (deploy secrets, minted tokens) and the GitHub
integration (its shared installation tokens) use the same keys."""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.AIRLOCK_ENCRYPTION_KEYS)
    if not keys:
        digest = hashlib.sha256(b"airlock-secret-values:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "AIRLOCK_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes each)"
        ) from None


def encrypt_value(value: str) -> bytes:
    return _fernet().encrypt(value.encode())


def decrypt_value(token: bytes) -> str:
    try:
        return _fernet().decrypt(token).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A secret value cannot be decrypted with AIRLOCK_ENCRYPTION_KEYS"
        ) from None
