"""An OIDC issuer like token.actions.githubusercontent.com, served under /oidc.

It holds RSA signing keys (newest signs, older ones stay in the JWKS until reset, as GitHub
keeps a rotated key published for a while) and mints Actions-style ID tokens for tests.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

import jwt
from jwt.algorithms import RSAAlgorithm

from .keys import new_rsa_private_key


class OidcIssuer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initial = [(self._new_kid(), new_rsa_private_key())]
        self._keys = list(self._initial)

    @staticmethod
    def _new_kid() -> str:
        return secrets.token_hex(20).upper()

    def reset(self) -> None:
        with self._lock:
            self._keys = list(self._initial)

    @property
    def current_kid(self) -> str:
        return self._keys[-1][0]

    def rotate(self, keep_old: bool = True) -> str:
        """Start signing with a new key; returns its kid. keep_old=False unpublishes the rest."""
        with self._lock:
            fresh = (self._new_kid(), new_rsa_private_key())
            self._keys = [*self._keys, fresh] if keep_old else [fresh]
            return fresh[0]

    def jwks(self) -> dict:
        keys = []
        for kid, key in self._keys:
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    @staticmethod
    def configuration(issuer: str) -> dict:
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": [
                "sub",
                "aud",
                "exp",
                "iat",
                "iss",
                "jti",
                "nbf",
                "ref",
                "repository",
                "repository_id",
                "repository_owner",
                "repository_owner_id",
                "run_id",
                "run_number",
                "run_attempt",
                "actor",
                "actor_id",
                "workflow",
                "head_ref",
                "base_ref",
                "event_name",
                "ref_type",
                "environment",
                "job_workflow_ref",
            ],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }

    def mint(
        self, issuer: str, claims: dict | None = None, kid: str | None = None, **overrides
    ) -> str:
        """An Actions ID token: defaults < claims < overrides; `sub` follows from them.

        kid picks the signing key; a kid the issuer does not hold signs with a throwaway key,
        which is how a test gets a token that no published key verifies.
        """
        merged = {**(claims or {}), **overrides}
        repository = merged.get("repository", "acme/api")
        owner = repository.split("/")[0]
        moment = int(time.time())
        token = {
            "jti": str(uuid.uuid4()),
            "iss": issuer,
            "aud": f"https://github.com/{owner}",
            "iat": moment,
            "nbf": moment,
            "exp": moment + 300,
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "sha": "0" * 40,
            "repository": repository,
            "repository_id": "1000",
            "repository_owner": owner,
            "repository_owner_id": "999",
            "repository_visibility": "private",
            "run_id": "1",
            "run_number": "1",
            "run_attempt": "1",
            "actor": "octocat",
            "actor_id": "1",
            "event_name": "push",
            "workflow": "deploy",
            "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@refs/heads/main",
            "runner_environment": "github-hosted",
            **merged,
        }
        if "sub" not in merged:
            scope = (
                f"environment:{token['environment']}"
                if token.get("environment")
                else f"ref:{token['ref']}"
            )
            token["sub"] = f"repo:{repository}:{scope}"
        with self._lock:
            keys = dict(self._keys)
            kid = kid or self.current_kid
            key = keys.get(kid) or new_rsa_private_key()
        return jwt.encode(token, key, algorithm="RS256", headers={"kid": kid})
