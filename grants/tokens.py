"""The token exchange (POST /api/v1/tokens): a job's verified OIDC token for a GitHub App
installation token restricted to the job's repository, while the person who started the
run attempt holds a `token` grant in force for the job's repository and environment.

The grant is found by the grant check's own lookup (grants.check, access "token"), so run
binding and the workflow and ref restrictions are the check's. The token carries the
permissions approved on the request (AccessRequest.token_permissions, copied from the
policy when it was filed), or fewer: the body may narrow them, never widen them. It is
kept encrypted until its grant ends (grants.minted) and never logged or audited.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import NotAllowed
from grants.check import grant_check, grant_check_scope
from grants.locking import lock_requests_then_grants
from grants.minted import minted_token_erase, minted_token_record
from grants.models import Grant, MintedToken
from integrations.github.actions import WorkflowJob
from integrations.github.app import app_credentials_configured
from integrations.github.errors import GitHubError, PermanentGitHubError, TransientGitHubError
from integrations.github.permissions import format_permissions, narrowed_permissions
from integrations.github.retry import RetryPolicy
from integrations.github.tokens import AppTokenClient, InstallationToken, InstallationTokenClient
from requests_app.models import AccessKind, AccessRequest

logger = logging.getLogger(__name__)

# GitHub's installation tokens live one hour; a simulated one says the same.
TOKEN_LIFETIME = timedelta(hours=1)
DRY_RUN_PREFIX = "dryrun-"


class TokenMintFailed(Exception):
    """The grant allows the token, but it could not be minted, or not kept. status: what
    the API answers (503: no App credentials, or GitHub did not answer; 409: GitHub
    refused; 500: minted but not recorded, and revoked at once)."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Exchanged:
    """What an exchange hands the job. The token is a secret: never log or audit it."""

    minted: MintedToken
    token: str
    simulated: bool
    # When the grant ends (the engine revokes the token then), which may be before the
    # token's own expiry.
    grant_expires_at: datetime

    def __repr__(self):  # never the value, even in a traceback
        return f"Exchanged(minted={self.minted!r}, simulated={self.simulated!r})"

    def __iter__(self):  # (minted, token, simulated), as token_exchange documents
        return iter((self.minted, self.token, self.simulated))


def request_link(*, repository: str, environment: str) -> str:
    """The portal's form for filing a token request for this target."""
    query = urllib.parse.urlencode(
        {"repository": repository, "environment": environment, "access": AccessKind.TOKEN},
        safe="/",
    )
    return f"{settings.AIRLOCK_BASE_URL.rstrip('/')}/requests/new/?{query}"


def token_exchange(*, job: WorkflowJob, permissions: dict | None = None) -> Exchanged:
    """Mint a token for the job under the `token` grant in force for who started its run
    attempt, with the grant's permissions or the narrower `permissions` asked.

    Unpacks as (MintedToken, token, simulated). Raises NotAllowed (no grant in force, a
    grant of another run or workflow, permissions wider than granted, a job outside a
    GitHub environment) and TokenMintFailed (no App credentials, GitHub refused or did not
    answer), each saying why and what to do.
    """
    if not job.environment:
        raise NotAllowed(
            "This job's OIDC token carries no environment claim: only a job that runs in a "
            "GitHub environment (jobs.<job_id>.environment) can exchange it for a GitHub "
            "token, under a token grant for that environment."
        )
    scope = grant_check_scope(caller=job, access=AccessKind.TOKEN)
    answer = grant_check(scope=scope)
    if not answer.allowed or answer.grant is None or answer.grant.grant is None:
        link = request_link(repository=scope.repository, environment=scope.environment)
        raise NotAllowed(f"{answer.reason} Request token access at {link}")
    grant = Grant.objects.select_related("access_request", "target").get(pk=answer.grant.grant)
    access_request = grant.access_request
    allowed = dict(access_request.token_permissions or {})
    if not allowed:
        raise NotAllowed(
            f"Request #{access_request.pk} records no token permissions (it was filed before "
            "its policy named any); file a new token request."
        )
    granted, refusal = narrowed_permissions(allowed=allowed, asked=permissions or None)
    if refusal:
        raise NotAllowed(f"{refusal} Ask for fewer permissions, or file a request for more.")

    # The grant's own mode, fixed when it was made (as the engine keeps it): a grant
    # simulated in dry-run never yields a real token, even once the setting is off.
    simulated = bool(grant.target.dry_run)
    minted = (
        _simulated_token(repository=scope.repository, permissions=granted)
        if simulated
        else _mint(repository=scope.repository, permissions=granted)
    )
    return minted_token_keep(
        grant=grant, job=job, repository=scope.repository, minted=minted, simulated=simulated
    )


def minted_token_keep(
    *, grant: Grant, job: WorkflowJob, repository: str, minted: InstallationToken, simulated
) -> Exchanged:
    """Keep a token just minted for the grant, and hand it over; unless the grant ended
    while GitHub minted it: then the token is revoked at once (or, if GitHub cannot be
    reached now, by the engine, as a token of an ended grant) and NotAllowed says so.

    A token that could not be recorded is in no row: neither the grant's end nor the sweep
    would ever find it. It is revoked at once, and TokenMintFailed (500) says so."""
    try:
        record, still_in_force = _record(
            grant=grant, job=job, repository=repository, minted=minted, simulated=simulated
        )
    except Exception as error:
        revoked = simulated or _revoke_quietly(minted.token)
        fate = (
            "it was revoked at once"
            if revoked
            else "GitHub could not be reached to revoke it (it expires within the hour)"
        )
        # The error's type, never its text: a database error may quote the row.
        logger.error(
            "A token minted for grant %s could not be recorded (%s); %s.",
            grant.pk,
            type(error).__name__,
            fate,
        )
        raise TokenMintFailed(
            f"Airlock minted the token but could not record it ({type(error).__name__}), "
            f"so nothing was handed over and {fate}. Try again shortly; if it keeps "
            "failing, ask a platform admin to check Airlock's database.",
            status=500,
        ) from None
    if not still_in_force:
        revoked = _revoke_at_once(record, minted.token, simulated=simulated)
        raise NotAllowed(
            f"Request #{grant.access_request_id}'s grant ended while the token was being "
            f"minted; the token {'was revoked' if revoked else 'is being revoked'}. Request "
            "token access again if the job still needs it."
        )
    # The request's end, not the grant row's: the check answers from the request.
    ends_at = _request_ends_at(grant.access_request_id) or grant.expires_at
    return Exchanged(
        minted=record, token=minted.token, simulated=simulated, grant_expires_at=ends_at
    )


def _simulated_token(*, repository: str, permissions: dict) -> InstallationToken:
    """Dry-run: nothing is asked of GitHub; a value no one could take for a real token."""
    return InstallationToken(
        token=DRY_RUN_PREFIX + secrets.token_urlsafe(24),
        expires_at=timezone.now() + TOKEN_LIFETIME,
        permissions=dict(permissions),
        repositories=(repository,),
    )


def _mint(*, repository: str, permissions: dict) -> InstallationToken:
    if not (app_credentials_configured() and settings.GITHUB_APP_INSTALLATION_ID):
        raise TokenMintFailed(
            "Airlock has no GitHub App credentials to mint tokens with: set GITHUB_APP_ID, "
            "GITHUB_APP_PRIVATE_KEY and GITHUB_APP_INSTALLATION_ID (only a GitHub App can "
            "mint a token restricted to one repository). Ask a platform admin.",
            status=503,
        )
    client = AppTokenClient(retry=RetryPolicy.interactive())
    try:
        minted = client.installation_token_mint(repository=repository, permissions=permissions)
    except TransientGitHubError as error:
        raise TokenMintFailed(
            f"GitHub did not mint the token ({error}); try again shortly.", status=503
        ) from None
    except PermanentGitHubError as error:
        raise TokenMintFailed(
            f"GitHub refused to mint a token for {repository} with "
            f"{format_permissions(permissions)}: {error.message} (HTTP {error.status}). "
            "Airlock's GitHub App must be installed on the repository and must itself hold "
            "every permission its tokens carry; ask a platform admin to grant the App these "
            "permissions, or ask for fewer.",
            status=409,
        ) from None
    except GitHubError as error:
        raise TokenMintFailed(f"GitHub did not mint the token: {error}.", status=503) from None
    return minted


def _record(
    *, grant: Grant, job: WorkflowJob, repository: str, minted: InstallationToken, simulated
) -> tuple[MintedToken, bool]:
    """Keep the token for its grant, and whether the grant is still in force.

    The request's row is locked first (grants.locking's order, as a revocation locks it),
    so that a grant ending meanwhile either sees this token when the engine revokes its
    tokens, or is seen here as ended: no token outlives its grant unrecorded.
    """
    with transaction.atomic():
        lock_requests_then_grants(request_ids=[grant.access_request_id], grant_ids=[grant.pk])
        in_force = (
            AccessRequest.objects.in_force(timezone.now())
            .filter(pk=grant.access_request_id)
            .exists()
        ) and Grant.objects.filter(
            pk=grant.pk, state__in=Grant.OPEN_STATES, revoke_requested_at__isnull=True
        ).exists()
        record = minted_token_record(
            grant=grant,
            purpose=MintedToken.Purpose.EXCHANGE,
            repository=repository,
            minted=minted,
            dry_run=simulated,
            actor_label=job.get_username(),
        )
    return record, in_force


def _request_ends_at(request_id: int) -> datetime | None:
    return AccessRequest.objects.filter(pk=request_id).values_list("expires_at", flat=True).first()


def _revoke_at_once(record: MintedToken, token: str, *, simulated: bool) -> bool:
    """The grant ended as the token was minted: revoke it now (True); if GitHub cannot be
    reached, the engine revokes it later (it is recorded against the ended grant)."""
    if simulated or _revoke_quietly(token):
        minted_token_erase(record, revoked=True)
        return True
    return False


def _revoke_quietly(token: str) -> bool:
    client = InstallationTokenClient(token=token, retry=RetryPolicy.interactive())
    try:
        client.installation_token_revoke()
    except GitHubError as error:
        logger.warning("Could not revoke a minted token at once: %s", error)
        return False
    return True


__all__ = [
    "Exchanged",
    "TokenMintFailed",
    "minted_token_keep",
    "request_link",
    "token_exchange",
]
