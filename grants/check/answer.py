"""The check itself: the answer for a scope (grant_check), and for a caller with its audit
(grant_check_answer), as GET /api/v1/grants/check runs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from core.errors import NotAllowed
from grants.check.query import CheckedGrant, in_force_grants
from grants.check.restrictions import restriction_label, restriction_refusal, run_refusal
from grants.check.sampled_audit import grant_check_audit, grant_check_refusal_audit
from grants.check.scope import CheckScope, scope_and_caller
from integrations.github.actions import WorkflowJob


@dataclass(frozen=True)
class CheckAnswer:
    allowed: bool
    grant: CheckedGrant | None
    reason: str

    def as_json(self) -> dict:
        """The API's answer (GrantCheckSerializer documents it)."""
        return {
            "allowed": self.allowed,
            "grant": self.grant.as_json() if self.grant else None,
            "reason": self.reason,
        }


def grant_check(*, scope: CheckScope, now: datetime | None = None) -> CheckAnswer:
    """The request in force now for the scope (the one that lasts longest, among those a
    workflow's claims satisfy), in one query."""
    candidates = in_force_grants(scope=scope, now=now or timezone.now())
    what = f"{scope.access} access" if scope.access else "access"
    if scope.secret:
        what += f" to the secret {scope.secret}"
    target = f"{scope.repository} environment '{scope.environment}'"
    if not candidates:
        return CheckAnswer(
            allowed=False, grant=None, reason=f"{scope.login} holds no {what} to {target} now."
        )
    # Held by the login's portal user, or by the one the GitHub id names (a rename): the
    # login's grants are no one's to use when that user signed in with another account.
    holders = [c for c in candidates if not c.other_github_account]
    if not holders:
        return CheckAnswer(
            allowed=False,
            grant=None,
            reason=(
                f"This run attempt was started by the GitHub account id {scope.github_id} "
                f"named {scope.login}, not the one the portal knows as {scope.login} (who "
                f"signed in with GitHub): a renamed or re-registered GitHub login does not "
                f"take over another person's grant."
            ),
        )
    candidates = holders
    found, refusals = None, []
    for candidate in candidates:
        # A person is told about workflow restrictions, but a run's grant serves only it.
        refusal = (
            restriction_refusal(
                candidate,
                job_workflow_ref=scope.job_workflow_ref,
                ref=scope.ref,
                run_id=scope.run_id,
            )
            if scope.is_workflow
            else run_refusal(candidate, run_id=None)
        )
        if not refusal:
            found = candidate
            break
        refusals.append(f"request #{candidate.request}: {refusal}")
    if found is None:
        return CheckAnswer(
            allowed=False,
            grant=None,
            reason=(
                f"{scope.login} holds {what} to {target}, but not for this "
                f"{'workflow' if scope.is_workflow else 'caller'}: "
                f"{'; '.join(refusals)}."
            ),
        )
    reason = (
        f"{found.user} holds {found.access} access to {target} until "
        f"{found.expires_at.isoformat()} (request #{found.request})."
    )
    restricted = restriction_label(found)
    if restricted:
        reason = reason[:-1] + f", restricted to {restricted}."
    return CheckAnswer(allowed=True, grant=found, reason=reason)


def grant_check_answer(
    *,
    caller,
    repository: str = "",
    environment: str = "",
    user: str = "",
    access: str = "",
    secret: str = "",
) -> CheckAnswer:
    """The check as the API runs it: the caller's scope, the answer, and its audit.

    Raises NotAllowed (after auditing it, sampled) when the caller may not ask this, and
    ValidationError when a person leaves out the target.
    """
    try:
        scope, caller = scope_and_caller(
            caller=caller,
            repository=repository,
            environment=environment,
            user=user,
            access=access,
            secret=secret,
        )
    except NotAllowed as refusal:
        if isinstance(caller, WorkflowJob):
            repository = repository or caller.repository
            environment = environment or caller.environment
        grant_check_refusal_audit(
            caller=caller, repository=repository, environment=environment, reason=str(refusal)
        )
        raise
    answer = grant_check(scope=scope)
    if answer.allowed:
        grant_check_audit(caller=caller, scope=scope, answer=answer)
    else:
        grant_check_refusal_audit(
            caller=caller,
            repository=scope.repository,
            environment=scope.environment,
            reason=answer.reason,
        )
    return answer


# --- audit ------------------------------------------------------------------------------------
