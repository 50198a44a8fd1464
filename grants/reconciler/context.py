"""What one reconcile pass works with (PassContext), and what a reconcile reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from grants.models import OrgSecretTarget, Target
from integrations.github import DryRunGitHub, GitHubClient

from .plan import Plan, plan_grants


@dataclass
class ReconcileResult:
    target: str
    busy: bool = False
    # A pass that started after the reconcile was asked for has already done its work.
    skipped: bool = False
    github_reads: int = 0
    # Of the reads, those GitHub answered 304 Not Modified: free against the rate limit.
    github_unchanged: int = 0
    github_writes: int = 0
    applied: list[int] = field(default_factory=list)
    revoked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    drift: bool = False
    # What GitHub's low budget held back (integrations/github/budget.py): "drift check",
    # and the grants left pending.
    deferred: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.busy:
            return f"{self.target}: busy (another worker holds it; it will pick this up)"
        if self.skipped:
            return f"{self.target}: already reconciled since this was asked for"
        parts = [f"{len(getattr(self, n))} {n}" for n in ("applied", "revoked", "failed")]
        reads = f"{self.github_reads} read(s)"
        if self.github_unchanged:
            reads += f" ({self.github_unchanged} unchanged, free)"
        parts.append(f"{reads}, {self.github_writes} write(s)")
        if self.retrying:
            parts.append(f"{len(self.retrying)} to retry")
        if self.drift:
            parts.append("drift repaired")
        if self.deferred:
            parts.append("deferred (GitHub's budget is low): " + ", ".join(self.deferred))
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return f"{self.target}: " + ", ".join(parts)


@dataclass(frozen=True)
class PassContext:
    """One pass over one target: the client that reaches GitHub for it (renewing the lease),
    the result it adds to, the time its plan is made at, whether it is a drift check, and
    what earlier passes under the same lease left for it (cache), and whether grants wait
    for GitHub's budget (defer_grants: pending grants are planned as deferred)."""

    target: Target | OrgSecretTarget
    gh: GitHubClient | DryRunGitHub
    result: ReconcileResult
    now: datetime
    check: bool = False
    cache: dict = field(default_factory=dict)
    defer_grants: bool = False

    def plan(self, grants) -> Plan:
        """The grants sorted by what this pass must do, at its time, under its budget."""
        plan = plan_grants(grants, self.now, defer_grants=self.defer_grants)
        if plan.deferred:
            self.result.deferred.append(
                "grant(s) " + ", ".join(f"#{g.pk}" for g in plan.deferred)
            )
        return plan

    @property
    def where(self) -> str:
        return f"{self.target.repository} environment '{self.target.environment}'"

    def note_target_error(self, message: str, *, in_result: bool = True) -> None:
        """Keep GitHub's message on the target (the admin shows it), and in this pass's result."""
        type(self.target).objects.filter(pk=self.target.pk).update(last_error=message)
        if in_result:
            self.result.errors.append(message)
