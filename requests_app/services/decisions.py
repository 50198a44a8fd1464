"""The approvers' and requester's decisions on a pending request, and its timing out."""

from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from requests_app import notifications
from requests_app.models import AccessRequest, Approval
from requests_app.selectors import approver_identity, request_refusal_for_decider
from requests_app.services.transitions import (
    announce_approval,
    announce_change,
    announce_status_change,
    copy_decision,
    lock,
    transition,
)

Status = AccessRequest.Status


def access_request_approve(
    *, access_request: AccessRequest, approver, comment: str = "", via: dict | None = None
):
    """Add one approval; the approval that reaches the policy's count approves the request.
    via: where the decision was made (e.g. Slack's user, team and channel), added to the
    audit events' detail.

    The row lock makes concurrent approvals queue: each sees the approvals before it, so N
    approvers at once give N approvals and exactly one transition to approved.
    """
    with transaction.atomic():
        locked = lock(access_request)
        _require_pending(locked, "approve")
        refusal = request_refusal_for_decider(access_request=locked, user=approver)
        if refusal:
            raise NotAllowed(refusal)
        identity = approver_identity(approver)
        earlier = (
            locked.approvals.filter(approver_identity=identity)
            .exclude(approver=approver)
            .select_related("approver")
            .first()
        )
        if earlier is not None:
            raise NotAllowed(
                f"Request #{locked.pk} already has an approval from "
                f"{earlier.approver.get_username()}, the same person as you ({identity}): "
                "each person counts once."
            )
        try:
            with transaction.atomic():
                Approval.objects.create(
                    request=locked, approver=approver, approver_identity=identity, comment=comment
                )
        except IntegrityError:
            raise WrongState("You have already approved this request.") from None
        # The constraints make each approval a distinct account and a distinct person.
        count = locked.approvals.count()
        audit.log_event(
            action=AuditAction.REQUEST_APPROVAL_ADDED,
            actor=approver,
            target=locked,
            reason=comment,
            detail={
                "approvals": count,
                "approvals_required": locked.approvals_required,
                **(via or {}),
            },
        )
        if count >= locked.approvals_required:
            mark_approved(locked, actor=approver, action=AuditAction.REQUEST_APPROVED, via=via)
        else:
            announce_change(locked.pk)
    copy_decision(access_request, locked)
    return access_request


def access_request_deny(
    *, access_request: AccessRequest, approver, comment: str = "", via: dict | None = None
):
    """Deny a pending request; via as for access_request_approve."""
    with transaction.atomic():
        locked = lock(access_request)
        _require_pending(locked, "deny")
        refusal = request_refusal_for_decider(access_request=locked, user=approver)
        if refusal:
            raise NotAllowed(refusal)
        transition(
            locked,
            to=Status.DENIED,
            actor=approver,
            action=AuditAction.REQUEST_DENIED,
            reason=comment,
            closed_by=approver,
            close_comment=comment,
            decided_at=timezone.now(),
            detail=via,
        )
        notifications.notify("request_denied", request_id=locked.pk)
    copy_decision(access_request, locked)
    return access_request


def access_request_cancel(*, access_request: AccessRequest, user, comment: str = ""):
    """The requester withdraws a pending request. No approval can follow a cancel."""
    with transaction.atomic():
        locked = lock(access_request)
        if locked.requester_id != user.pk:
            raise NotAllowed("Only the requester can cancel a request.")
        _require_pending(locked, "cancel")
        transition(
            locked,
            to=Status.CANCELLED,
            actor=user,
            action=AuditAction.REQUEST_CANCELLED,
            reason=comment,
            closed_by=user,
            close_comment=comment,
            decided_at=timezone.now(),
        )
    copy_decision(access_request, locked)
    return access_request


def access_request_time_out(*, access_request: AccessRequest) -> bool:
    """Close a request left pending past its policy's pending TTL. False if it was decided
    (or timed out by someone else) first."""
    now = timezone.now()
    with transaction.atomic():
        updated = AccessRequest.objects.filter(
            pk=access_request.pk, status=Status.PENDING, pending_until__lte=now
        ).update(status=Status.TIMED_OUT, decided_at=now)
        if updated != 1:
            return False
        audit.log_event(
            action=AuditAction.REQUEST_TIMED_OUT,
            actor=None,
            target=access_request,
            detail={"pending_until": access_request.pending_until},
        )
        notifications.notify("request_timed_out", request_id=access_request.pk)
        announce_status_change(access_request.pk, Status.TIMED_OUT)
    access_request.status = Status.TIMED_OUT
    access_request.decided_at = now
    return True


def access_requests_time_out_overdue() -> int:
    """Time out every request pending past its TTL (called by the beat sweep)."""
    overdue = AccessRequest.objects.filter(
        status=Status.PENDING, pending_until__lte=timezone.now()
    )
    return sum(access_request_time_out(access_request=r) for r in overdue.iterator())


def mark_approved(
    access_request: AccessRequest, *, actor, action: str, via: dict | None = None
) -> None:
    """pending → approved, and after the commit the grant engine is told (before anyone
    is: access_request_approved is sent ahead of the approval's message)."""
    transition(
        access_request,
        to=Status.APPROVED,
        actor=actor,
        action=action,
        reason=access_request.reason if access_request.break_glass else "",
        decided_at=timezone.now(),
        detail=via,
    )
    announce_approval(access_request.pk)
    if action == AuditAction.REQUEST_APPROVED:
        notifications.notify("request_approved", request_id=access_request.pk)


def _require_pending(access_request: AccessRequest, verb: str) -> None:
    if access_request.status != Status.PENDING:
        raise WrongState(
            f"Request #{access_request.pk} is {access_request.status}; only a pending "
            f"request can be {_past(verb)}."
        )


def _past(verb: str) -> str:
    return {"approve": "approved", "deny": "denied", "cancel": "cancelled"}[verb]

