"""The check's audit, aggregated to stay cheap: an allowed answer once per grant and run
attempt (or person and hour), refusals sampled once per caller, target and minute."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import cache
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.names import ascii_lower
from grants.check.marks import check_mark
from grants.check.scope import CheckScope
from grants.models import Grant
from integrations.github.actions import WorkflowJob
from requests_app.models import AccessRequest

if TYPE_CHECKING:
    from grants.check.answer import CheckAnswer

ALLOWED_MARK_MAX_SECONDS = 24 * 3600
PERSON_ALLOWED_MARK_SECONDS = 3600
REFUSED_SAMPLE_SECONDS = 60


def _actor(caller) -> dict:
    # A workflow is no portal user: the audit names it by its label, with no user id.
    if isinstance(caller, WorkflowJob):
        return {"actor": None, "actor_label": caller.get_username()}
    return {"actor": caller}


def _caller_detail(caller) -> dict:
    if isinstance(caller, WorkflowJob):
        claims = caller.claims
        starter = caller.attempt_starter  # (login, id) GitHub named for a re-run, if asked
        return {
            "via": "oidc",
            "sub": caller.sub,
            "actor": caller.actor,
            "actor_id": claims.get("actor_id"),
            "triggering_actor": claims.get("triggering_actor") or (starter and starter[0]),
            "triggering_actor_id": claims.get("triggering_actor_id") or (starter and starter[1]),
            "repository": caller.repository,
            "environment": caller.environment,
            "run_id": claims.get("run_id"),
            "run_attempt": claims.get("run_attempt"),
            "job_workflow_ref": caller.job_workflow_ref,
            "ref": caller.ref,
        }
    return {"via": "user", "user": caller.get_username()}


def grant_check_audit(*, caller, scope: CheckScope, answer: CheckAnswer) -> bool:
    """Record an allowed answer (aggregated: docs/check.md); True if recorded."""
    checked = answer.grant
    now = timezone.now()
    if isinstance(caller, WorkflowJob):
        mark = check_mark("allowed", checked.request, caller.repository, caller.run)
        seconds = (checked.expires_at - now).total_seconds()
        ttl = int(min(max(seconds, 60), ALLOWED_MARK_MAX_SECONDS))
    else:
        hour = int(now.timestamp() // PERSON_ALLOWED_MARK_SECONDS)
        mark = check_mark("allowed", checked.request, caller.get_username(), hour)
        ttl = PERSON_ALLOWED_MARK_SECONDS
    if not cache.add(mark, 1, ttl):
        return False
    try:
        if checked.grant is not None:
            target = Grant.objects.select_related("secret", "target").get(pk=checked.grant)
        else:
            target = AccessRequest.objects.get(pk=checked.request)
        audit.log_event(
            action=AuditAction.GRANT_CHECKED,
            **_actor(caller),
            target=target,
            reason=answer.reason,
            detail={
                "allowed": True,
                "request": checked.request,
                "login": scope.login,
                "access": scope.access or None,
                "expires_at": checked.expires_at,
                **_caller_detail(caller),
            },
        )
    except Exception:
        cache.delete(mark)  # so the next check records it
        raise
    return True


def grant_check_refusal_audit(*, caller, repository: str, environment: str, reason: str) -> bool:
    """Record a "no" (or a refusal to answer), sampled once per caller, target and minute."""
    minute = int(timezone.now().timestamp() // REFUSED_SAMPLE_SECONDS)
    who = caller.get_username()
    mark = check_mark("refused", who, ascii_lower(repository), ascii_lower(environment), minute)
    if not cache.add(mark, 1, REFUSED_SAMPLE_SECONDS * 2):
        return False
    try:
        audit.log_event(
            action=AuditAction.GRANT_CHECK_REFUSED,
            **_actor(caller),
            target_type="target",
            target_id=f"{repository}:{environment}"[:255],
            target_repr=f"{repository}:{environment}",
            reason=reason,
            detail={
                "allowed": False,
                "sampled_per_seconds": REFUSED_SAMPLE_SECONDS,
                **_caller_detail(caller),
            },
        )
    except Exception:
        cache.delete(mark)
        raise
    return True
