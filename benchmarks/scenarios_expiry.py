"""The expiry scenarios: revocation lag (staggered expiries, optionally a killed worker) and
mass expiry (thousands of grants ending in one minute)."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta

from django.utils import timezone

from benchmarks import seeding
from benchmarks.scenarios_base import (
    Harness,
    State,
    check_invariants,
    grants_of,
    wait_terminal,
)
from benchmarks.stack import LiveStack, wait_until
from benchmarks.timeline import Timeline, summary
from grants.models import Grant, Target
from requests_app.models import AccessRequest


def revocation_lag(
    h: Harness,
    *,
    prefix: str,
    environments: int,
    per_env: int,
    window_seconds: float,
    kill_after: float | None = None,
    down_seconds: float = 10.0,
    seed: int = 2,
) -> dict:
    """Grants (environments x per_env, one per person) expiring one after another over
    window_seconds; with kill_after, the worker is SIGKILLed that many seconds into the
    window and restarted down_seconds later."""
    rng = random.Random(seed)
    envs = seeding.environments(prefix, environments, per_env)
    github_ids = seeding.seed_github(h.github, envs)
    stack = h.start_stack(prefix)
    figures: dict = {"sweep_seconds": h.sweep_seconds}
    try:
        h.say(f"  filing and approving {environments * per_env} requests")
        request_ids = seeding.approve_through_services(envs)
        started = time.monotonic()
        _wait_applied(request_ids, stack=stack, timeout=60 + len(request_ids) * 0.5)
        figures["apply_seconds"] = round(time.monotonic() - started, 1)
        grants = [g for g in grants_of(request_ids) if g.state == State.APPLIED]
        rng.shuffle(grants)
        # Expiries at least one sweep ahead: the sweep schedules each one before it is due
        # (at apply time the engine would have; moving them here skips that).
        first = timezone.now() + timedelta(seconds=h.sweep_seconds + 3)
        step = window_seconds / max(1, len(grants))
        expiries = {g.pk: first + timedelta(seconds=i * step) for i, g in enumerate(grants)}
        seeding.set_expiries(expiries)
        last = max(expiries.values())
        h.say(f"  {len(grants)} grants expire one every {step:.2f}s from {first:%H:%M:%S}")

        if kill_after is not None:
            kill_at = first.timestamp() + kill_after
            time.sleep(max(0.0, kill_at - time.time()))
            stack.kill_worker()
            killed_at = time.time()
            h.say(f"  worker SIGKILLed; down for {down_seconds:.0f}s")
            time.sleep(down_seconds)
            figures["worker_start_seconds"] = round(stack.restart_worker(), 1)
            ready_at = time.time()
            figures["worker_down_seconds"] = round(ready_at - killed_at, 1)

        timeout = (last - timezone.now()).total_seconds() + 4 * h.sweep_seconds + 60
        wait_terminal([g.pk for g in grants], timeout=timeout, stack=stack, what="revocations")
    finally:
        stack.stop()

    timeline = Timeline.from_requests(h.github.requests)
    lags, after_ready, missing = [], [], 0
    due_down, due_up = [], []
    for grant in grants:
        key = (grant.target.repository.lower(), grant.target.environment.lower())
        due = expiries[grant.pk].timestamp()
        left = timeline.left_at(key, github_ids[grant.login])
        if left is None:
            missing += 1
            continue
        lags.append(left - due)
        if kill_after is not None:
            if killed_at <= due < ready_at:
                due_down.append(left - due)
            elif due >= ready_at:
                due_up.append(left - due)
            after_ready.append(left - max(due, ready_at))
    figures.update(
        grants=len(grants),
        not_removed=missing,
        lag=summary(lags),
        invariants=check_invariants(h.github, envs, github_ids, request_ids),
    )
    if kill_after is not None:
        figures.update(
            due_while_down=summary(due_down),
            due_after_restart=summary(due_up),
            late_after_ready=summary(after_ready),
        )
    return figures


def _wait_applied(request_ids, *, stack: LiveStack, timeout: float) -> None:
    def done() -> bool:
        grants = Grant.objects.filter(access_request_id__in=request_ids)
        return grants.count() == len(request_ids) and not grants.filter(
            state=State.PENDING
        ).exists()

    def observed() -> str:
        states = Counter(
            Grant.objects.filter(access_request_id__in=request_ids).values_list("state", flat=True)
        )
        return f"{len(request_ids)} requests, grant states {dict(states)}\n{stack.logs()}"

    wait_until("grants applied", done, timeout=timeout, interval=0.25, details=observed)




def mass_expiry(
    h: Harness,
    *,
    prefix: str,
    environments: int,
    users_per_env: int = 5,
    grants_per_user: int = 4,
    window_seconds: float = 60,
    writes_per_minute: int | None = None,
    seed: int = 4,
) -> dict:
    """environments x users_per_env x grants_per_user grants (GitHub takes at most six
    reviewers, so several grants per person overlap), active and on GitHub (bulk-seeded as
    the reconciler leaves them), then made to end within one window: the grants of one
    environment at one moment, the environments' moments spread over the window."""
    rng = random.Random(seed)
    envs = seeding.environments(prefix, environments, users_per_env)
    github_ids = seeding.seed_github(h.github, envs)
    started = time.monotonic()
    total = seeding.bulk_grants(
        envs, grants_per_user=grants_per_user, github_ids=github_ids,
        status=AccessRequest.Status.ACTIVE, expires_in=(3600, 7200), rng=rng,
    )
    seeding.already_on_github(h.github, envs, github_ids)
    h.say(f"  {total} active grants over {environments} environments, on GitHub")
    seed_seconds = time.monotonic() - started
    targets = list(Target.objects.filter(repository__startswith=f"{prefix}/"))
    grants = list(Grant.objects.filter(target__in=targets))
    request_ids = [g.access_request_id for g in grants]

    stack = h.start_stack(prefix)
    try:
        if writes_per_minute:
            h.github.faults.limit_writes(per_minute=writes_per_minute)
        first = timezone.now() + timedelta(seconds=h.sweep_seconds + 3)
        moments = {t.pk: first + timedelta(seconds=rng.uniform(0, window_seconds)) for t in targets}
        expiries = {g.pk: moments[g.target_id] for g in grants}
        seeding.set_expiries(expiries)
        since = time.time()
        last = max(moments.values())
        h.say(
            f"  all expire between {first:%H:%M:%S} and {last:%H:%M:%S}"
            + (f"; GitHub allows {writes_per_minute} writes a minute" if writes_per_minute else "")
        )
        # Generous: how long it takes is the figure; the bound only stops a stuck run.
        allowance = max(120, 0.15 * total) + (
            2 * 60 * environments / writes_per_minute if writes_per_minute else 0
        )
        timeout = (last - timezone.now()).total_seconds() + 4 * h.sweep_seconds + allowance
        wait_terminal([g.pk for g in grants], timeout=timeout, stack=stack, what="mass expiry")
    finally:
        h.github.faults.clear()
        stack.stop()

    calls = Timeline.from_requests(h.github.requests, since=since)
    timeline = Timeline.from_requests(h.github.requests)
    keys = [env.key for env in envs]
    reads = [calls.reads.get(k, 0) for k in keys]
    writes = [calls.writes.get(k, 0) for k in keys]
    refused = [calls.refused_writes.get(k, 0) for k in keys]
    gone, lags = [], []
    for env in envs:
        target = next(t for t in targets if t.repository == env.repository)
        lefts = [
            timeline.left_at(env.key, github_ids[login], present_at_start=True)
            for login in env.logins
        ]
        if all(left is not None for left in lefts):
            gone.append(max(lefts))
            lags.append(max(lefts) - moments[target.pk].timestamp())
    return {
        "grants": len(grants),
        "environments": environments,
        "seed_seconds": round(seed_seconds, 1),
        "reads_per_env": {"max": max(reads), "mean": sum(reads) / len(reads)},
        "writes_per_env": {"max": max(writes), "mean": sum(writes) / len(writes)},
        "refused_writes": sum(refused),
        "other_calls": calls.other_calls,
        "envs_with_more_than_one_read": sum(r > 1 for r in reads),
        "envs_with_more_than_one_write": sum(w > 1 for w in writes),
        "all_gone_after_first_expiry": (max(gone) - first.timestamp()) if gone else None,
        "all_gone_after_last_expiry": (max(gone) - last.timestamp()) if gone else None,
        "grants_revoked_per_second": (
            len(grants) / (max(gone) - first.timestamp()) if gone else None
        ),
        "lag": summary(lags),
        "writes_per_minute_limit": writes_per_minute,
        "invariants": check_invariants(h.github, envs, github_ids, request_ids),
    }
