"""Who is calling the REST API: `Authorization: Bearer <token>`, where the token is a GitHub
Actions OIDC ID token (a JWT) or a personal API token (`alk_...`); browsers use the session."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

import jwt
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from integrations.github.actions import WorkflowJob
from integrations.github.oidc import JWKS_CACHE_SECONDS, oidc_signing_key

logger = logging.getLogger(__name__)

OIDC_ALGORITHMS = ["RS256"]
# Runner and portal clocks differ a little; GitHub's tokens live 5 to 10 minutes.
OIDC_LEEWAY_SECONDS = 60
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "repository", "actor"]


class OidcUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The OIDC issuer's signing keys could not be fetched; try again shortly."
    default_code = "oidc_unavailable"


@dataclass(frozen=True, eq=False)
class OidcPrincipal(WorkflowJob):
    """A GitHub Actions job as DRF's request.user: the check's WorkflowJob (its verified
    claims), with the attributes Django and DRF ask of a user. Not a user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def has_perm(self, perm, obj=None) -> bool:
        return False


# --- OIDC verification ----------------------------------------------------------------------

# Tokens already verified, so that a job asking again (before each sensitive step, or the
# Action retrying) costs a dictionary lookup instead of an RSA verification. An entry lasts
# until its token expires (with the leeway), and never longer than the key set is cached:
# a key the issuer withdraws stops being honoured no later than without this cache.
# Keyed by a digest of the token with the issuer and audience it was verified against.
VERIFIED_CACHE_SIZE = 10_000
_verified: dict[bytes, tuple[float, dict]] = {}
_verified_lock = threading.Lock()


def _verified_key(token: str) -> bytes:
    material = "\x1f".join((token, settings.GITHUB_OIDC_ISSUER, settings.AIRLOCK_OIDC_AUDIENCE))
    return hashlib.sha256(material.encode()).digest()


def oidc_verify(token: str) -> dict:
    """The verified claims of an Actions ID token; raises AuthenticationFailed saying why.

    Verified with PyJWT against the issuer's JWKS (GITHUB_OIDC_ISSUER + /.well-known/jwks),
    RS256 only, with iss, aud (AIRLOCK_OIDC_AUDIENCE), exp and nbf checked and a small
    leeway for clock skew. The key set is cached, and fetched again when a token names a
    kid it does not hold (GitHub rotates its keys). A verified token is remembered until it
    expires, for at most as long as the key set is cached.
    """
    key = _verified_key(token)
    entry = _verified.get(key)
    if entry is not None and time.time() < entry[0]:
        return dict(entry[1])
    claims = _oidc_verify(token)
    until = min(float(claims["exp"]) + OIDC_LEEWAY_SECONDS, time.time() + JWKS_CACHE_SECONDS)
    with _verified_lock:
        if len(_verified) >= VERIFIED_CACHE_SIZE:
            now = time.time()
            for stale in [k for k, (deadline, _) in _verified.items() if deadline <= now]:
                del _verified[stale]
            # Still full: the oldest tenth goes (insertion order), so this runs rarely.
            for oldest in list(_verified)[: len(_verified) - VERIFIED_CACHE_SIZE * 9 // 10]:
                del _verified[oldest]
        _verified[key] = (until, claims)
    return dict(claims)


def _oidc_verify(token: str) -> dict:
    refuse = exceptions.AuthenticationFailed
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise refuse("The bearer token is not a well-formed JWT.") from None
    except jwt.InvalidTokenError as problem:
        # PyJWT also checks the header's kid and crit as it reads it, and refuses a bad one
        # (a kid that is a number, say) with this broader error.
        raise refuse(f"The bearer token is not a well-formed JWT: {problem}.") from None
    algorithm = header.get("alg")
    # Checked before any key is looked at: "none", and HS256 "signed" with the public key,
    # are the classic ways to forge a token for a verifier that trusts the header.
    if algorithm not in OIDC_ALGORITHMS:
        raise refuse(f"OIDC tokens must be signed with RS256; this one says {algorithm!r}.")
    kid = header.get("kid")
    if not kid or not isinstance(kid, str):
        raise refuse("The OIDC token names no signing key (kid).")
    try:
        signing_key = oidc_signing_key(kid)
    except jwt.PyJWKClientConnectionError:
        logger.warning("Could not fetch the OIDC key set of %s", settings.GITHUB_OIDC_ISSUER)
        raise OidcUnavailable() from None
    except jwt.PyJWKClientError:
        raise refuse(
            f"The OIDC token's signing key {kid!r} is not published by "
            f"{settings.GITHUB_OIDC_ISSUER}."
        ) from None
    issuer = settings.GITHUB_OIDC_ISSUER
    audience = settings.AIRLOCK_OIDC_AUDIENCE
    try:
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=OIDC_ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=OIDC_LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise refuse("The OIDC token has expired; request a fresh one in the job.") from None
    except jwt.ImmatureSignatureError:
        raise refuse("The OIDC token is not valid yet (nbf/iat in the future).") from None
    except jwt.InvalidAudienceError:
        raise refuse(
            f"The OIDC token's audience is not {audience!r}; request the token with that audience."
        ) from None
    except jwt.InvalidIssuerError:
        raise refuse(f"The OIDC token was not issued by {issuer}.") from None
    except jwt.MissingRequiredClaimError as problem:
        raise refuse(f"The OIDC token lacks the {problem.claim!r} claim.") from None
    except jwt.InvalidSignatureError:
        raise refuse("The OIDC token's signature does not verify.") from None
    except jwt.InvalidTokenError as problem:
        raise refuse(f"The OIDC token is not valid: {problem}.") from None
    for name in (
        "repository", "actor", "environment", "sub", "run_id", "run_attempt", "triggering_actor",
        "ref", "job_workflow_ref", "sha",
    ):
        value = claims.get(name, "")
        if not isinstance(value, str) or (name in ("repository", "actor") and not value):
            raise refuse(f"The OIDC token's {name!r} claim is not a non-empty string.")
    for name in ("actor_id", "triggering_actor_id"):
        value = claims.get(name, "")
        if not isinstance(value, str) or not (value == "" or value.isascii() and value.isdigit()):
            raise refuse(f"The OIDC token's {name!r} claim is not a GitHub numeric id.")
    return claims


# --- DRF ------------------------------------------------------------------------------------


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <OIDC JWT | alk_ API token>`, told apart by shape: an API token
    starts with its prefix, a JWT is three base64url parts joined by dots. A bearer token
    that is neither is refused, not ignored. An OIDC caller is not a portal user: it becomes
    an OidcPrincipal, and may only call the grant check (IsPortalUser)."""

    keyword = "bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None  # not ours: the session may still authenticate the caller
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Give exactly one token: Authorization: Bearer <token>."
            )
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The bearer token is not ASCII.") from None
        # Imported here: DRF loads this class while the app registry may still be loading.
        from portal.ratelimit import api_token_lockout, api_token_unknown
        from requests_app.tokens import (
            ApiTokenRefused,
            UnknownApiToken,
            api_token_authenticate,
            looks_like_api_token,
        )

        if looks_like_api_token(token):
            lockout = api_token_lockout(request)
            if lockout is not None:
                raise exceptions.Throttled(
                    wait=lockout.wait_seconds,
                    detail=(
                        "Too many unknown API tokens from your address; try again in "
                        f"{lockout.wait_words}."
                    ),
                )
            try:
                api_token = api_token_authenticate(raw=token)
            except ApiTokenRefused as refusal:
                if isinstance(refusal, UnknownApiToken):
                    api_token_unknown(request)
                raise exceptions.AuthenticationFailed(str(refusal)) from None
            return api_token.user, api_token
        if token.count(".") == 2:
            return OidcPrincipal(claims=oidc_verify(token)), token
        raise exceptions.AuthenticationFailed(
            "The bearer token is neither an Airlock API token (alk_...) nor a GitHub "
            "Actions OIDC token."
        )

    def authenticate_header(self, request):
        # Makes DRF answer 401 (with this challenge) rather than 403 to a missing token.
        return 'Bearer realm="airlock"'


class IsPortalUser(permissions.BasePermission):
    """A signed-in person (session or API token). OIDC callers may only use the check, and
    their own run's requests where a view allows them (IsPortalUserOrRunJob)."""

    message = (
        "A workflow's OIDC token may only call the grant check (/api/v1/grants/check), file "
        "and read its own run's requests (POST /api/v1/requests/, GET /api/v1/requests/{id}/), "
        "release its run's grants (POST /api/v1/runs/release) and exchange itself for a "
        "GitHub token under a token grant (POST /api/v1/tokens)."
    )

    def has_permission(self, request, view):
        user = request.user
        if isinstance(user, OidcPrincipal):
            return False
        return bool(user and user.is_authenticated)


class IsPortalUserOrRunJob(IsPortalUser):
    """IsPortalUser, and a workflow's OIDC token for the methods the view lists in
    `oidc_methods`: those that act only on the token's own run."""

    def has_permission(self, request, view):
        if isinstance(request.user, OidcPrincipal):
            return request.method in getattr(view, "oidc_methods", ())
        return super().has_permission(request, view)


class IsRunJob(permissions.BasePermission):
    """A workflow's OIDC token only: the endpoint acts on the token's own run."""

    message = (
        "Only a workflow's OIDC token can call this: it acts on the token's own run. People "
        "give access back on the request's page or with POST /api/v1/grants/{id}/revoke."
    )

    def has_permission(self, request, view):
        return isinstance(request.user, OidcPrincipal)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A personal API token (`alk_...`, from the API tokens page or "
                "`manage.py createapitoken`), or a GitHub Actions OIDC ID token requested "
                "with the portal's audience: for the grant check, the run's own requests "
                "and release, and the token exchange."
            ),
        }
