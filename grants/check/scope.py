"""Who the caller is and what they may ask about: a workflow's claims or a person's own
grants, and, for a re-run, who started the run attempt (asked of GitHub once per attempt)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from core.errors import NotAllowed
from core.names import NameRefused, ascii_lower, canonical_environment, canonical_repository
from grants.check.marks import check_mark
from grants.selectors import user_is_grants_admin
from integrations.github import GitHubClient, GitHubError, RetryPolicy, TransientGitHubError
from integrations.github.actions import WorkflowJob

# Who started a run attempt never changes; remembered this long, so that a job checking
# before every step costs GitHub one call per re-run attempt.
ATTEMPT_STARTER_SECONDS = 7 * 24 * 3600


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


def oidc_caller_of_attempt(caller: WorkflowJob) -> WorkflowJob:
    """The caller, knowing who started its run attempt (whose grant it may use).

    A token's triggering_actor claim says it; so does the actor of a first attempt. For a
    re-run whose token names only the run's author (GitHub's tokens never carry
    triggering_actor) GitHub's REST API is asked, once per attempt: the answer is kept in
    the cache. NotAllowed when GitHub cannot say: a re-run never falls back to `actor`.
    """
    if caller.claims.get("triggering_actor") or caller.attempt_starter is not None:
        return caller
    if caller.run_attempt == "1":
        return caller  # the hot path: no cache, no GitHub
    run_id, attempt = caller.claims.get("run_id", ""), caller.run_attempt
    if not (run_id.isascii() and run_id.isdigit() and attempt.isascii() and attempt.isdigit()):
        raise _attempt_starter_unknown(
            "the OIDC token's run_id and run_attempt claims name no run attempt"
        )
    key = check_mark("attempt-starter", ascii_lower(caller.repository), int(run_id), int(attempt))
    starter = cache.get(key)
    if starter is None:
        # Only an answer is kept: a failure (an outage, missing permission) is asked again.
        starter = _attempt_starter_from_github(caller.repository, int(run_id), int(attempt))
        cache.set(key, starter, ATTEMPT_STARTER_SECONDS)
    return replace(caller, attempt_starter=tuple(starter))


def _attempt_starter_from_github(repository: str, run_id: int, attempt: int) -> tuple[str, str]:
    if settings.AIRLOCK_DRY_RUN:
        raise _attempt_starter_unknown(
            "Airlock runs in dry-run mode, without GitHub credentials to ask GitHub"
        )
    client = GitHubClient(retry=RetryPolicy.interactive())
    try:
        login, account_id = client.run_attempt_triggering_actor(repository, run_id, attempt)
    except TransientGitHubError as error:
        raise _attempt_starter_unknown(f"{error}; try again shortly") from None
    except GitHubError as error:
        raise _attempt_starter_unknown(
            f"{error}; Airlock's GitHub credentials need the Actions read permission on the "
            f"repository"
        ) from None
    return login, str(account_id)


def _attempt_starter_unknown(why: str) -> NotAllowed:
    return NotAllowed(
        f"Airlock cannot tell who started this re-run: {why}. A re-run may use only the grant "
        f"of the person who started it, so it is refused."
    )


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
