"""Every change to an access request happens here, once, atomically, and audited.

Transitions are compare-and-set on the status (or run under a row lock and check again),
so two people acting at the same moment can never both win. Anything that reaches outside
the database (granting on GitHub, notifications) is enqueued after the commit.
"""

import dataclasses
import re
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from requests_app.exceptions import NotAllowed, WrongState
from requests_app.models import (
    AccessKind,
    AccessPolicy,
    AccessRequest,
    Approval,
    ApproverGroup,
    ApproverGroupMember,
    SecretDefinition,
)
from requests_app.policies import policy_for_target
from requests_app.policy_file import PolicyDocument, PolicyFileError
from requests_app.selectors import request_refusal_for_decider

Status = AccessRequest.Status

REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# GitHub environment names: up to 255 characters, no control characters; "/" is allowed.
ENVIRONMENT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")
MAX_SCHEDULE_AHEAD = timedelta(days=30)


def _validate_target(*, repository: str, environment: str, access: str) -> dict:
    errors = {}
    if not REPOSITORY_RE.match(repository):
        errors["repository"] = "Give the repository as owner/name, for example acme/api."
    if not environment.strip() or not ENVIRONMENT_RE.match(environment):
        errors["environment"] = "Give the environment's name, for example production."
    if access not in AccessKind.values:
        errors["access"] = f"Access must be one of: {', '.join(AccessKind.values)}."
    return errors


def access_request_create(
    *,
    requester,
    repository: str,
    environment: str,
    access: str,
    reason: str,
    duration_minutes: int | None = None,
    secret_name: str | None = None,
    starts_at: datetime | None = None,
    break_glass: bool = False,
) -> AccessRequest:
    """File a request. Raises ValidationError (with field errors) for anything the policy
    or the target refuses; nothing is saved then."""
    repository = repository.strip()
    environment = environment.strip()
    reason = reason.strip()
    errors = _validate_target(repository=repository, environment=environment, access=access)
    if errors:
        raise ValidationError(errors)

    policy = policy_for_target(repository=repository, environment=environment, access=access)
    if policy is None:
        raise ValidationError(
            {
                "__all__": (
                    f"No access policy covers {access} access to {repository} environment "
                    f"'{environment}'. Ask a platform admin to add one."
                )
            }
        )

    now = timezone.now()
    errors = {}
    secret = None
    if access == AccessKind.SECRET:
        secret = next((s for s in policy.secrets.all() if s.name == secret_name), None)
        allowed = ", ".join(s.name for s in policy.secrets.all()) or "none"
        if not secret_name:
            errors["secret"] = f"Choose the secret to grant (policy allows: {allowed})."
        elif secret is None:
            errors["secret"] = (
                f"Policy '{policy.name}' does not grant the secret {secret_name} "
                f"(it allows: {allowed})."
            )
        elif secret.kind == secret.Kind.ENVIRONMENT and not secret.has_value:
            errors["secret"] = f"The secret {secret.name} has no value yet; ask an admin."
    elif secret_name:
        errors["secret"] = "Only secret access takes a secret."

    if break_glass and not policy.break_glass:
        errors["break_glass"] = f"Policy '{policy.name}' does not allow break-glass access."
    max_duration = policy.break_glass_max_duration if break_glass else policy.max_duration
    if duration_minutes is None:
        duration_minutes = int(min(policy.default_duration, max_duration).total_seconds() // 60)
    if duration_minutes <= 0:
        errors["duration_minutes"] = "The duration must be at least one minute."
    elif timedelta(minutes=duration_minutes) > max_duration:
        errors["duration_minutes"] = (
            f"At most {_minutes(max_duration)} minutes under policy '{policy.name}'"
            f"{' for break-glass' if break_glass else ''}."
        )
    if len(reason) < policy.reason_min_length:
        errors["reason"] = (
            f"Give a reason of at least {policy.reason_min_length} characters "
            f"(policy '{policy.name}')."
        )
    if starts_at is not None:
        if break_glass:
            errors["starts_at"] = "Break-glass access starts at once; leave the start empty."
        elif starts_at < now - timedelta(minutes=1):
            errors["starts_at"] = "The start must be in the future."
        elif starts_at > now + MAX_SCHEDULE_AHEAD:
            errors["starts_at"] = "The start can be at most 30 days ahead."
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        duplicate = AccessRequest.objects.filter(
            requester=requester,
            repository__iexact=repository,
            environment__iexact=environment,
            access=access,
            secret=secret,
            status=Status.PENDING,
        ).first()
        if duplicate is not None:
            raise ValidationError(
                {"__all__": f"You already have a pending request #{duplicate.pk} for this."}
            )
        access_request = AccessRequest.objects.create(
            requester=requester,
            repository=repository,
            environment=environment,
            access=access,
            secret=secret,
            reason=reason,
            duration_minutes=duration_minutes,
            policy=policy,
            approvals_required=0 if break_glass else policy.approvals_required,
            break_glass=break_glass,
            starts_at=starts_at,
            pending_until=now + policy.pending_ttl,
        )
        audit.log_event(
            action="request.created",
            actor=requester,
            target=access_request,
            reason=reason,
            detail=_request_detail(access_request),
        )
        if break_glass:
            _mark_approved(access_request, actor=requester, action="request.break_glass")
        elif access_request.approvals_required == 0:
            _mark_approved(access_request, actor=None, action="request.auto_approved")
    return access_request


def access_request_approve(*, access_request: AccessRequest, approver, comment: str = ""):
    """Add one approval; the approval that reaches the policy's count approves the request.

    The row lock makes concurrent approvals queue: each sees the approvals before it, so N
    approvers at once give N approvals and exactly one transition to approved.
    """
    with transaction.atomic():
        locked = _lock(access_request)
        _require_pending(locked, "approve")
        refusal = request_refusal_for_decider(access_request=locked, user=approver)
        if refusal:
            raise NotAllowed(refusal)
        try:
            with transaction.atomic():
                Approval.objects.create(request=locked, approver=approver, comment=comment)
        except IntegrityError:
            raise WrongState("You have already approved this request.") from None
        count = locked.approvals.count()
        audit.log_event(
            action="request.approval_added",
            actor=approver,
            target=locked,
            reason=comment,
            detail={"approvals": count, "approvals_required": locked.approvals_required},
        )
        if count >= locked.approvals_required:
            _mark_approved(locked, actor=approver, action="request.approved")
    _refresh(access_request, locked)
    return access_request


def access_request_deny(*, access_request: AccessRequest, approver, comment: str = ""):
    with transaction.atomic():
        locked = _lock(access_request)
        _require_pending(locked, "deny")
        refusal = request_refusal_for_decider(access_request=locked, user=approver)
        if refusal:
            raise NotAllowed(refusal)
        _transition(
            locked,
            to=Status.DENIED,
            actor=approver,
            action="request.denied",
            reason=comment,
            closed_by=approver,
            close_comment=comment,
            decided_at=timezone.now(),
        )
    _refresh(access_request, locked)
    return access_request


def access_request_cancel(*, access_request: AccessRequest, user, comment: str = ""):
    """The requester withdraws a pending request. No approval can follow a cancel."""
    with transaction.atomic():
        locked = _lock(access_request)
        if locked.requester_id != user.pk:
            raise NotAllowed("Only the requester can cancel a request.")
        _require_pending(locked, "cancel")
        _transition(
            locked,
            to=Status.CANCELLED,
            actor=user,
            action="request.cancelled",
            reason=comment,
            closed_by=user,
            close_comment=comment,
            decided_at=timezone.now(),
        )
    _refresh(access_request, locked)
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
            action="request.timed_out",
            actor=None,
            target=access_request,
            detail={"pending_until": access_request.pending_until},
        )
    access_request.status = Status.TIMED_OUT
    access_request.decided_at = now
    return True


def access_requests_time_out_overdue() -> int:
    """Time out every request pending past its TTL (called by the beat sweep)."""
    overdue = AccessRequest.objects.filter(
        status=Status.PENDING, pending_until__lte=timezone.now()
    )
    return sum(access_request_time_out(access_request=r) for r in overdue.iterator())


# --- internals -----------------------------------------------------------------------------


def _lock(access_request: AccessRequest) -> AccessRequest:
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("policy", "requester")
        .get(pk=access_request.pk)
    )


def _require_pending(access_request: AccessRequest, verb: str) -> None:
    if access_request.status != Status.PENDING:
        raise WrongState(
            f"Request #{access_request.pk} is {access_request.status}; only a pending "
            f"request can be {_past(verb)}."
        )


def _transition(access_request, *, to, actor, action, reason="", **fields) -> None:
    """Compare-and-set from the status we read to `to`, and audit it in the same
    transaction. A row count other than 1 means someone else moved it first."""
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
        target=access_request,
        reason=reason,
        detail={"from": before, "to": to},
    )


def _mark_approved(access_request: AccessRequest, *, actor, action: str) -> None:
    _transition(
        access_request,
        to=Status.APPROVED,
        actor=actor,
        action=action,
        reason=access_request.reason if access_request.break_glass else "",
        decided_at=timezone.now(),
    )
    request_id = access_request.pk
    transaction.on_commit(lambda: _enqueue_grant(request_id))


def _enqueue_grant(request_id: int) -> None:
    # The grant engine picks approved requests up; the beat sweep is the guarantee when
    # this message is lost.
    from grants.tasks import enqueue_grant_for_request

    enqueue_grant_for_request(request_id)


def _refresh(target: AccessRequest, source: AccessRequest) -> None:
    for field in ("status", "decided_at", "closed_by_id", "close_comment"):
        setattr(target, field, getattr(source, field))


def _request_detail(access_request: AccessRequest) -> dict:
    return {
        "repository": access_request.repository,
        "environment": access_request.environment,
        "access": access_request.access,
        "secret": access_request.secret.name if access_request.secret else None,
        "duration_minutes": access_request.duration_minutes,
        "policy": access_request.policy.name,
        "approvals_required": access_request.approvals_required,
        "break_glass": access_request.break_glass,
        "starts_at": access_request.starts_at,
    }


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def _past(verb: str) -> str:
    return {"approve": "approved", "deny": "denied", "cancel": "cancelled"}[verb]



# --- policies as code ----------------------------------------------------------------------


@dataclasses.dataclass
class PolicyApplyReport:
    created: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)


def policy_file_apply(*, document: PolicyDocument, actor=None) -> PolicyApplyReport:
    """Make approver groups, secrets and policies match the file, in one transaction.

    Idempotent: applying the same file twice changes nothing the second time. Objects the
    file does not name are left alone. A reference to a group or secret that exists neither
    in the file nor in the database refuses the whole file (PolicyFileError).
    """
    report = PolicyApplyReport()
    with transaction.atomic():
        groups = {spec.name: _apply_group(spec, report, actor) for spec in document.groups}
        secrets = {spec.name: _apply_secret(spec, report, actor) for spec in document.secrets}
        problems = []
        for index, spec in enumerate(document.policies):
            group_objs, secret_objs = [], []
            for name in spec.approver_groups:
                group = groups.get(name) or ApproverGroup.objects.filter(name=name).first()
                if group is None:
                    problems.append(f"policies[{index}].approver_groups: no group named {name!r}")
                group_objs.append(group)
            for name in spec.secrets:
                secret = secrets.get(name) or SecretDefinition.objects.filter(name=name).first()
                if secret is None:
                    problems.append(f"policies[{index}].secrets: no secret named {name!r}")
                secret_objs.append(secret)
            if not problems:
                _apply_policy(spec, group_objs, secret_objs, report, actor)
        if problems:
            raise PolicyFileError(problems)
    return report


def _record(report, label, created, changes, obj, actor):
    if created:
        report.created.append(label)
        action = "policy_file.created"
    elif changes:
        report.changed.append(f"{label} ({', '.join(sorted(changes))})")
        action = "policy_file.changed"
    else:
        report.unchanged.append(label)
        return
    audit.log_event(action=action, actor=actor, target=obj, detail={"changed": sorted(changes)})


def _assign(obj, values: dict) -> set[str]:
    changes = {name for name, value in values.items() if getattr(obj, name) != value}
    for name in changes:
        setattr(obj, name, values[name])
    return changes


def _apply_group(spec, report, actor) -> ApproverGroup:
    group, created = ApproverGroup.objects.get_or_create(name=spec.name)
    changes = _assign(group, {"github_team": spec.github_team})
    if changes:
        group.save()
    if spec.members is not None:
        wanted = {login.lower(): login for login in spec.members}
        current = {m.login.lower(): m for m in group.members.all()}
        removed = [m.pk for key, m in current.items() if key not in wanted]
        added = [login for key, login in wanted.items() if key not in current]
        if removed:
            ApproverGroupMember.objects.filter(pk__in=removed).delete()
            changes.add("members removed")
        if added:
            ApproverGroupMember.objects.bulk_create(
                ApproverGroupMember(group=group, login=login) for login in added
            )
            changes.add("members added")
    _record(report, f"approver group {spec.name}", created, changes, group, actor)
    return group


def _apply_secret(spec, report, actor) -> SecretDefinition:
    secret = SecretDefinition.objects.filter(name=spec.name).first()
    created = secret is None
    if created:
        secret = SecretDefinition(name=spec.name)
    changes = _assign(secret, {"kind": spec.kind, "org": spec.org})
    if spec.value is not None and (not secret.has_value or secret.get_value() != spec.value):
        secret.set_value(spec.value)
        changes.add("value")
    if created or changes:
        secret.save()
    _record(report, f"secret {spec.name}", created, changes, secret, actor)
    return secret


def _apply_policy(spec, groups, secrets, report, actor) -> AccessPolicy:
    policy = AccessPolicy.objects.filter(name=spec.name).first()
    created = policy is None
    if created:
        policy = AccessPolicy(name=spec.name)
    changes = _assign(
        policy,
        {
            "repository_patterns": spec.repositories,
            "environment_patterns": spec.environments,
            "access_kinds": spec.access,
            "max_duration": spec.max_duration,
            "default_duration": spec.default_duration,
            "approvals_required": spec.approvals_required,
            "reason_min_length": spec.reason_min_length,
            "pending_ttl": spec.pending_ttl,
            "break_glass": spec.break_glass,
            "break_glass_max_duration": spec.break_glass_max_duration,
        },
    )
    if created or changes:
        policy.save()
    if created or {g.pk for g in policy.approver_groups.all()} != {g.pk for g in groups}:
        policy.approver_groups.set(groups)
        changes.add("approver_groups")
    if created or {s.pk for s in policy.secrets.all()} != {s.pk for s in secrets}:
        policy.secrets.set(secrets)
        changes.add("secrets")
    _record(report, f"policy {spec.name}", created, changes, policy, actor)
    return policy


# --- transitions the grant engine drives (grants/) -----------------------------------------
#
# The engine calls these inside the transaction that records what GitHub answered, so the
# request, the grant and the audit event commit together. They are compare-and-set on the
# status and return False (rather than raise) when the request had already moved on: the
# engine's view of GitHub is the truth it records either way.


def access_request_activate(
    *, access_request: AccessRequest, granted_at: datetime, expires_at: datetime
) -> bool:
    """approved → active once the grant is on GitHub; expires_at counts from granted_at."""
    return _engine_transition(
        access_request,
        from_statuses=[Status.APPROVED],
        to=Status.ACTIVE,
        actor=None,
        action="request.activated",
        granted_at=granted_at,
        expires_at=expires_at,
    )


def access_request_expire(*, access_request: AccessRequest, ended_at: datetime) -> bool:
    """active → expired once the grant is gone from GitHub at (or after) its expiry."""
    return _engine_transition(
        access_request,
        from_statuses=[Status.ACTIVE],
        to=Status.EXPIRED,
        actor=None,
        action="request.expired",
        ended_at=ended_at,
    )


def access_request_end_early(*, access_request: AccessRequest, user, comment: str = "") -> None:
    """approved/active → revoked: access given back by the requester or taken by an admin.

    The request stops counting as active at once (the API's check reads its status); the
    grant engine then removes the access from GitHub. Raises WrongState if it had ended.
    """
    ended = _engine_transition(
        access_request,
        from_statuses=[Status.APPROVED, Status.ACTIVE],
        to=Status.REVOKED,
        actor=user,
        action="request.revoked",
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
    return _engine_transition(
        access_request,
        from_statuses=[Status.APPROVED, Status.ACTIVE],
        to=Status.FAILED,
        actor=None,
        action="request.failed",
        reason=reason,
        ended_at=timezone.now(),
        close_comment=reason,
    )


def access_request_retry(*, access_request: AccessRequest, user) -> bool:
    """failed → approved: an admin asks the engine to try a failed grant again."""
    return _engine_transition(
        access_request,
        from_statuses=[Status.FAILED],
        to=Status.APPROVED,
        actor=user,
        action="request.retried",
        ended_at=None,
        close_comment="",
    )


def _engine_transition(
    access_request, *, from_statuses, to, actor, action, reason="", **fields
) -> bool:
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
        detail.update({k: v for k, v in fields.items() if k in ("granted_at", "expires_at")})
        audit.log_event(
            action=action, actor=actor, target=access_request, reason=reason, detail=detail
        )
    return True
