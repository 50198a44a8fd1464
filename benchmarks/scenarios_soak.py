"""The fault soak: grants filed, applied and revoked while GitHub fails, the worker is killed
and Redis restarts (SoakFaults, Chaos, fault_soak)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from benchmarks import seeding
from benchmarks.scenarios_base import (
    TERMINAL,
    Harness,
    State,
    check_invariants,
    epoch,
    grants_of,
)
from benchmarks.stack import LiveStack
from benchmarks.timeline import Timeline, summary
from grants.models import Grant
from tests.github_fake.faults import Fault, Faults


class SoakFaults(Faults):
    """The local GitHub's fault list, plus a share of its REST requests answered with a 5xx
    at random, and a count of every fault it served, by kind."""

    def __init__(self, *, error_rate: float, seed: int = 5):
        super().__init__()
        self.error_rate = error_rate
        self._rng = random.Random(seed)
        self._count_lock = threading.Lock()
        self.served: Counter = Counter()

    def take(self, method: str, path: str, is_write: bool) -> Fault | None:
        fault = super().take(method, path, is_write)
        if fault is not None:
            if fault.delay:
                kind = "timeout"
            elif fault.status in (403, 429):
                kind = "rate limit"
            else:
                kind = "5xx"
            with self._count_lock:
                self.served[kind] += 1
            return fault
        if self.error_rate and path.startswith(("/repos/", "/users/")):
            with self._count_lock:
                hit = self._rng.random() < self.error_rate
                status = self._rng.choice([500, 502, 503])
                if hit:
                    self.served["5xx"] += 1
            if hit:
                return Fault(
                    status=status,
                    times=1,
                    body={"message": "Server Error", "documentation_url": "https://docs.github.com/rest"},
                )
        return None

    def calm(self) -> None:
        self.error_rate = 0.0
        self.clear()


@dataclass
class Chaos:
    """Faults on a schedule, from a background thread: rate limits and timeouts on GitHub,
    one worker kill, one Redis restart. stop() ends them; events says what happened when."""

    h: Harness
    stack: LiveStack
    faults: SoakFaults
    seconds: float
    github_timeout: int
    kill_at: float | None
    redis_at: float | None
    events: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> Chaos:
        self.started = time.time()
        self._thread.start()
        return self

    def _note(self, what: str) -> None:
        self.events.append((round(time.time() - self.started, 1), what))
        self.h.say(f"  [{self.events[-1][0]:5.1f}s] {what}")

    def _run(self) -> None:
        # Each of these holds a worker process for seconds (a timeout, a retry-after), so
        # they are spaced out: the random 5xx are the steady background.
        schedule = [(t, "timeout") for t in _every(3.0, 15.0, self.seconds)]
        schedule += [(t, "secondary") for t in _every(5.0, 20.0, self.seconds)]
        schedule += [(t, "primary") for t in _every(8.0, 30.0, self.seconds)]
        if self.kill_at is not None:
            schedule.append((self.kill_at, "kill"))
        if self.redis_at is not None and self.h.redis is not None:
            schedule.append((self.redis_at, "redis"))
        for at, what in sorted(schedule):
            if self._stop.wait(max(0.0, self.started + at - time.time())):
                return
            try:
                self._do(what)
            except Exception as problem:  # reported, and the run goes on
                self.errors.append(f"{what}: {problem}")
                self._note(f"{what} failed: {problem}")

    def _do(self, what: str) -> None:
        faults = self.faults
        if what == "timeout":
            # Held past the client's timeout, then a 504: GitHub did not act on it.
            faults.add("*", "/repos/**", 504, delay=self.github_timeout + 1.0, times=2)
        elif what == "secondary":
            faults.secondary_rate_limit("PUT", "/repos/**", retry_after=2, times=2)
        elif what == "primary":
            faults.primary_rate_limit("*", "/repos/**", reset_in=3, times=2)
        elif what == "kill":
            self.stack.kill_worker()
            self._note("worker SIGKILLed")
            time.sleep(5)
            seconds = self.stack.restart_worker()
            self._note(f"worker restarted (ready in {seconds:.1f}s)")
        elif what == "redis":
            self._note("Redis stopped (every queued message lost)")
            self.h.redis.restart(downtime=2.0)
            self._note("Redis back")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _every(first: float, interval: float, until: float):
    t = first
    while t < until:
        yield t
        t += interval


def fault_soak(
    h: Harness,
    *,
    prefix: str,
    environments: int,
    per_env: int = 5,
    fault_seconds: float = 60,
    error_rate: float = 0.10,
    kill_at: float | None = 20,
    redis_at: float | None = 40,
    early_revoke_share: float = 0.05,
    expiry_spread: float = 20,
    github_timeout: int = 2,
    seed: int = 5,
) -> dict:
    """environments x per_env grants filed, applied and ended while GitHub misbehaves for
    fault_seconds; afterwards everything must settle with no invariant broken."""
    from grants.services import grant_revoke

    rng = random.Random(seed)
    envs = seeding.environments(prefix, environments, per_env)
    github_ids = seeding.seed_github(h.github, envs)
    faults = SoakFaults(error_rate=error_rate, seed=seed)
    original_faults = h.github.faults
    stack = h.start_stack(
        prefix,
        AIRLOCK_GITHUB_TIMEOUT_SECONDS=github_timeout,
        AIRLOCK_GITHUB_RETRY_MAX_SECONDS=15,
        AIRLOCK_GRANT_RETRY_BASE_SECONDS=2,
    )
    h.github.faults = faults
    chaos = Chaos(h, stack, faults, fault_seconds, github_timeout, kill_at, redis_at).start()
    recovered_at = None
    ended: dict[int, float] = {}
    try:
        h.say(f"  faults on for {fault_seconds:.0f}s; filing {environments * per_env} requests")
        request_ids = seeding.approve_through_services(envs)
        people = seeding.users(login for env in envs for login in env.logins)
        deadline = time.monotonic() + fault_seconds + 6 * h.sweep_seconds + 240
        while time.monotonic() < deadline:
            if recovered_at is None and time.time() - chaos.started >= fault_seconds:
                chaos.stop()
                faults.calm()
                recovered_at = time.time()
                chaos._note("GitHub recovered: no more faults")
            # Give each newly applied grant a short remaining life (or revoke it early).
            fresh = Grant.objects.filter(
                access_request_id__in=request_ids, state=State.APPLIED
            ).exclude(pk__in=list(ended)).select_related("access_request")
            expiries = {}
            for grant in fresh:
                if rng.random() < early_revoke_share:
                    grant_revoke(grant=grant, user=people[grant.login], comment="done early")
                    ended[grant.pk] = time.time()
                else:
                    moment = timezone.now() + timedelta(
                        seconds=h.sweep_seconds + 2 + rng.uniform(0, expiry_spread)
                    )
                    expiries[grant.pk] = moment
                    ended[grant.pk] = moment.timestamp()
            if expiries:
                seeding.set_expiries(expiries)
            open_grants = Grant.objects.filter(access_request_id__in=request_ids).exclude(
                state__in=TERMINAL
            )
            if recovered_at is not None and not open_grants.exists():
                break
            time.sleep(0.5)
        else:
            states = Counter(
                Grant.objects.filter(access_request_id__in=request_ids).values_list(
                    "state", flat=True
                )
            )
            h.say(f"  soak did not settle in time: grant states {dict(states)}")
    finally:
        chaos.stop()
        faults.calm()
        h.github.faults = original_faults
        stack.stop()
    if recovered_at is None:
        recovered_at = time.time()

    timeline = Timeline.from_requests(h.github.requests)
    late_after_recovery, lags_after_recovery = [], []
    for grant in grants_of(request_ids):
        if grant.applied_at is None:
            continue
        key = (grant.target.repository.lower(), grant.target.environment.lower())
        due = epoch(grant.revoke_requested_at or grant.expires_at)
        left = timeline.left_at(key, github_ids[grant.login])
        if left is None or due is None:
            continue
        late = left - max(due, recovered_at)
        lags_after_recovery.append(late)
        if late > h.sweep_seconds:
            # What it takes to find out why (the request log is gone after the run).
            late_after_recovery.append({
                "grant": grant.pk, "target": f"{key[0]}:{key[1]}", "login": grant.login,
                "due_after_recovery_s": round(due - recovered_at, 3),
                "left_after_recovery_s": round(left - recovered_at, 3),
                "puts": [
                    (round(r.at - recovered_at, 3), r.status)
                    for r in h.github.requests
                    if r.method == "PUT" and r.path.lower().endswith(
                        f"/repos/{key[0]}/environments/{key[1]}"
                    )
                ][-8:],
            })
    during = [
        r for r in h.github.requests
        if r.path.startswith(("/repos/", "/users/")) and r.at < recovered_at
    ]
    statuses = Counter(
        r.status for r in h.github.requests
        if r.path.startswith(("/repos/", "/users/")) and r.status and r.status >= 400
    )
    return {
        "grants": environments * per_env,
        "fault_seconds": fault_seconds,
        "sweep_seconds": h.sweep_seconds,
        "faults_served": dict(faults.served),
        "error_statuses_seen": dict(statuses),
        "github_requests": sum(
            1 for r in h.github.requests if r.path.startswith(("/repos/", "/users/"))
        ),
        "github_requests_during_faults": len(during),
        "faulted_share_during_faults": (
            sum(1 for r in during if r.status and (r.status >= 500 or r.status in (403, 429)))
            / len(during) if during else None
        ),
        "5xx_share_during_faults": (
            sum(1 for r in during if r.status and r.status >= 500) / len(during)
            if during else None
        ),
        "worker_kills": stack.worker_kills,
        "redis_restarts": h.redis.restarts if h.redis is not None else 0,
        "chaos_events": chaos.events,
        "chaos_errors": chaos.errors,
        "early_revocations": sum(
            1 for g in grants_of(request_ids) if g.revoke_requested_at is not None
        ),
        "late_after_recovery": len(late_after_recovery),
        "late_grants": late_after_recovery[:5],
        "lag_after_recovery": summary(lags_after_recovery),
        "invariants": check_invariants(h.github, envs, github_ids, request_ids),
    }
