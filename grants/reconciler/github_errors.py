"""What each of GitHub's error classes means for the grants a pass was about to change."""

from __future__ import annotations

from integrations.github import NotFoundError, PermanentGitHubError, TransientGitHubError

from .context import PassContext
from .plan import Plan
from .transitions import fail_all, record_failed_attempt

# The errors a pass records on its grants. LeaseLost is not one: it stops the whole
# reconcile (runner.reconcile_under_lease), since another worker now holds the target.
RECORDED = (PermanentGitHubError, TransientGitHubError)


def record_github_error(
    ctx: PassContext,
    plan: Plan,
    exc: PermanentGitHubError | TransientGitHubError,
    *,
    refused: str,
    missing: str | None = None,
    on_target: bool = True,
) -> None:
    """A transient error that outlasted the in-call retries: every grant is tried again
    later. A refusal (`refused`), or a 404 (`missing`, when the pass words it apart): the
    grants waiting to be applied fail with GitHub's answer, and the revocations stay
    overdue and visible, since only an admin can tell whether Airlock lost access.
    GitHub's message goes on the target (on_target) or only into the pass's result."""
    if isinstance(exc, TransientGitHubError):
        ctx.result.retrying += record_failed_attempt(plan.to_apply, plan.ending, exc, ctx.now)
    else:
        message = missing if missing is not None and isinstance(exc, NotFoundError) else refused
        fail_all(plan.to_apply, message, ctx.result)
        ctx.result.retrying += record_failed_attempt([], plan.ending, exc, ctx.now)
    if on_target:
        ctx.note_target_error(str(exc))
    else:
        ctx.result.errors.append(str(exc))
