"""Every change to an access request happens here, once, atomically, and audited.

Transitions are compare-and-set on the status (or run under a row lock and check again),
so two people acting at the same moment can never both win. Anything that reaches outside
the database (granting on GitHub, notifications) is enqueued after the commit.
"""

import dataclasses
import re
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from core.errors import NotAllowed, WrongState
from core.names import NameRefused, canonical_target, github_team_parts
from requests_app import notifications
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
from requests_app.selectors import (
    approver_identity,
    break_glass_outstanding,
    request_open_extension,
    request_refusal_for_decider,
    request_refusal_for_reviewer,
)

Status = AccessRequest.Status

MAX_SCHEDULE_AHEAD = timedelta(days=30)


def _validate_target(*, repository: str, environment: str, access: str):
    """The target in canonical form (core.names), and the errors of what was refused."""
    errors = {}
    try:
        repository, environment = canonical_target(repository=repository, environment=environment)
    except NameRefused as refusal:
        errors.update(refusal.message_dict)
    if access not in AccessKind.values:
        errors["access"] = f"Access must be one of: {', '.join(AccessKind.values)}."
    return repository, environment, errors


# Restrictions are globs matched (fnmatchcase) against the whole OIDC claim, so a pattern
# that could never match one (a bare "deploy.yml", a bare "main") is refused here rather
# than silently making the grant useless to every workflow.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_GLOB_START = ("*", "?", "[")


def _validate_restrictions(*, workflow_ref_pattern: str, ref_pattern: str) -> dict:
    errors = {}
    for name, value, limit in (
        ("workflow_ref_pattern", workflow_ref_pattern, 500),
        ("ref_pattern", ref_pattern, 255),
    ):
        if len(value) > limit:
            errors[name] = f"At most {limit} characters."
        elif _CONTROL_CHARACTERS.search(value):
            errors[name] = "Remove the control characters (tabs, line breaks)."
        elif value.count("[") != value.count("]"):
            errors[name] = "The pattern has an unbalanced [ ]."
    if "workflow_ref_pattern" not in errors and workflow_ref_pattern:
        if "@" not in workflow_ref_pattern and not workflow_ref_pattern.endswith("*"):
            errors["workflow_ref_pattern"] = (
                "A workflow pattern matches the job's whole job_workflow_ref, for example "
                "acme/api/.github/workflows/deploy.yml@refs/heads/main; end it with @* to "
                "allow any ref."
            )
    if "ref_pattern" not in errors and ref_pattern:
        if not ref_pattern.startswith(("refs/", *_GLOB_START)):
            errors["ref_pattern"] = (
                "A ref pattern matches the whole ref, for example refs/heads/main or "
                "refs/tags/v*."
            )
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
    workflow_ref_pattern: str = "",
    ref_pattern: str = "",
) -> AccessRequest:
    """File a request. Raises ValidationError (with field errors) for anything the policy
    or the target refuses; nothing is saved then.

    workflow_ref_pattern and ref_pattern optionally restrict the grant to workflows whose
    OIDC `job_workflow_ref` / `ref` claims match them (globs; grants.check enforces them).
    """
    reason = reason.strip()
    workflow_ref_pattern = (workflow_ref_pattern or "").strip()
    ref_pattern = (ref_pattern or "").strip()
    # From here on the target is canonical: routing, the duplicate check and the stored
    # request all see the one name GitHub's rules make of it.
    repository, environment, errors = _validate_target(
        repository=repository, environment=environment, access=access
    )
    errors.update(
        _validate_restrictions(workflow_ref_pattern=workflow_ref_pattern, ref_pattern=ref_pattern)
    )
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
        # One person's filings queue on their user row, so the checks below (one pending
        # request per target, one break-glass at a time) see the filing just before.
        get_user_model().objects.select_for_update().only("pk").get(pk=requester.pk)
        if break_glass:
            _refuse_chained_break_glass(
                requester=requester, repository=repository, environment=environment
            )
        duplicate = AccessRequest.objects.filter(
            requester=requester,
            repository=repository,
            environment=environment,
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
            requester_identity=approver_identity(requester),
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
            workflow_ref_pattern=workflow_ref_pattern,
            ref_pattern=ref_pattern,
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
        if break_glass:
            notifications.notify("break_glass_used", request_id=access_request.pk)
        elif access_request.status == Status.PENDING:
            notifications.notify("request_routed", request_id=access_request.pk)
    return access_request


def _refuse_chained_break_glass(*, requester, repository: str, environment: str) -> None:
    """Break-glass is one at a time per person and target: a second one waits until the
    first has ended and an approver has reviewed it, so it cannot be chained into standing
    access that nobody approved."""
    earlier = break_glass_outstanding(
        requester=requester, repository=repository, environment=environment
    )
    if earlier is None:
        return
    if earlier.status in AccessRequest.OPEN_STATUSES:
        message = (
            f"You already have break-glass request #{earlier.pk} on this target "
            f"({earlier.status}), and break-glass is one at a time. File a normal request "
            f"for approval instead; once #{earlier.pk} has ended and an approver has reviewed "
            "it, break-glass is open to you again."
        )
    else:
        message = (
            f"Your break-glass request #{earlier.pk} on this target ended ({earlier.status}) "
            "and no approver has reviewed it yet. File a normal request for approval "
            f"instead, or ask an approver to review #{earlier.pk} first."
        )
    raise ValidationError({"break_glass": message})


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
        notifications.notify("request_denied", request_id=locked.pk)
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
        notifications.notify("request_timed_out", request_id=access_request.pk)
        _follow_deployment_gates(access_request.pk, Status.TIMED_OUT)
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
    _follow_deployment_gates(access_request.pk, to)


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
    if action == "request.approved":
        notifications.notify("request_approved", request_id=request_id)


def _enqueue_grant(request_id: int) -> None:
    # The grant engine picks approved requests up; the beat sweep is the guarantee when
    # this message is lost.
    from grants.tasks import enqueue_grant_for_request

    enqueue_grant_for_request(request_id)


# After these, the deployment gates waiting on the request's person and environment are
# decided (grants.gates): approved once access is active, rejected once the request ended.
# After the commit; the gates' sweep is the guarantee when the message is lost.
_DECIDES_DEPLOYMENT_GATES = (Status.ACTIVE, *AccessRequest.CLOSED_STATUSES)


def _follow_deployment_gates(request_id: int, status: str) -> None:
    if status in _DECIDES_DEPLOYMENT_GATES:
        transaction.on_commit(lambda: _enqueue_deployment_gates(request_id))


def _enqueue_deployment_gates(request_id: int) -> None:
    from grants.tasks import enqueue_deployment_gates_for_request

    enqueue_deployment_gates_for_request(request_id)


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
        # Only when set, so unrestricted requests read as they always did.
        **{
            name: getattr(access_request, name)
            for name in ("workflow_ref_pattern", "ref_pattern")
            if getattr(access_request, name)
        },
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
    activated = _engine_transition(
        access_request,
        from_statuses=[Status.APPROVED],
        to=Status.ACTIVE,
        actor=None,
        action="request.activated",
        granted_at=granted_at,
        expires_at=expires_at,
        **extra,
    )
    if activated:
        notifications.notify("grant_applied", request_id=access_request.pk)
    return activated


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
    failed = _engine_transition(
        access_request,
        from_statuses=[Status.APPROVED, Status.ACTIVE],
        to=Status.FAILED,
        actor=None,
        action="request.failed",
        reason=reason,
        ended_at=timezone.now(),
        close_comment=reason,
    )
    if failed:
        notifications.notify("grant_failed", request_id=access_request.pk)
    return failed


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
            action=action, actor=actor, target=access_request, reason=reason, detail=detail
        )
        _follow_deployment_gates(access_request.pk, to)
    return True


# --- the life of a grant: extensions, break-glass review, reminders, team sync --------------


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
        locked = _lock(original)
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
            action="request.extension_requested",
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
            action="request.extension_filed",
            actor=requester,
            target=locked,
            detail={"extension": extension.pk, "expires_at": locked.expires_at},
        )
    return extension


def access_request_withdraw(*, access_request: AccessRequest, user, comment: str) -> bool:
    """Close a pending request because the access it extends was given back or taken away:
    pending → cancelled (no approval can follow). False when it was no longer pending."""
    with transaction.atomic():
        locked = _lock(access_request)
        if locked.status != Status.PENDING:
            return False
        _transition(
            locked,
            to=Status.CANCELLED,
            actor=user,
            action="request.withdrawn",
            reason=comment,
            closed_by=user,
            close_comment=comment,
            decided_at=timezone.now(),
        )
    _refresh(access_request, locked)
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
        locked = _lock(access_request)
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
            action="request.break_glass_reviewed",
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
    from django.conf import settings
    from django.db.models import F

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


@dataclasses.dataclass
class GroupSyncReport:
    group: str
    synced: bool
    added: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    message: str = ""

    def __str__(self):
        if not self.synced:
            return f"{self.group}: not synced: {self.message}"
        if not (self.added or self.removed):
            return f"{self.group}: in step with {self.message} (no change)"
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        return f"{self.group}: {'; '.join(parts)} (from {self.message})"




def approver_group_sync(*, group: ApproverGroup, actor=None) -> GroupSyncReport:
    """Make the group's members the members of its GitHub team (github_team "org/slug").

    The team is read outside any transaction; the members are then replaced in one, with
    what was added and removed audited. Someone who left the team can no longer approve from
    that commit on: who may decide is read from the members at decision time. On a GitHub
    error the members are kept as they were and the error is recorded (sync_error) and
    audited. In dry-run (no credentials) nothing is read or changed, and the report says so.
    """
    from django.conf import settings

    from integrations.github import GitHubClient, GitHubError, NotFoundError

    report = GroupSyncReport(group=group.name, synced=False, message=group.github_team)
    if not group.github_team.strip():
        report.message = "no GitHub team set"
        return _record_sync_error(group, report, actor)
    try:
        org, slug = github_team_parts(group.github_team)
    except ValidationError as refusal:
        report.message = refusal.messages[0]
        return _record_sync_error(group, report, actor)
    if settings.AIRLOCK_DRY_RUN:
        report.message = "dry-run mode: no GitHub credentials, so the team cannot be read"
        return _record_sync_error(group, report, actor, audit_it=False)
    try:
        logins = GitHubClient().team_member_logins(org, slug)
    except NotFoundError as exc:
        report.message = (
            f"GitHub has no team {org}/{slug}, or Airlock may not read it ({exc.message})"
        )
        return _record_sync_error(group, report, actor)
    except GitHubError as exc:
        report.message = f"GitHub error reading team {org}/{slug}: {exc}"
        return _record_sync_error(group, report, actor)

    wanted = {login.lower(): login for login in logins}
    with transaction.atomic():
        locked = ApproverGroup.objects.select_for_update().get(pk=group.pk)
        current = {m.login.lower(): m for m in locked.members.all()}
        removed = sorted(m.login for key, m in current.items() if key not in wanted)
        added = sorted(login for key, login in wanted.items() if key not in current)
        if removed:
            ApproverGroupMember.objects.filter(
                pk__in=[m.pk for key, m in current.items() if key not in wanted]
            ).delete()
        if added:
            ApproverGroupMember.objects.bulk_create(
                ApproverGroupMember(group=locked, login=login) for login in added
            )
        now = timezone.now()
        ApproverGroup.objects.filter(pk=locked.pk).update(synced_at=now, sync_error="")
        if added or removed or actor is not None or locked.sync_error:
            audit.log_event(
                action="approver_group.synced",
                actor=actor,
                target=locked,
                detail={
                    "github_team": f"{org}/{slug}",
                    "added": added,
                    "removed": removed,
                    "members": sorted(wanted.values(), key=str.lower),
                },
            )
    group.synced_at, group.sync_error = now, ""
    report.synced, report.added, report.removed = True, added, removed
    report.message = f"{org}/{slug}"
    return report


def _record_sync_error(group, report: GroupSyncReport, actor, *, audit_it=True):
    with transaction.atomic():
        ApproverGroup.objects.filter(pk=group.pk).update(sync_error=report.message)
        if audit_it:
            audit.log_event(
                action="approver_group.sync_failed",
                actor=actor,
                target=group,
                reason=report.message,
                detail={"github_team": group.github_team, "members_kept": group.member_logins()},
            )
    group.sync_error = report.message
    return report


def approver_groups_sync_all(*, actor=None) -> list[GroupSyncReport]:
    """Sync every group that names a GitHub team (beat, and manage.py)."""
    groups = ApproverGroup.objects.exclude(github_team="")
    return [approver_group_sync(group=group, actor=actor) for group in groups]
