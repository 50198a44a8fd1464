"""The grant check: does this person hold access to this target now?

Workflows ask it before a sensitive step (GET /api/v1/grants/check, and the Action in
action.yml). The answer comes from time alone: a request counts while its status is
active *and* its expires_at is in the future, so a grant whose end has passed says no at
once, even before the sweep has revoked it on GitHub. One query finds the request (with
its requester, secret and grant joined), a second its approvals.

Who may ask about what:
- A workflow (OIDC token): repository, environment and actor come from the verified
  claims. Query parameters may only narrow them (repeat them, case-insensitively); a
  different value is refused, and so is a token without an environment claim, because
  such a job does not run in a protected environment and so proves nothing about one.
- A person (API token or session): repository and environment must be given; user
  defaults to the caller. People may check their own grants; staff may check anyone's.

Workflow and ref restrictions. A request may restrict its grant to workflows whose
`job_workflow_ref` claim matches a glob, and/or whose `ref` claim matches another
(AccessRequest.workflow_ref_pattern / ref_pattern; fnmatchcase, in full, so "*" also
crosses "/"). How each caller is answered:
- A workflow (OIDC token) is allowed only by a grant whose restrictions its verified claims
  match; a grant it does not match is passed over for the next one in force, and when none
  matches the answer is "not allowed", with the reason naming the restriction and the claim.
  Restrictions are the point of the feature: the job asking is the one that must qualify.
- A person (API token or session) is not a workflow: there is no claim to match. They are
  answered "allowed" for a restricted grant, and the answer reports the restriction (in the
  reason and in the grant's workflow_ref_pattern / ref_pattern), so someone checking their
  own grant sees both that it is in force and which workflows can use it.

Audit, aggregated to stay cheap (the audit log is one hash chain: every event takes its
lock, so one event per call would serialise every workflow on it):
- An answer "allowed" is recorded once per grant and workflow run attempt (OIDC), or once
  per grant and person per hour (API token or session), as "grant.checked".
- Answers "not allowed", and refusals to answer, are sampled: the first per caller and
  target in each minute is recorded as "grant.check_refused"; the rest of that minute's
  are not.
The "already recorded" marks live in Django's cache (cache.add is atomic in a shared
cache). With the default per-process cache each web process records its own first
answer, so a run may be recorded once per process: more, never fewer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.utils import timezone

import audit
from portal.authentication import OidcPrincipal
from requests_app.exceptions import NotAllowed
from requests_app.models import AccessRequest, Approval

ALLOWED_MARK_MAX_SECONDS = 24 * 3600
PERSON_ALLOWED_MARK_SECONDS = 3600
REFUSED_SAMPLE_SECONDS = 60


@dataclass(frozen=True)
class CheckScope:
    """What a caller asks about, after the caller's limits are applied."""

    repository: str
    environment: str
    login: str
    access: str = ""
    secret: str = ""
    # The asking workflow's claims, which a restricted grant must match; None when the
    # caller is a person (not a workflow), who is told about restrictions instead.
    job_workflow_ref: str | None = None
    ref: str | None = None

    @property
    def is_workflow(self) -> bool:
        return self.job_workflow_ref is not None


@dataclass(frozen=True)
class CheckAnswer:
    allowed: bool
    access_request: AccessRequest | None
    reason: str


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def restriction_refusal(
    access_request: AccessRequest, *, job_workflow_ref: str | None, ref: str | None
) -> str:
    """Why a workflow with these claims may not use this request's grant; "" if it may.

    None for a claim means "not known" (the deployment webhook names no workflow, for
    instance): a grant restricted on that claim is then refused, never assumed to match.
    """
    pattern = access_request.workflow_ref_pattern
    if pattern:
        if job_workflow_ref is None:
            return f"only workflows matching '{pattern}' may use it, and the workflow is unknown"
        if not fnmatchcase(job_workflow_ref, pattern):
            return (
                f"only workflows matching '{pattern}' may use it; this one is "
                f"'{job_workflow_ref or '(none)'}'"
            )
    pattern = access_request.ref_pattern
    if pattern:
        if ref is None:
            return f"only refs matching '{pattern}' may use it, and the ref is unknown"
        if not fnmatchcase(ref, pattern):
            return f"only refs matching '{pattern}' may use it; this one is '{ref or '(none)'}'"
    return ""


def restriction_label(access_request: AccessRequest) -> str:
    """The request's restrictions in words; "" when it has none."""
    parts = []
    if access_request.workflow_ref_pattern:
        parts.append(f"workflows matching '{access_request.workflow_ref_pattern}'")
    if access_request.ref_pattern:
        parts.append(f"refs matching '{access_request.ref_pattern}'")
    return " and ".join(parts)


def grant_check_scope(
    *,
    caller,
    repository: str = "",
    environment: str = "",
    user: str = "",
    access: str = "",
    secret: str = "",
) -> CheckScope:
    """The scope a caller may ask about; NotAllowed (403) or ValidationError (400) if none."""
    if isinstance(caller, OidcPrincipal):
        if repository and not _same(repository, caller.repository):
            raise NotAllowed(
                f"This job's OIDC token is for the repository {caller.repository}; it cannot "
                f"ask about {repository}."
            )
        if not caller.environment:
            raise NotAllowed(
                "This job's OIDC token carries no environment claim: only a job that runs in "
                "a GitHub environment (jobs.<job_id>.environment) can check a grant for it."
            )
        if environment and not _same(environment, caller.environment):
            raise NotAllowed(
                f"This job runs in the environment '{caller.environment}'; its OIDC token "
                f"cannot ask about '{environment}'."
            )
        if user and not _same(user, caller.actor):
            raise NotAllowed(
                f"This job was started by {caller.actor}; its OIDC token cannot ask about "
                f"{user}."
            )
        return CheckScope(
            repository=caller.repository,
            environment=caller.environment,
            login=caller.actor,
            access=access,
            secret=secret,
            job_workflow_ref=caller.job_workflow_ref,
            ref=caller.ref,
        )

    missing = {
        name: "Required: name the target to check."
        for name, value in (("repository", repository), ("environment", environment))
        if not value
    }
    if missing:
        raise ValidationError(missing)
    login = user or caller.get_username()
    if not _same(login, caller.get_username()) and not caller.is_staff:
        raise NotAllowed("You may check only your own grants; staff may check anyone's.")
    return CheckScope(
        repository=repository, environment=environment, login=login, access=access, secret=secret
    )


# Grants in force for one person and target at once: a handful at most (overlapping
# grants, an extension). The bound keeps a pathological case to one bounded query.
MAX_CANDIDATES = 50


def grant_check(*, scope: CheckScope, now: datetime | None = None) -> CheckAnswer:
    """The request in force now for the scope (the one that lasts longest, among those a
    workflow's claims satisfy), in two queries."""
    now = now or timezone.now()
    in_force = AccessRequest.objects.filter(
        status=AccessRequest.Status.ACTIVE,
        expires_at__gt=now,
        repository__iexact=scope.repository,
        environment__iexact=scope.environment,
        requester__username__iexact=scope.login,
    )
    if scope.access:
        in_force = in_force.filter(access=scope.access)
    if scope.secret:
        in_force = in_force.filter(secret__name__iexact=scope.secret)
    candidates = list(
        in_force.select_related("requester", "secret", "grant")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("approver"))
        )
        .order_by("-expires_at", "-pk")[:MAX_CANDIDATES]
    )
    what = f"{scope.access} access" if scope.access else "access"
    if scope.secret:
        what += f" to the secret {scope.secret}"
    target = f"{scope.repository} environment '{scope.environment}'"
    if not candidates:
        return CheckAnswer(
            allowed=False,
            access_request=None,
            reason=f"{scope.login} holds no {what} to {target} now.",
        )
    found, refusals = None, []
    for candidate in candidates:
        refusal = (
            restriction_refusal(candidate, job_workflow_ref=scope.job_workflow_ref, ref=scope.ref)
            if scope.is_workflow
            else ""
        )
        if not refusal:
            found = candidate
            break
        refusals.append(f"request #{candidate.pk}: {refusal}")
    if found is None:
        return CheckAnswer(
            allowed=False,
            access_request=None,
            reason=(
                f"{scope.login} holds {what} to {target}, but not for this workflow: "
                f"{'; '.join(refusals)}."
            ),
        )
    reason = (
        f"{found.requester.username} holds {found.access} access to {target} until "
        f"{found.expires_at.isoformat()} (request #{found.pk})."
    )
    restricted = restriction_label(found)
    if restricted:
        reason = reason[:-1] + f", restricted to {restricted}."
    return CheckAnswer(allowed=True, access_request=found, reason=reason)


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
        scope = grant_check_scope(
            caller=caller,
            repository=repository,
            environment=environment,
            user=user,
            access=access,
            secret=secret,
        )
    except NotAllowed as refusal:
        if isinstance(caller, OidcPrincipal):
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


def _mark(*parts) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return f"airlock:grant-check:{digest}"


def _caller_detail(caller) -> dict:
    if isinstance(caller, OidcPrincipal):
        claims = caller.claims
        return {
            "via": "oidc",
            "sub": caller.sub,
            "actor": caller.actor,
            "repository": caller.repository,
            "environment": caller.environment,
            "run_id": claims.get("run_id"),
            "run_attempt": claims.get("run_attempt"),
            "job_workflow_ref": caller.job_workflow_ref,
            "ref": caller.ref,
        }
    return {"via": "user", "user": caller.get_username()}


def grant_check_audit(*, caller, scope: CheckScope, answer: CheckAnswer) -> bool:
    """Record an allowed answer (aggregated, see the module docstring); True if recorded."""
    access_request = answer.access_request
    now = timezone.now()
    if isinstance(caller, OidcPrincipal):
        mark = _mark("allowed", access_request.pk, caller.repository, caller.run)
        seconds = (access_request.expires_at - now).total_seconds()
        ttl = int(min(max(seconds, 60), ALLOWED_MARK_MAX_SECONDS))
    else:
        hour = int(now.timestamp() // PERSON_ALLOWED_MARK_SECONDS)
        mark = _mark("allowed", access_request.pk, caller.get_username(), hour)
        ttl = PERSON_ALLOWED_MARK_SECONDS
    if not cache.add(mark, 1, ttl):
        return False
    grant = getattr(access_request, "grant", None)
    try:
        audit.log_event(
            action="grant.checked",
            actor=caller,
            target=grant or access_request,
            reason=answer.reason,
            detail={
                "allowed": True,
                "request": access_request.pk,
                "login": scope.login,
                "access": scope.access or None,
                "expires_at": access_request.expires_at,
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
    mark = _mark("refused", who, repository.casefold(), environment.casefold(), minute)
    if not cache.add(mark, 1, REFUSED_SAMPLE_SECONDS * 2):
        return False
    try:
        audit.log_event(
            action="grant.check_refused",
            actor=caller,
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
