"""GitHub Actions' OIDC key set: the one fetch of the keys that sign workflow ID tokens."""

from __future__ import annotations

import threading

import jwt
from django.conf import settings

JWKS_CACHE_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5
# A token with a kid we do not hold makes us fetch the key set again, at most this often:
# a stream of made-up kids must not become a stream of requests to the issuer. Tests set
# AIRLOCK_OIDC_JWKS_REFRESH_COOLDOWN_SECONDS to 0.
DEFAULT_JWKS_REFRESH_COOLDOWN_SECONDS = 5

_jwks_clients: dict[tuple[str, float], jwt.PyJWKClient] = {}
_jwks_clients_lock = threading.Lock()


def _jwks_client() -> jwt.PyJWKClient:
    url = settings.GITHUB_OIDC_ISSUER.rstrip("/") + "/.well-known/jwks"
    cooldown = float(
        getattr(
            settings,
            "AIRLOCK_OIDC_JWKS_REFRESH_COOLDOWN_SECONDS",
            DEFAULT_JWKS_REFRESH_COOLDOWN_SECONDS,
        )
    )
    with _jwks_clients_lock:
        client = _jwks_clients.get((url, cooldown))
        if client is None:
            client = jwt.PyJWKClient(
                url,
                cache_jwk_set=True,
                lifespan=JWKS_CACHE_SECONDS,
                timeout=JWKS_TIMEOUT_SECONDS,
                cooldown_duration=cooldown,
            )
            _jwks_clients[(url, cooldown)] = client
        return client


def oidc_signing_key(kid: str) -> jwt.PyJWK:
    """The issuer's key with this kid, from the cached key set (fetched again, at most once
    per cooldown, for a kid it does not hold). PyJWKClientError when there is none."""
    return _jwks_client().get_signing_key(kid)
