"""What the live scenarios share: the harness they run with, waiting for grants to end, and
the invariants every run must keep (check_invariants, also all the CI versions assert)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db.models import Count

from audit.models import AuditEvent
from audit.verification import verify_chain
from benchmarks.stack import LiveStack, RedisServer, wait_until
from benchmarks.timeline import Timeline
from grants import reconciler
from grants.models import Grant
from requests_app.models import AccessRequest

State = Grant.State
TERMINAL = (State.REVOKED, State.FAILED)


@dataclass
class Harness:
    """What a scenario runs with: the local GitHub (in this process), the environment of
    Airlock's processes, where their logs go, and the broker (a private Redis that may be
    restarted, or None when the broker is someone else's)."""

    github: object  # tests.github_fake.server.GitHubServer
    env: dict
    log_dir: Path
    sweep_seconds: int
    redis: RedisServer | None = None
    say: Callable[[str], None] = print

    def start_stack(self, name: str, **extra_env) -> LiveStack:
        env = dict(self.env, AIRLOCK_SWEEP_SECONDS=str(self.sweep_seconds))
        env.update({k: str(v) for k, v in extra_env.items()})
        return LiveStack(env, self.log_dir, name=name).start()


def epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def grants_of(request_ids) -> list[Grant]:
    return list(
        Grant.objects.filter(access_request_id__in=list(request_ids)).select_related("target")
    )


def wait_terminal(grant_ids, *, timeout: float, stack: LiveStack, what: str) -> None:
    def done() -> bool:
        return not Grant.objects.filter(pk__in=grant_ids).exclude(state__in=TERMINAL).exists()

    def observed() -> str:
        states = Counter(Grant.objects.filter(pk__in=grant_ids).values_list("state", flat=True))
        return f"grant states {dict(states)}\n{stack.logs()}"

    wait_until(what, done, timeout=timeout, interval=0.25, details=observed)




def check_invariants(github, envs, github_ids: dict[str, int], request_ids) -> dict:
    """What must hold however the run went, read from the database, the audit log and
    GitHub's own history. Every count should be 0 and audit_chain_ok True."""
    request_ids = list(request_ids)
    requests = AccessRequest.objects.filter(pk__in=request_ids)
    grants = grants_of(request_ids)
    grant_ids = [str(g.pk) for g in grants]
    timeline = Timeline.from_requests(github.requests)
    by_env = {env.key: env for env in envs}

    def per_grant(action: str) -> int:
        return (
            AuditEvent.objects.filter(
                action=action, target_type="grants.grant", target_id__in=grant_ids
            )
            .values("target_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )

    lost_requests = requests.filter(
        status__in=[AccessRequest.Status.APPROVED, AccessRequest.Status.ACTIVE]
    ).count() + (requests.count() - len(grants))
    not_ended = [g.pk for g in grants if g.state not in TERMINAL]

    reviewers_lost = []
    put_back = []
    for grant in grants:
        key = (grant.target.repository.lower(), grant.target.environment.lower())
        user_id = github_ids.get(grant.login)
        if grant.applied_at is None or user_id is None:
            continue
        end = grant.revoke_requested_at or grant.expires_at
        start = grant.applied_at.timestamp()
        stop = end.timestamp() - reconciler.EXPIRY_TOLERANCE.total_seconds()
        if timeline.missing_during(key, user_id, start, stop):
            reviewers_lost.append(grant.pk)
        if grant.state == State.REVOKED and grant.revoked_at is not None:
            # Other open grants of the same person there would explain a later listing.
            others = [
                g for g in grants
                if g.pk != grant.pk and g.login == grant.login and g.target_id == grant.target_id
                and (g.revoked_at is None or g.revoked_at > grant.revoked_at)
            ]
            if not others and timeline.present_after(key, user_id, grant.revoked_at.timestamp()):
                put_back.append(grant.pk)

    baseline_dropped = 0
    left_behind = []
    for key, env in by_env.items():
        baseline_id = github_ids.get(env.baseline)
        if baseline_id is not None and timeline.without(key, baseline_id):
            baseline_dropped += 1
        now_there = github.reviewers(env.repository, env.environment)
        wanted = [env.baseline] + sorted(
            {
                g.login
                for g in grants
                if (g.target.repository.lower(), g.target.environment.lower()) == key
                and g.state == State.APPLIED
            }
        )
        if sorted(x.lower() for x in now_there) != sorted(x.lower() for x in wanted):
            left_behind.append(f"{env.repository}: {now_there} (wanted {wanted})")

    chain = verify_chain()
    return {
        "grants": len(grants),
        "failed": sum(g.state == State.FAILED for g in grants),
        "lost": lost_requests + len(not_ended),
        "applied_twice": per_grant("grant.applied"),
        "revoked_twice": per_grant("grant.revoked"),
        "reviewers_lost": len(reviewers_lost),
        "put_back_after_revocation": len(put_back),
        "baseline_dropped": baseline_dropped,
        "github_differs_at_end": len(left_behind),
        "github_differs_examples": left_behind[:3],
        "audit_chain_ok": chain.ok,
        "audit_problem": chain.problem,
    }


def broken_invariants(invariants: dict) -> list[str]:
    """The invariants a run broke, in words (empty: all hold)."""
    problems = [
        f"{invariants[name]} {label}"
        for name, label in (
            ("lost", "grant(s) lost (approved but never applied, or never revoked)"),
            ("applied_twice", "grant(s) applied twice"),
            ("revoked_twice", "grant(s) revoked twice"),
            ("reviewers_lost", "reviewer(s) dropped from GitHub while their grant was active"),
            ("put_back_after_revocation", "reviewer(s) put back on GitHub after revocation"),
            ("baseline_dropped", "environment(s) whose baseline reviewer was dropped"),
            ("github_differs_at_end", "environment(s) not equal to baseline + active grants"),
        )
        if invariants.get(name)
    ]
    if not invariants.get("audit_chain_ok", True):
        problems.append(f"the audit chain does not verify: {invariants.get('audit_problem')}")
    return problems
