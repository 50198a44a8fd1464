"""Grant transitions a pass records inside its outcome transaction, and the retry bookkeeping."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

import audit
from audit.actions import AuditAction
from core import metrics
from core.durations import exponential_backoff
from grants.locking import lock_requests_then_grants
from grants.models import Grant
from integrations.github import GitHubError
from requests_app import services as request_services
from requests_app.models import AccessRequest
from requests_app.notifications import notify

from .context import ReconcileResult

logger = logging.getLogger(__name__)

State = Grant.State

# Task-level backoff between attempts to apply a grant, capped here.
MAX_RETRY_DELAY = timedelta(minutes=15)


def lock_grants(grants) -> None:
    """Lock these grants and their requests, in the one order (grants.locking)."""
    grants = list(grants)
    lock_requests_then_grants(
        request_ids=[grant.access_request_id for grant in grants],
        grant_ids=[grant.pk for grant in grants],
    )


def grant_expiry(grant: Grant, at: datetime) -> tuple[datetime, bool | None]:
    """When a grant starting at `at` ends, and (for an extension) whether it continues its
    original. A grant lasts its duration from the moment it is applied. An extension that
    was approved while its original was in force, and whose original is still on GitHub
    now, continues from the original's expiry instead: access goes on without a gap, and
    the reviewer (or secret) stays where it is, shared by the two grants. An extension
    approved at or after the original's expiry, or whose original has already been removed,
    is a new grant, counted from its own start; the request's page and the audit say so."""
    access_request = grant.access_request
    if access_request.extends_id is None:
        return at + access_request.duration, None
    original = (
        AccessRequest.objects.filter(pk=access_request.extends_id)
        .values("status", "expires_at")
        .first()
    )
    still_on_github = Grant.objects.filter(
        access_request_id=access_request.extends_id,
        state=State.APPLIED,
        revoke_requested_at__isnull=True,
    ).exists()
    if (
        still_on_github
        and original["status"] == AccessRequest.Status.ACTIVE
        and original["expires_at"] is not None
        and access_request.decided_at is not None
        and access_request.decided_at < original["expires_at"]
    ):
        return original["expires_at"] + access_request.duration, True
    return at + access_request.duration, False


def mark_applied(grant: Grant, *, at: datetime, detail: dict) -> bool:
    expires_at, continues = grant_expiry(grant, at)
    updated = Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
        state=State.APPLIED,
        applied_at=at,
        expires_at=expires_at,
        last_error="",
        next_attempt_at=None,
        attempts=F("attempts") + 1,
    )
    if updated != 1:
        return False
    grant.state, grant.applied_at, grant.expires_at = State.APPLIED, at, expires_at
    if continues is not None:
        detail = {
            **detail,
            "extends": grant.access_request.extends_id,
            "continues_original": continues,
            "note": (
                "continues the original's access without a gap"
                if continues
                else "the original had already expired; this is a new grant"
            ),
        }
    audit.log_event(
        action=AuditAction.GRANT_APPLIED,
        target=grant,
        detail={**detail, "applied_at": at, "expires_at": expires_at},
    )
    request_services.access_request_activate(
        access_request=grant.access_request,
        granted_at=at,
        expires_at=expires_at,
        continues_original=continues,
    )
    return True


def mark_revoked(grant: Grant, *, at: datetime, detail: dict) -> bool:
    if grant.state == State.APPLIED:
        reason = (
            Grant.EndReason.REVOKED if grant.revoke_requested_at else Grant.EndReason.EXPIRED
        )
        due = grant.revoke_requested_at or grant.expires_at
    else:
        reason, due = Grant.EndReason.WITHDRAWN, None
    updated = Grant.objects.filter(pk=grant.pk, state=grant.state).update(
        state=State.REVOKED,
        revoked_at=at,
        end_reason=reason,
        last_error="",
        next_attempt_at=None,
        revocation_overdue_since=None,
    )
    if updated != 1:
        return False
    late = (at - due).total_seconds() if due else None
    if late is not None:
        metrics.revocation_recorded(end_reason=reason, lag_seconds=late)
    audit.log_event(
        action=AuditAction.GRANT_REVOKED,
        target=grant,
        detail={
            **detail,
            "end_reason": reason,
            "due_at": due,
            "revoked_at": at,
            "late_by_seconds": round(late, 3) if late is not None else None,
            "overdue_since": grant.revocation_overdue_since,
            "attempts": grant.attempts,
        },
    )
    if reason == Grant.EndReason.EXPIRED:
        request_services.access_request_expire(access_request=grant.access_request, ended_at=at)
    grant.state = State.REVOKED
    return True


def mark_failed(grant: Grant, *, message: str, detail: dict | None = None) -> bool:
    updated = Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
        state=State.FAILED, last_error=message, next_attempt_at=None, attempts=F("attempts") + 1
    )
    if updated != 1:
        return False
    audit.log_event(
        action=AuditAction.GRANT_FAILED, target=grant, reason=message, detail=detail or {}
    )
    request_services.access_request_fail(access_request=grant.access_request, reason=message)
    grant.state = State.FAILED
    return True


def fail_all(grants: list[Grant], message: str, result: ReconcileResult) -> None:
    """Fail every grant in the list (a plan's to_apply, emptied) with one message."""
    with transaction.atomic():
        lock_grants(grants)
        for grant in grants:
            if mark_failed(grant, message=message):
                result.failed.append(grant.pk)
    grants.clear()


def revoke_withdrawn(grants: list[Grant], *, at: datetime, result: ReconcileResult) -> None:
    """Close pending grants whose requests were closed first: GitHub never had them."""
    if not grants:
        return
    with transaction.atomic():
        lock_grants(grants)
        for grant in grants:
            if mark_revoked(grant, at=at, detail={"github": "never applied"}):
                result.revoked.append(grant.pk)


def retry_delay(attempts: int) -> timedelta:
    base = timedelta(seconds=settings.AIRLOCK_GRANT_RETRY_BASE_SECONDS)
    return exponential_backoff(attempts, base=base, cap=MAX_RETRY_DELAY)


def record_failed_attempt(grants_to_apply, grants_ending, error: GitHubError, now) -> list[int]:
    """An attempt failed: a transient error outlasted the in-call retries (or, for
    revocations, GitHub refused). Grants waiting to be applied are tried again later, and
    fail once AIRLOCK_GRANT_MAX_ATTEMPTS is spent. Revocations are never given up: they are
    marked overdue (audited once) and every sweep retries them until they succeed."""
    retry_at = getattr(error, "retry_at", None)
    retrying = []
    with transaction.atomic():
        lock_grants([*grants_to_apply, *grants_ending])
        for grant in grants_to_apply:
            attempts = grant.attempts + 1
            if attempts >= settings.AIRLOCK_GRANT_MAX_ATTEMPTS:
                mark_failed(
                    grant,
                    message=f"Gave up after {attempts} attempts: {error}",
                    detail={"transient": True},
                )
                continue
            next_at = max(retry_at or now, now + retry_delay(attempts))
            Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
                attempts=attempts, last_error=str(error), next_attempt_at=next_at
            )
            retrying.append(grant.pk)
        for grant in grants_ending:
            due = grant.revoke_requested_at or grant.expires_at
            first = grant.revocation_overdue_since is None
            Grant.objects.filter(pk=grant.pk, state=State.APPLIED).update(
                attempts=F("attempts") + 1,
                last_error=str(error),
                revocation_overdue_since=grant.revocation_overdue_since or due,
                # Only a rate limit delays the next try; otherwise every sweep retries.
                next_attempt_at=retry_at,
            )
            if first:
                audit.log_event(
                    action=AuditAction.GRANT_REVOCATION_OVERDUE,
                    target=grant,
                    reason=str(error),
                    detail={"due_at": due, "error": str(error), "retry_at": retry_at},
                )
                notify("revocation_overdue", grant_id=grant.pk)
            logger.error("Revocation of %s failed, will retry: %s", grant, error)
            retrying.append(grant.pk)
    return retrying
