"""A GitHub Actions job as its verified OIDC ID token describes it: the claims, and whose job it
is (who started the run attempt). The grant check's workflow caller."""

from __future__ import annotations

from dataclasses import dataclass, field

# The largest run id and attempt number a database column holds (bigint, integer): a
# claim beyond them names no run GitHub issued.
RUN_ID_MAX = 2**63 - 1
RUN_ATTEMPT_MAX = 2**31 - 1


def _claim_number(value, maximum: int) -> int | None:
    """A numeric claim ("4242") as a number from 1 to maximum; None for anything else."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 1 <= number <= maximum else None


@dataclass(frozen=True)
class WorkflowRun:
    """One workflow run, as a job's token names it: what a run-bound request keeps."""

    repository: str
    run_id: int
    attempt: int
    workflow_ref: str
    ref: str
    sha: str


@dataclass(frozen=True, eq=False)
class WorkflowJob:
    """A GitHub Actions job, as its verified ID token describes it. Not a user."""

    claims: dict = field(repr=False)
    # Who started this run attempt, (login, GitHub numeric id), as GitHub's REST API
    # answered it for a re-run whose token names only the run's author (GitHub's tokens
    # carry no triggering_actor): integrations.github.attempts.oidc_caller_of_attempt sets it.
    attempt_starter: tuple[str, str] | None = None

    @property
    def repository(self) -> str:
        return self.claims["repository"]

    @property
    def environment(self) -> str:
        return self.claims.get("environment") or ""

    @property
    def actor(self) -> str:
        """Who started the run: on a re-run, still the original author."""
        return self.claims["actor"]

    @property
    def run_attempt(self) -> str:
        return self.claims.get("run_attempt", "")

    @property
    def person(self) -> str:
        """Whose grant this job may use: who started this run attempt. That is the
        `triggering_actor` claim when the token carries one (GitHub's documented claims do
        not), else the attempt_starter GitHub named for a re-run, else `actor` (the grant
        check never lets a re-run get this far without one of the first two: docs/check.md)."""
        if self.claims.get("triggering_actor"):
            return self.claims["triggering_actor"]
        if self.attempt_starter is not None:
            return self.attempt_starter[0]
        return self.claims["actor"]

    @property
    def person_github_id(self) -> str:
        """The GitHub numeric id of that person, "" when the token does not say: actor_id
        belongs to the actor, so to a different triggering actor only triggering_actor_id."""
        if not self.claims.get("triggering_actor") and self.attempt_starter is not None:
            return self.attempt_starter[1]
        triggering = self.claims.get("triggering_actor")
        if triggering and triggering.casefold() != self.actor.casefold():
            return self.claims.get("triggering_actor_id", "")
        return self.claims.get("actor_id", "")

    @property
    def sub(self) -> str:
        return self.claims.get("sub", "")

    @property
    def ref(self) -> str:
        return self.claims.get("ref", "")

    @property
    def job_workflow_ref(self) -> str:
        return self.claims.get("job_workflow_ref", "")

    @property
    def run_id(self) -> int | None:
        """The run's id, None when the token names none (or no number a run id can be)."""
        return _claim_number(self.claims.get("run_id", ""), RUN_ID_MAX)

    @property
    def workflow_run(self) -> WorkflowRun | None:
        """The run this job belongs to, None when the token names no run, or no attempt of
        it (GitHub's tokens always carry both)."""
        run_id = self.run_id
        attempt = _claim_number(self.run_attempt, RUN_ATTEMPT_MAX)
        if run_id is None or attempt is None:
            return None
        return WorkflowRun(
            repository=self.repository,
            run_id=run_id,
            attempt=attempt,
            workflow_ref=self.job_workflow_ref,
            ref=self.ref,
            sha=self.claims.get("sha", "") if isinstance(self.claims.get("sha"), str) else "",
        )

    @property
    def run(self) -> str:
        """The workflow run and attempt, e.g. "1234/1": one job run of a workflow."""
        return f"{self.claims.get('run_id', '')}/{self.claims.get('run_attempt', '')}"

    def get_username(self) -> str:
        # How logs and the audit log name the caller.
        return f"oidc:{self.person}@{self.repository}"

    def __str__(self):
        return self.get_username()
