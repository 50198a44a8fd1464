"""The life of approved access: the engine's transitions, extensions, withdrawal,
break-glass review and expiry reminders."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from requests_app import notifications
from requests_app.models import AccessRequest
from requests_app.selectors import request_open_extension, request_refusal_for_reviewer
from requests_app.services.requests import access_request_create
from requests_app.services.transitions import copy_decision, engine_transition, lock, transition

Status = AccessRequest.Status

# --- transitions the grant engine drives (grants/) -----------------------------------------
#
# The engine calls these inside the transaction that records what GitHub answered, so the
# request, the grant and the audit event commit together. They are compare-and-set on the
# status and return False (rather than raise) when the request had already moved on: the
# engine's view of GitHub is the truth it records either way.


def access_request_activate(
    *,
    access_request: AccessRequest,
    granted_at: datetime,
    expires_at: datetime,
    continues_original: bool | None = None,
) -> bool:
    """approved → active once the grant is on GitHub; expires_at counts from granted_at,
    or, for an extension that continues its original without a gap, from the original's
    expiry (continues_original: the engine decides, see grants.reconciler)."""
    extra = {}
    if access_request.extends_id is not None:
        extra["continues_original"] = bool(continues_original)
    activated = engine_transition(
        access_request,
        from_statuses=[Status.APPROVED],
        to=Status.ACTIVE,
        actor=None,
        action=AuditAction.REQUEST_ACTIVATED,
        granted_at=granted_at,
        expires_at=expires_at,
        **extra,
    )
    if activated:
        notifications.notify("grant_applied", request_id=access_request.pk)
    return activated


def access_request_expire(*, access_request: AccessRequest, ended_at: datetime) -> bool:
    """active → expired once the grant is gone from GitHub at (or after) its expiry."""
    return engine_transition(
        access_request,
        from_statuses=[Status.ACTIVE],
        to=Status.EXPIRED,
        actor=None,
        action=AuditAction.REQUEST_EXPIRED,
        ended_at=ended_at,
    )


def access_request_end_early(
    *,
    access_request: AccessRequest,
    user,
    comment: str = "",
    action: AuditAction = AuditAction.REQUEST_REVOKED,
    actor_label: str = "",
) -> None:
    """approved/active → revoked: access given back by the requester or taken by an admin
    (or, audited as such, by its run: grants.services.run_access_end).

    The request stops counting as active at once (the API's check reads its status); the
    grant engine then removes the access from GitHub. Raises WrongState if it had ended.
    """
    ended = engine_transition(
        access_request,
        from_statuses=[Status.APPROVED, Status.ACTIVE],
        to=Status.REVOKED,
        actor=user,
        action=action,
        actor_label=actor_label,
        reason=comment,
        ended_at=timezone.now(),
        closed_by=user,
        close_comment=comment,
    )
    if not ended:
        access_request.refresh_from_db(fields=["status"])
        raise WrongState(
            f"Request #{access_request.pk} is {access_request.status}; only an approved or "
            "active request can be revoked."
        )


def access_request_fail(*, access_request: AccessRequest, reason: str) -> bool:
    """approved/active → failed: GitHub refused, or retries are spent. reason is GitHub's."""
    failed = engine_transition(
        access_request,
        from_statuses=[Status.APPROVED, Status.ACTIVE],
        to=Status.FAILED,
        actor=None,
        action=AuditAction.REQUEST_FAILED,
        reason=reason,
        ended_at=timezone.now(),
        close_comment=reason,
    )
    if failed:
        notifications.notify("grant_failed", request_id=access_request.pk)
    return failed


def access_request_retry(*, access_request: AccessRequest, user) -> bool:
    """failed → approved: an admin asks the engine to try a failed grant again."""
    return engine_transition(
        access_request,
        from_statuses=[Status.FAILED],
        to=Status.APPROVED,
        actor=user,
        action=AuditAction.REQUEST_RETRIED,
        ended_at=None,
        close_comment="",
    )


def access_request_extend(
    *,
    original: AccessRequest,
    requester,
    reason: str,
    duration_minutes: int | None = None,
) -> AccessRequest:
    """Ask for more time on active access: a new request that extends the original, for the
    same target, access, secret and workflow restrictions, under the policy that covers them
    now (its reason, approvals and maximum duration, which bounds each extension; every
    extension is approved again, so continuous access never grows without approvers saying
    so).

    Once approved, the grant engine continues access from the original's expiry without
    removing it in between (grants.reconciler decides, and records continues_original);
    approved after the original ended, it is a new grant counted from its own start.

    Refused: someone else's request (NotAllowed); an original that is not active or has
    expired, or already has an open extension (WrongState: extend that one instead); and
    anything the policy refuses (ValidationError), with nothing saved.
    """
    if original.requester_id != requester.pk:
        raise NotAllowed("Only the requester can ask for more time on their access.")
    with transaction.atomic():
        # The lock makes two extensions filed at once queue: the second sees the first.
        locked = lock(original)
        now = timezone.now()
        if locked.status != Status.ACTIVE:
            raise WrongState(
                f"Request #{locked.pk} is {locked.status}; only active access can be extended"
                + (
                    " (ask again once it has started)."
                    if locked.status == Status.APPROVED
                    else ". Make a new request instead."
                )
            )
        if locked.expires_at <= now:
            raise WrongState(
                f"Request #{locked.pk} expired at {locked.expires_at:%Y-%m-%d %H:%M %Z}; "
                "make a new request instead."
            )
        if locked.is_run_bound:
            raise WrongState(
                f"Request #{locked.pk} is bound to run {locked.run_id} and ends with it; it "
                "cannot be extended. Ask for a longer duration when the run files its request."
            )
        open_extension = request_open_extension(access_request=locked)
        if open_extension is not None:
            raise WrongState(
                f"Request #{locked.pk} already has extension #{open_extension.pk} "
                f"({open_extension.status}); "
                + (
                    "wait for its decision."
                    if open_extension.status == Status.PENDING
                    else f"ask for more time on #{open_extension.pk} instead."
                )
            )
        extension = access_request_create(
            requester=requester,
            repository=locked.repository,
            environment=locked.environment,
            access=locked.access,
            secret_name=locked.secret.name if locked.secret_id else None,
            reason=reason,
            duration_minutes=duration_minutes,
            # The same restrictions: more time must never mean wider access.
            workflow_ref_pattern=locked.workflow_ref_pattern,
            ref_pattern=locked.ref_pattern,
        )
        # Linked in the same transaction, so the engine and the messages sent after the
        # commit always see an extension as one.
        AccessRequest.objects.filter(pk=extension.pk).update(extends=locked)
        extension.extends = locked
        audit.log_event(
            action=AuditAction.REQUEST_EXTENSION_REQUESTED,
            actor=requester,
            target=extension,
            reason=extension.reason,
            detail={
                "extends": locked.pk,
                "original_expires_at": locked.expires_at,
                "duration_minutes": extension.duration_minutes,
                "status": extension.status,
            },
        )
        audit.log_event(
            action=AuditAction.REQUEST_EXTENSION_FILED,
            actor=requester,
            target=locked,
            detail={"extension": extension.pk, "expires_at": locked.expires_at},
        )
    return extension


def access_request_withdraw(
    *,
    access_request: AccessRequest,
    user,
    comment: str,
    action: AuditAction = AuditAction.REQUEST_WITHDRAWN,
    actor_label: str = "",
) -> bool:
    """Close a pending request because the access it extends was given back or taken away
    (or its run released it or completed): pending → cancelled (no approval can follow).
    False when it was no longer pending."""
    with transaction.atomic():
        locked = lock(access_request)
        if locked.status != Status.PENDING:
            return False
        transition(
            locked,
            to=Status.CANCELLED,
            actor=user,
            action=action,
            actor_label=actor_label,
            reason=comment,
            closed_by=user,
            close_comment=comment,
            decided_at=timezone.now(),
        )
    copy_decision(access_request, locked)
    return True


def access_request_review_break_glass(
    *, access_request: AccessRequest, reviewer, outcome: str, comment: str = ""
) -> AccessRequest:
    """An approver records the after-the-fact review of break-glass access: acknowledged
    (it was justified) or escalated (it needs a closer look). Once, by an approver of the
    request's groups who is not the requester; an escalation must say why."""
    if outcome not in AccessRequest.ReviewOutcome.values:
        raise ValidationError(
            {"outcome": f"Choose one of: {', '.join(AccessRequest.ReviewOutcome.values)}."}
        )
    comment = comment.strip()
    if outcome == AccessRequest.ReviewOutcome.ESCALATED and not comment:
        raise ValidationError({"comment": "Say why you escalate, so others can follow up."})
    with transaction.atomic():
        locked = lock(access_request)
        refusal = request_refusal_for_reviewer(access_request=locked, user=reviewer)
        if refusal:
            raise NotAllowed(refusal)
        now = timezone.now()
        updated = AccessRequest.objects.filter(pk=locked.pk, review_outcome="").update(
            review_outcome=outcome, reviewed_by=reviewer, reviewed_at=now, review_comment=comment
        )
        if updated != 1:
            raise WrongState(
                f"Break-glass request #{locked.pk} was already reviewed "
                f"({locked.review_outcome} by {locked.reviewed_by})."
            )
        audit.log_event(
            action=AuditAction.REQUEST_BREAK_GLASS_REVIEWED,
            actor=reviewer,
            target=locked,
            reason=comment,
            detail={"outcome": outcome, "status": locked.status, "reason": locked.reason},
        )
    access_request.review_outcome, access_request.reviewed_by = outcome, reviewer
    access_request.reviewed_at, access_request.review_comment = now, comment
    return access_request


def access_requests_remind_expiring(*, now: datetime | None = None) -> int:
    """Tell requesters whose access ends within AIRLOCK_EXPIRY_REMINDER_MINUTES, once per
    request (compare-and-set on expiry_reminder_sent_at, so two beats or a redelivered task
    send it once). Access an approved or active extension continues is not ending: its last
    extension is reminded instead. Grants shorter than the window get no reminder."""
    now = now or timezone.now()
    window = timedelta(minutes=settings.AIRLOCK_EXPIRY_REMINDER_MINUTES)
    if window <= timedelta(0):
        return 0
    due = (
        AccessRequest.objects.in_force(now)
        .filter(
            expires_at__lte=now + window,
            expiry_reminder_sent_at__isnull=True,
            granted_at__lt=F("expires_at") - window,
        )
        .exclude(extensions__status__in=[Status.APPROVED, Status.ACTIVE])
        .values_list("pk", flat=True)
    )
    sent = 0
    for pk in list(due):
        with transaction.atomic():
            updated = AccessRequest.objects.filter(
                pk=pk, status=Status.ACTIVE, expiry_reminder_sent_at__isnull=True
            ).update(expiry_reminder_sent_at=now)
            if updated == 1:
                notifications.notify("expiry_reminder", request_id=pk)
                sent += 1
    return sent

