"""Filing a request, by a person or by a workflow for its own run: the policy's checks, the
one-pending, one-per-run and one-break-glass rules."""

from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed
from core.names import NameRefused, canonical_target
from integrations.github.actions import WorkflowJob, WorkflowRun
from requests_app import notifications
from requests_app.models import AccessKind, AccessRequest
from requests_app.policies import policy_for_target
from requests_app.selectors import (
    approver_identity,
    break_glass_outstanding,
    user_for_github_actor,
)
from requests_app.services.decisions import mark_approved
from requests_app.services.transitions import announce_change
from requests_app.services.validation import validate_restrictions, validate_target

Status = AccessRequest.Status

MAX_SCHEDULE_AHEAD = timedelta(days=30)


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
    access_request, _ = _file(
        requester=requester,
        repository=repository,
        environment=environment,
        access=access,
        reason=reason,
        duration_minutes=duration_minutes,
        secret_name=secret_name,
        starts_at=starts_at,
        break_glass=break_glass,
        workflow_ref_pattern=workflow_ref_pattern,
        ref_pattern=ref_pattern,
    )
    return access_request


def access_request_file_for_run(
    *,
    job: WorkflowJob,
    access: str,
    reason: str,
    duration_minutes: int | None = None,
    secret_name: str | None = None,
    repository: str = "",
    environment: str = "",
) -> tuple[AccessRequest, bool]:
    """A workflow job files a request for its own run: (the request, whether it is new).

    The target is the job's verified claims (repository and environment; the arguments
    may only repeat them), the requester the portal user of who started the run attempt
    (`job` knows it: integrations.github.attempts), and the request is bound to the run.
    A second filing from the same run for the same target returns the open request.
    NotAllowed (403) for a job that may not file, ValidationError (400) for the rest.
    """
    run = job.workflow_run
    if run is None:
        raise NotAllowed(
            "This job's OIDC token names no workflow run (run_id, run_attempt): only a "
            "workflow run can file a request for itself."
        )
    for claim, value, kept_in in (
        ("job_workflow_ref", run.workflow_ref, "run_workflow_ref"),
        ("ref", run.ref, "run_ref"),
        ("sha", run.sha, "run_sha"),
    ):
        limit = AccessRequest._meta.get_field(kept_in).max_length
        if len(value) > limit:
            raise NotAllowed(
                f"This job's OIDC token has a {claim} claim of {len(value)} characters, and "
                f"a request keeps at most {limit}: this run cannot file one. Ask in the "
                "portal instead."
            )
    if not job.environment:
        raise NotAllowed(
            "This job's OIDC token carries no environment claim: a workflow files requests "
            "for the environment its job runs in (jobs.<job_id>.environment)."
        )
    try:
        claimed_repository, claimed_environment = canonical_target(
            repository=job.repository, environment=job.environment
        )
    except NameRefused as refusal:
        raise NotAllowed(
            f"This job's OIDC token names a target outside GitHub's naming rules: "
            f"{' '.join(refusal.messages)}"
        ) from None
    if repository and repository != claimed_repository:
        raise NotAllowed(
            f"This job's OIDC token is for the repository {job.repository}; it cannot file a "
            f"request for {repository}."
        )
    if environment and environment != claimed_environment:
        raise NotAllowed(
            f"This job runs in the environment '{job.environment}'; it cannot file a "
            f"request for '{environment}'."
        )
    match = user_for_github_actor(login=job.person, github_id=job.person_github_id)
    if match.user is None:
        if match.no_account:
            what_to_do = (
                f"A workflow files requests as the person who started the run: {job.person} "
                f"signs in to Airlock once at {settings.AIRLOCK_BASE_URL}/accounts/login/ "
                "with GitHub, then the job can ask again."
            )
        else:
            what_to_do = (
                "A workflow files requests as the person who started the run; ask a "
                "platform admin to look into that account."
            )
        raise NotAllowed(f"{match.why_not}. {what_to_do}")
    requester = match.user
    return _file(
        requester=requester,
        repository=claimed_repository,
        environment=claimed_environment,
        access=access,
        reason=reason,
        duration_minutes=duration_minutes,
        secret_name=secret_name,
        run=replace(run, repository=claimed_repository),
        filed_by=job.get_username(),
    )


def _file(
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
    run: WorkflowRun | None = None,
    filed_by: str = "",
) -> tuple[AccessRequest, bool]:
    reason = reason.strip()
    workflow_ref_pattern = (workflow_ref_pattern or "").strip()
    ref_pattern = (ref_pattern or "").strip()
    # From here on the target is canonical: routing, the duplicate check and the stored
    # request all see the one name GitHub's rules make of it.
    repository, environment, errors = validate_target(
        repository=repository, environment=environment, access=access
    )
    errors.update(
        validate_restrictions(workflow_ref_pattern=workflow_ref_pattern, ref_pattern=ref_pattern)
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
    if run is not None and not policy.workflow_requests:
        raise NotAllowed(
            f"Policy '{policy.name}' covers {access} access to {repository} environment "
            f"'{environment}', but does not let workflows file requests (workflow_requests "
            "is off). Ask a platform admin to turn it on, or ask in the portal."
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
        elif secret.kind == secret.Kind.GITHUB_TOKEN and not secret.permissions:
            errors["secret"] = (
                f"The GitHub token secret {secret.name} names no permissions yet; ask an admin."
            )
    elif secret_name:
        errors["secret"] = "Only secret access takes a secret."
    if access == AccessKind.TOKEN and not policy.token_permissions:
        errors["access"] = (
            f"Policy '{policy.name}' offers token access but names no token permissions; "
            "ask a platform admin to set its token_permissions."
        )

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
        same_target = AccessRequest.objects.filter(
            requester=requester,
            repository=repository,
            environment=environment,
            access=access,
            secret=secret,
            run_id=None if run is None else run.run_id,
        )
        if run is not None:
            # One run files one request per target: asking again returns it.
            already = same_target.filter(status__in=AccessRequest.OPEN_STATUSES).first()
            if already is not None:
                _follow_attempt(already, run, requester)
                return already, False
        duplicate = same_target.filter(status=Status.PENDING).first()
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
            # What was approved stays what its tokens may do, whatever the policy (or the
            # GitHub token secret's definition) says later.
            token_permissions=_approved_token_permissions(access, policy, secret),
            **_run_fields(run),
        )
        detail = _request_detail(access_request)
        if filed_by:
            detail["filed_by"] = filed_by
        audit.log_event(
            action=AuditAction.REQUEST_CREATED,
            actor=requester,
            target=access_request,
            reason=reason,
            detail=detail,
        )
        if break_glass:
            mark_approved(access_request, actor=requester, action=AuditAction.REQUEST_BREAK_GLASS)
        elif access_request.approvals_required == 0:
            mark_approved(access_request, actor=None, action=AuditAction.REQUEST_AUTO_APPROVED)
        if break_glass:
            notifications.notify("break_glass_used", request_id=access_request.pk)
        elif access_request.status == Status.PENDING:
            notifications.notify("request_routed", request_id=access_request.pk)
            announce_change(access_request.pk)
    return access_request, True


def _approved_token_permissions(access: str, policy, secret) -> dict:
    """The permissions the request's minted tokens may carry: the policy's for token
    access, the definition's for a GitHub token secret; none for the other kinds."""
    if access == AccessKind.TOKEN:
        return dict(policy.token_permissions)
    if secret is not None and secret.kind == secret.Kind.GITHUB_TOKEN:
        return dict(secret.permissions)
    return {}


def _follow_attempt(access_request: AccessRequest, run: WorkflowRun, requester) -> None:
    """A re-run attempt asks again while an earlier attempt's request is still open (its
    completion was never delivered): the request now belongs to the later attempt, so a
    late completion of the earlier one does not end the access the re-run uses."""
    earlier = access_request.run_attempt
    if earlier is not None and earlier >= run.attempt:
        return
    AccessRequest.objects.filter(pk=access_request.pk).update(run_attempt=run.attempt)
    access_request.run_attempt = run.attempt
    audit.log_event(
        action=AuditAction.REQUEST_RUN_ATTEMPT_FOLLOWED,
        actor=requester,
        target=access_request,
        detail={"run_id": run.run_id, "from_attempt": earlier, "to_attempt": run.attempt},
    )


def _run_fields(run: WorkflowRun | None) -> dict:
    if run is None:
        return {}
    return {
        "run_id": run.run_id,
        "run_attempt": run.attempt,
        "run_workflow_ref": run.workflow_ref,
        "run_ref": run.ref,
        "run_sha": run.sha,
    }


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
            for name in ("workflow_ref_pattern", "ref_pattern", "token_permissions")
            if getattr(access_request, name)
        },
        **({"run": run_detail(access_request)} if access_request.is_run_bound else {}),
    }


def run_detail(access_request: AccessRequest) -> dict:
    """The run a request is bound to, as the audit log and the API name it."""
    return {
        "id": access_request.run_id,
        "attempt": access_request.run_attempt,
        "workflow_ref": access_request.run_workflow_ref,
        "ref": access_request.run_ref,
        "sha": access_request.run_sha,
        "url": access_request.run_url,
    }


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)

