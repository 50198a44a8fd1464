"""The compare-and-set transitions every service uses, and the signals sent after commit."""

from django.db import transaction

import audit
from core.errors import WrongState
from requests_app import signals
from requests_app.models import AccessRequest


def lock(access_request: AccessRequest) -> AccessRequest:
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("policy", "requester")
        .get(pk=access_request.pk)
    )


def transition(
    access_request, *, to, actor, action, reason="", actor_label="", detail=None, **fields
) -> None:
    """Compare-and-set from the status we read to `to`, and audit it in the same
    transaction. A row count other than 1 means someone else moved it first. actor_label
    names an actor that is no user (a workflow run); detail is added to the event's."""
    updated = AccessRequest.objects.filter(
        pk=access_request.pk, status=access_request.status
    ).update(status=to, **fields)
    if updated != 1:
        raise WrongState(f"Request #{access_request.pk} was changed by someone else; reload.")
    before = access_request.status
    access_request.status = to
    for name, value in fields.items():
        setattr(access_request, name, value)
    audit.log_event(
        action=action,
        actor=actor,
        actor_label=actor_label,
        target=access_request,
        reason=reason,
        detail={"from": before, "to": to, **(detail or {})},
    )
    announce_status_change(access_request.pk, to)


def engine_transition(
    access_request, *, from_statuses, to, actor, action, reason="", actor_label="", **fields
) -> bool:
    """Compare-and-set from any of from_statuses to `to`, audited; False when the request
    had already moved on (the grant engine records what GitHub answered either way)."""
    with transaction.atomic():
        before = (
            AccessRequest.objects.filter(pk=access_request.pk, status__in=from_statuses)
            .values_list("status", flat=True)
            .first()
        )
        if before is None:
            return False
        updated = AccessRequest.objects.filter(pk=access_request.pk, status=before).update(
            status=to, **fields
        )
        if updated != 1:
            return False
        access_request.status = to
        for name, value in fields.items():
            setattr(access_request, name, value)
        detail = {"from": before, "to": to}
        detail.update(
            {
                k: v
                for k, v in fields.items()
                if k in ("granted_at", "expires_at", "continues_original")
            }
        )
        if access_request.extends_id is not None:
            detail["extends"] = access_request.extends_id
        audit.log_event(
            action=action,
            actor=actor,
            actor_label=actor_label,
            target=access_request,
            reason=reason,
            detail=detail,
        )
        announce_status_change(access_request.pk, to)
    return True


def announce_status_change(request_id: int, status: str) -> None:
    transaction.on_commit(
        lambda: signals.access_request_status_changed.send(
            sender=AccessRequest, request_id=request_id, status=status
        )
    )


def announce_change(request_id: int) -> None:
    """After the commit: the request changed without a status change (filed, or an approval
    that does not yet decide it)."""
    transaction.on_commit(
        lambda: signals.access_request_changed.send(sender=AccessRequest, request_id=request_id)
    )


def announce_approval(request_id: int) -> None:
    transaction.on_commit(
        lambda: signals.access_request_approved.send(sender=AccessRequest, request_id=request_id)
    )


def copy_decision(target: AccessRequest, source: AccessRequest) -> None:
    """Give the caller's instance what the locked copy decided."""
    for field in ("status", "decided_at", "closed_by_id", "close_comment"):
        setattr(target, field, getattr(source, field))
