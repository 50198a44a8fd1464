"""Who the caller is and what they may ask about: a workflow's claims (its run, and for a
re-run who started the attempt) or a person's own grants."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from core.errors import NotAllowed
from core.names import NameRefused, canonical_environment, canonical_repository
from grants.selectors import user_is_grants_admin
from integrations.github.actions import WorkflowJob
from integrations.github.attempts import oidc_caller_of_attempt


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
    # The GitHub numeric id the workflow's token gives the person; None when it gives none
    # or the caller is a person.
    github_id: str | None = None
    # The asking workflow's run id; None when the caller is a person. A run-bound grant
    # serves only its own run.
    run_id: int | None = None

    @property
    def is_workflow(self) -> bool:
        return self.job_workflow_ref is not None


def _same(a: str, b: str) -> bool:
    # Logins: GitHub's are ASCII, compared without case.
    return a.casefold() == b.casefold()


def _claimed_target(caller: WorkflowJob) -> tuple[str, str]:
    """The token's repository and environment claims in canonical form ("" for no
    environment); NotAllowed when a claim names something outside GitHub's rules."""
    try:
        repository = canonical_repository(caller.repository)
        environment = canonical_environment(caller.environment) if caller.environment else ""
    except NameRefused as refusal:
        raise NotAllowed(
            f"This job's OIDC token names a target outside GitHub's naming rules: "
            f"{' '.join(refusal.messages)}"
        ) from None
    return repository, environment


def _canonical_parameters(repository: str, environment: str) -> tuple[str, str, dict]:
    """The parameters' names in canonical form ("" when not given), and the errors of
    those outside GitHub's rules."""
    names, errors = {}, {}
    for field, rule, value in (
        ("repository", canonical_repository, repository),
        ("environment", canonical_environment, environment),
    ):
        try:
            names[field] = rule(value) if value else ""
        except NameRefused as refusal:
            names[field] = ""
            errors.update(refusal.message_dict)
    return names["repository"], names["environment"], errors


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
    scope, _ = scope_and_caller(
        caller=caller,
        repository=repository,
        environment=environment,
        user=user,
        access=access,
        secret=secret,
    )
    return scope


def scope_and_caller(
    *, caller, repository: str, environment: str, user: str, access: str, secret: str
) -> tuple[CheckScope, object]:
    """grant_check_scope, and the caller it answers for: an OIDC caller knowing who started
    its run attempt (oidc_caller_of_attempt), so that the audit names that person."""
    # A name outside the rules is a 400 naming the field (the API's parameters arrive
    # canonical already: GrantCheckQuerySerializer).
    repository, environment, errors = _canonical_parameters(repository, environment)
    if isinstance(caller, WorkflowJob):
        if errors:
            raise ValidationError(errors)
        claimed_repository, claimed_environment = _claimed_target(caller)
        if repository and repository != claimed_repository:
            raise NotAllowed(
                f"This job's OIDC token is for the repository {caller.repository}; it cannot "
                f"ask about {repository}."
            )
        if not claimed_environment:
            raise NotAllowed(
                "This job's OIDC token carries no environment claim: only a job that runs in "
                "a GitHub environment (jobs.<job_id>.environment) can check a grant for it."
            )
        if environment and environment != claimed_environment:
            raise NotAllowed(
                f"This job runs in the environment '{caller.environment}'; its OIDC token "
                f"cannot ask about '{environment}'."
            )
        caller = oidc_caller_of_attempt(caller)  # after the refusals that need no GitHub
        if user and not _same(user, caller.person):
            raise NotAllowed(
                f"This run attempt was started by {caller.person}; its OIDC token cannot ask "
                f"about {user}."
            )
        scope = CheckScope(
            repository=claimed_repository,
            environment=claimed_environment,
            login=caller.person,
            access=access,
            secret=secret,
            job_workflow_ref=caller.job_workflow_ref,
            ref=caller.ref,
            github_id=caller.person_github_id or None,
            run_id=caller.run_id,
        )
        return scope, caller

    for name, value in (("repository", repository), ("environment", environment)):
        if not value and name not in errors:
            errors[name] = "Required: name the target to check."
    if errors:
        raise ValidationError(errors)
    login = user or caller.get_username()
    if not _same(login, caller.get_username()) and not user_is_grants_admin(user=caller):
        raise NotAllowed("You may check only your own grants; platform admins may check anyone's.")
    scope = CheckScope(
        repository=repository, environment=environment, login=login, access=access, secret=secret
    )
    return scope, caller
