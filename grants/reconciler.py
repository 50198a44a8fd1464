"""The reconciler: brings one target on GitHub to its desired state.

Desired state of an environment = what Airlock did not add (the baseline, and anything
people changed by hand since) plus the users of the grants that should be active now. The
reconciler reads the environment once, and writes it at most once, however many grants
start or end there together. (Only when GitHub refuses a write that added several people
does it add them one by one, to fail just the grants GitHub refused.) Running it again
changes nothing.

Airlock only ever removes a reviewer it added itself (Target.airlock_reviewers): the
baseline, and anyone people add by hand later, stay. For the same reason a reviewer people
removed by hand is not put back unless an active grant wants them.

One reconcile per target at a time, across all workers: the environment PUT replaces the
whole reviewer list, so two concurrent read-modify-writes would lose a reviewer. The lock
is a lease on the target row, taken by compare-and-set and renewed before every GitHub
call, so no database transaction is ever held open while GitHub answers (STYLE.md #6), and
a crashed worker's lease simply runs out. It works the same on SQLite and PostgreSQL.

Every GitHub write is recorded with the intent first (what Airlock is about to add is
stored before the call, so a crash cannot make Airlock forget a reviewer it added), then
the outcome, audited with the state before and after, in one transaction with the grants'
and requests' transitions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

import audit
from core import metrics
from core.durations import exponential_backoff
from grants.models import EnvironmentSecret, Grant, OrgSecretTarget, Target
from grants.scheduling import schedule_reconcile
from integrations.github import (
    DryRunGitHub,
    EnvironmentProtection,
    GitHubClient,
    GitHubError,
    LeaseLost,
    NotFoundError,
    PermanentGitHubError,
    Reviewer,
    TransientGitHubError,
)
from requests_app import services as request_services
from requests_app.models import AccessRequest
from requests_app.notifications import notify

logger = logging.getLogger(__name__)

State = Grant.State
Kind = Grant.Kind

# A grant ending within this margin is treated as ended: a timer that fires a few
# milliseconds early must not leave access in place until the next sweep.
EXPIRY_TOLERANCE = timedelta(milliseconds=500)
# Passes one lease holder makes when changes keep arriving before it hands over.
MAX_PASSES = 5
# Task-level backoff between attempts to apply a grant, capped here.
MAX_RETRY_DELAY = timedelta(minutes=15)


@dataclass
class ReconcileResult:
    target: str
    busy: bool = False
    # A pass that started after the reconcile was asked for has already done its work.
    skipped: bool = False
    github_reads: int = 0
    github_writes: int = 0
    applied: list[int] = field(default_factory=list)
    revoked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    drift: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.busy:
            return f"{self.target}: busy (another worker holds it; it will pick this up)"
        if self.skipped:
            return f"{self.target}: already reconciled since this was asked for"
        parts = [f"{len(getattr(self, n))} {n}" for n in ("applied", "revoked", "failed")]
        parts.append(f"{self.github_reads} read(s), {self.github_writes} write(s)")
        if self.retrying:
            parts.append(f"{len(self.retrying)} to retry")
        if self.drift:
            parts.append("drift repaired")
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return f"{self.target}: " + ", ".join(parts)


# --- the lease --------------------------------------------------------------------------------


def _lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """Holds a target's lease: acquire() by compare-and-set, renew() before each GitHub call
    (throttled), release() only when no reconcile was requested meanwhile."""

    def __init__(self, model, pk: int):
        self.model = model
        self.pk = pk
        self.owner = _lease_owner()
        self.generation: int | None = None
        self._renewed = 0.0

    def _until(self):
        # The database's clock, not the worker's: two workers whose clocks disagree must
        # still agree on whether a lease has run out. At least three request timeouts, so a
        # lease cannot lapse while one GitHub call is in flight.
        seconds = max(settings.AIRLOCK_LEASE_SECONDS, 3 * settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS)
        return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())

    def acquire(self) -> bool:
        taken = (
            self.model.objects.filter(pk=self.pk)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=Now()))
            .update(lease_owner=self.owner, lease_until=self._until())
        )
        if taken != 1:
            return False
        self._renewed = time.monotonic()
        self.generation = self._current_generation()
        return True

    def _current_generation(self) -> int:
        return self.model.objects.filter(pk=self.pk).values_list("generation", flat=True).get()

    def renew(self) -> None:
        if time.monotonic() - self._renewed < settings.AIRLOCK_LEASE_SECONDS / 3:
            return
        kept = self.model.objects.filter(pk=self.pk, lease_owner=self.owner).update(
            lease_until=self._until()
        )
        if kept != 1:
            raise LeaseLost(f"lost the lease on {self.model.__name__} {self.pk}")
        self._renewed = time.monotonic()

    def release_if_unchanged(self) -> bool:
        """Let go unless someone asked for a reconcile since we started; then take the new
        generation and return False so the caller makes another pass."""
        released = self.model.objects.filter(
            pk=self.pk, lease_owner=self.owner, generation=self.generation
        ).update(lease_owner="", lease_until=None)
        if released == 1:
            self.generation = None
            return True
        self.generation = self._current_generation()
        return False

    def release(self) -> None:
        self.model.objects.filter(pk=self.pk, lease_owner=self.owner).update(
            lease_owner="", lease_until=None
        )


def request_reconcile(model, pk: int) -> None:
    """Mark a target as needing a reconcile: a lease holder sees this and passes again."""
    model.objects.filter(pk=pk).update(generation=F("generation") + 1)


# --- grants: what should be on GitHub now ------------------------------------------------------


def _is_wanted(grant: Grant, now: datetime) -> bool:
    if grant.revoke_requested_at is not None:
        return False
    if grant.state == State.APPLIED:
        return grant.expires_at > now + EXPIRY_TOLERANCE
    if grant.state == State.PENDING:
        request = grant.access_request
        return request.status == AccessRequest.Status.APPROVED and (
            request.starts_at is None or request.starts_at <= now
        )
    return False


def _is_withdrawn(grant: Grant) -> bool:
    """A pending grant whose request was closed (revoked early) before it was applied."""
    return grant.state == State.PENDING and (
        grant.revoke_requested_at is not None
        or grant.access_request.status != AccessRequest.Status.APPROVED
    )


@dataclass
class Plan:
    """The grants of one target (or one secret) sorted by what the pass must do."""

    to_apply: list[Grant] = field(default_factory=list)  # pending, should be active now
    keep: list[Grant] = field(default_factory=list)  # applied, still active
    ending: list[Grant] = field(default_factory=list)  # applied, should be gone now
    withdrawn: list[Grant] = field(default_factory=list)  # pending, request closed

    @property
    def wanted(self) -> list[Grant]:
        return self.keep + self.to_apply

    @property
    def has_work(self) -> bool:
        return bool(self.to_apply or self.ending or self.withdrawn)


def _plan(grants, now) -> Plan:
    plan = Plan()
    for grant in sorted(grants, key=_priority):
        if grant.state == State.APPLIED:
            (plan.keep if _is_wanted(grant, now) else plan.ending).append(grant)
        elif _is_withdrawn(grant):
            plan.withdrawn.append(grant)
        elif _is_wanted(grant, now):
            plan.to_apply.append(grant)
    return plan


def _priority(grant: Grant):
    # Applied grants first (they hold their place), then by when they were approved.
    decided = grant.access_request.decided_at or grant.created_at
    return (grant.state != State.APPLIED, decided, grant.pk)


# --- transitions of grants (inside the outcome transaction) -----------------------------------


def _lock_rows(grants) -> None:
    """Lock the requests, then the grants, an outcome transaction may change, before its
    first audit event takes the audit chain's lock (audit.log_event holds it to the end of
    the transaction). Every transaction that changes both takes them in this order (see
    grants.services.grant_revoke, and the request services, which lock their request first),
    so none waits for a row while holding the chain another is queued on: PostgreSQL would
    abort one of them as a deadlock."""
    grants = list(grants)
    if not grants:
        return
    request_ids = sorted({grant.access_request_id for grant in grants})
    list(
        AccessRequest.objects.select_for_update()
        .filter(pk__in=request_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    list(
        Grant.objects.select_for_update()
        .filter(pk__in=sorted({grant.pk for grant in grants}))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _grant_expiry(grant: Grant, at: datetime) -> tuple[datetime, bool | None]:
    """When a grant starting at `at` ends, and (for an extension) whether it continues its
    original. A grant lasts its duration from the moment it is applied. An extension that
    was approved while its original was in force, and whose original is still on GitHub
    now, continues from the original's expiry instead: access goes on without a gap, and
    the reviewer (or secret) stays where it is, shared by the two grants. An extension
    approved at or after the original's expiry, or whose original has already been removed,
    is a new grant, counted from its own start; the request's page and the audit say so."""
    access_request = grant.access_request
    if access_request.extends_id is None:
        return at + access_request.duration, None
    original = (
        AccessRequest.objects.filter(pk=access_request.extends_id)
        .values("status", "expires_at")
        .first()
    )
    still_on_github = Grant.objects.filter(
        access_request_id=access_request.extends_id,
        state=State.APPLIED,
        revoke_requested_at__isnull=True,
    ).exists()
    if (
        still_on_github
        and original["status"] == AccessRequest.Status.ACTIVE
        and original["expires_at"] is not None
        and access_request.decided_at is not None
        and access_request.decided_at < original["expires_at"]
    ):
        return original["expires_at"] + access_request.duration, True
    return at + access_request.duration, False


def _mark_applied(grant: Grant, *, at: datetime, detail: dict) -> bool:
    expires_at, continues = _grant_expiry(grant, at)
    updated = Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
        state=State.APPLIED,
        applied_at=at,
        expires_at=expires_at,
        last_error="",
        next_attempt_at=None,
        attempts=F("attempts") + 1,
    )
    if updated != 1:
        return False
    grant.state, grant.applied_at, grant.expires_at = State.APPLIED, at, expires_at
    if continues is not None:
        detail = {
            **detail,
            "extends": grant.access_request.extends_id,
            "continues_original": continues,
            "note": (
                "continues the original's access without a gap"
                if continues
                else "the original had already expired; this is a new grant"
            ),
        }
    audit.log_event(
        action="grant.applied",
        target=grant,
        detail={**detail, "applied_at": at, "expires_at": expires_at},
    )
    request_services.access_request_activate(
        access_request=grant.access_request,
        granted_at=at,
        expires_at=expires_at,
        continues_original=continues,
    )
    return True


def _mark_revoked(grant: Grant, *, at: datetime, detail: dict) -> bool:
    if grant.state == State.APPLIED:
        reason = (
            Grant.EndReason.REVOKED if grant.revoke_requested_at else Grant.EndReason.EXPIRED
        )
        due = grant.revoke_requested_at or grant.expires_at
    else:
        reason, due = Grant.EndReason.WITHDRAWN, None
    updated = Grant.objects.filter(pk=grant.pk, state=grant.state).update(
        state=State.REVOKED,
        revoked_at=at,
        end_reason=reason,
        last_error="",
        next_attempt_at=None,
        revocation_overdue_since=None,
    )
    if updated != 1:
        return False
    late = (at - due).total_seconds() if due else None
    if late is not None:
        metrics.revocation_recorded(end_reason=reason, lag_seconds=late)
    audit.log_event(
        action="grant.revoked",
        target=grant,
        detail={
            **detail,
            "end_reason": reason,
            "due_at": due,
            "revoked_at": at,
            "late_by_seconds": round(late, 3) if late is not None else None,
            "overdue_since": grant.revocation_overdue_since,
            "attempts": grant.attempts,
        },
    )
    if reason == Grant.EndReason.EXPIRED:
        request_services.access_request_expire(access_request=grant.access_request, ended_at=at)
    grant.state = State.REVOKED
    return True


def _mark_failed(grant: Grant, *, message: str, detail: dict | None = None) -> bool:
    updated = Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
        state=State.FAILED, last_error=message, next_attempt_at=None, attempts=F("attempts") + 1
    )
    if updated != 1:
        return False
    audit.log_event(
        action="grant.failed", target=grant, reason=message, detail=detail or {}
    )
    request_services.access_request_fail(access_request=grant.access_request, reason=message)
    grant.state = State.FAILED
    return True


def _retry_delay(attempts: int) -> timedelta:
    base = timedelta(seconds=settings.AIRLOCK_GRANT_RETRY_BASE_SECONDS)
    return exponential_backoff(attempts, base=base, cap=MAX_RETRY_DELAY)


def _record_failed_attempt(grants_to_apply, grants_ending, error: GitHubError, now) -> list[int]:
    """An attempt failed: a transient error outlasted the in-call retries (or, for
    revocations, GitHub refused). Grants waiting to be applied are tried again later, and
    fail once AIRLOCK_GRANT_MAX_ATTEMPTS is spent. Revocations are never given up: they are
    marked overdue (audited once) and every sweep retries them until they succeed."""
    retry_at = getattr(error, "retry_at", None)
    retrying = []
    with transaction.atomic():
        _lock_rows([*grants_to_apply, *grants_ending])
        for grant in grants_to_apply:
            attempts = grant.attempts + 1
            if attempts >= settings.AIRLOCK_GRANT_MAX_ATTEMPTS:
                _mark_failed(
                    grant,
                    message=f"Gave up after {attempts} attempts: {error}",
                    detail={"transient": True},
                )
                continue
            next_at = max(retry_at or now, now + _retry_delay(attempts))
            Grant.objects.filter(pk=grant.pk, state=State.PENDING).update(
                attempts=attempts, last_error=str(error), next_attempt_at=next_at
            )
            retrying.append(grant.pk)
        for grant in grants_ending:
            due = grant.revoke_requested_at or grant.expires_at
            first = grant.revocation_overdue_since is None
            Grant.objects.filter(pk=grant.pk, state=State.APPLIED).update(
                attempts=F("attempts") + 1,
                last_error=str(error),
                revocation_overdue_since=grant.revocation_overdue_since or due,
                # Only a rate limit delays the next try; otherwise every sweep retries.
                next_attempt_at=retry_at,
            )
            if first:
                audit.log_event(
                    action="grant.revocation_overdue",
                    target=grant,
                    reason=str(error),
                    detail={"due_at": due, "error": str(error), "retry_at": retry_at},
                )
                notify("revocation_overdue", grant_id=grant.pk)
            logger.error("Revocation of %s failed, will retry: %s", grant, error)
            retrying.append(grant.pk)
    return retrying


# --- the GitHub client for a target ---------------------------------------------------------


def _client(target, lease: Lease):
    if target.dry_run:
        return DryRunGitHub(dict(target.dry_run_state), heartbeat=lease.renew)
    return GitHubClient(heartbeat=lease.renew)


def _dry_run_id(name: str) -> int:
    # Dry-run never asks GitHub; a stable stand-in id keeps the simulated lists keyed alike.
    return -zlib.crc32(name.lower().encode())


def _save_dry_run_state(target, gh) -> None:
    if target.dry_run:
        type(target).objects.filter(pk=target.pk).update(dry_run_state=gh.simulated)
        target.dry_run_state = gh.simulated


# --- environments: reviewers and environment secrets ---------------------------------------


def reconcile_environment(
    target_id: int, *, check: bool = False, requested_at: datetime | None = None
) -> ReconcileResult:
    """Reconcile one environment now. Returns busy=True when another worker holds it; that
    worker then passes again, because this call raised the target's generation first.
    With requested_at (when the reconcile was asked for), skipped=True when a pass that
    started since then has completed: it saw everything this one would."""
    cache: dict = {}

    def environment_pass(target, gh, result, check):
        _environment_pass(target, gh, result, check=check, cache=cache)

    return _reconcile_under_lease(
        Target, target_id, environment_pass, check=check, requested_at=requested_at
    )


def _reconcile_under_lease(
    model, pk: int, one_pass, *, check: bool, requested_at: datetime | None = None
) -> ReconcileResult:
    """Take the target's lease and make passes (at most MAX_PASSES) until nobody asked
    for another reconcile meanwhile; only the first pass is a drift check.

    A message asking for a reconcile that a later pass has already covered is dropped
    (last_reconciled_at is when the last completed pass started). Without that, every
    sweep during a GitHub outage queues another pass per target while each pass crawls
    through timeouts, and once GitHub is back the worker spends its time on that backlog
    while new expiries wait behind it. A drift check always runs."""
    target = model.objects.get(pk=pk)
    result = ReconcileResult(target=str(target))
    covered = target.last_reconciled_at
    if requested_at is not None and not check and covered and covered >= requested_at:
        result.skipped = True
        return result
    request_reconcile(model, pk)
    lease = Lease(model, pk)
    if not lease.acquire():
        result.busy = True
        return result
    target_kind = "environment" if model is Target else "organization_secret"
    try:
        for _ in range(MAX_PASSES):
            target = model.objects.get(pk=pk)
            with metrics.reconcile_pass(target_kind=target_kind, errors=result.errors):
                one_pass(target, _client(target, lease), result, check)
            check = False
            if lease.release_if_unchanged():
                break
        else:
            # Changes keep arriving: let go and queue another reconcile rather than hold on.
            transaction.on_commit(lambda: schedule_reconcile(model, pk))
    except LeaseLost as exc:
        result.errors.append(str(exc))
        logger.warning("%s", exc)
    finally:
        lease.release()
    return result


def _adopt_extensions(**original_grant) -> None:
    """Give approved extensions of this target's grants their grant now, if the apply task
    has not yet: the pass that ends an original must see its extension, or it would remove
    the reviewer (or secret) only for the extension to add it back."""
    from grants.services import grant_create_for_request

    waiting = AccessRequest.objects.filter(
        status=AccessRequest.Status.APPROVED,
        grant__isnull=True,
        **{f"extends__grant__{name}": value for name, value in original_grant.items()},
    ).select_related("requester", "secret")
    for access_request in waiting:
        grant_create_for_request(access_request=access_request)


def _environment_pass(target: Target, gh, result: ReconcileResult, *, check, cache) -> None:
    started = timezone.now()  # becomes last_reconciled_at: every change before it is seen
    if target.dry_run == settings.AIRLOCK_DRY_RUN:
        _adopt_extensions(target=target)
    now = timezone.now()
    grants = list(
        Grant.objects.filter(
            target=target,
            kind__in=[Kind.REVIEWER, Kind.ENVIRONMENT_SECRET],
            state__in=Grant.OPEN_STATES,
        ).select_related("access_request", "secret", "access_request__requester")
    )
    for grant in grants:
        grant.target = target  # already loaded: the audit log names it for every grant
    _reconcile_reviewers(
        target, gh, [g for g in grants if g.kind == Kind.REVIEWER], result, now, check, cache
    )
    secret_grants = [g for g in grants if g.kind == Kind.ENVIRONMENT_SECRET]
    names = {g.secret.name for g in secret_grants}
    names |= set(
        EnvironmentSecret.objects.filter(target=target, airlock_wrote=True).values_list(
            "name", flat=True
        )
    )
    for name in sorted(names):
        _reconcile_environment_secret(
            target, gh, name, [g for g in secret_grants if g.secret.name == name],
            result, now, check,
        )
    _save_dry_run_state(target, gh)
    Target.objects.filter(pk=target.pk).update(
        last_reconciled_at=started,
        **({"last_checked_at": timezone.now()} if check else {}),
    )


def _resolve_user_id(target, gh, grant, result) -> None:
    """Fill in github_user_id, once per grant (GET /users/{login} unless the requester
    signed in with GitHub, which already told us their id)."""
    if grant.github_user_id is not None:
        return
    if target.dry_run:
        user_id = _dry_run_id(grant.login)
    else:
        user_id = _social_account_id(grant)
        if user_id is None:
            user_id = gh.user_id(grant.login)
            result.github_reads += 1
    Grant.objects.filter(pk=grant.pk).update(github_user_id=user_id)
    grant.github_user_id = user_id


def _social_account_id(grant: Grant) -> int | None:
    """The GitHub id the requester signed in with, when they did: it names the person even
    if the login was renamed or taken over since."""
    from allauth.socialaccount.models import SocialAccount

    uid = (
        SocialAccount.objects.filter(user_id=grant.access_request.requester_id, provider="github")
        .values_list("uid", flat=True)
        .first()
    )
    return int(uid) if uid and uid.isdigit() else None


def _reconcile_reviewers(target, gh, grants, result, now, check, cache) -> None:
    plan = _plan(grants, now)
    airlock = [Reviewer.from_json(r) for r in target.airlock_reviewers]
    airlock_keys = {r.key for r in airlock}
    kept_keys = {("User", g.github_user_id) for g in plan.keep}
    needs_github = (
        plan.to_apply or plan.ending or check or (airlock_keys - kept_keys)
    )
    if not needs_github:
        if plan.withdrawn:
            with transaction.atomic():
                _lock_rows(plan.withdrawn)
                for grant in plan.withdrawn:
                    if _mark_revoked(grant, at=now, detail={"github": "never applied"}):
                        result.revoked.append(grant.pk)
        return

    # Resolve logins to ids first: a login GitHub does not know fails only its own grant.
    for grant in list(plan.to_apply):
        try:
            _resolve_user_id(target, gh, grant, result)
        except NotFoundError as exc:
            with transaction.atomic():
                _lock_rows([grant])
                _mark_failed(
                    grant,
                    message=f"GitHub has no user named {grant.login} ({exc.message}).",
                )
            result.failed.append(grant.pk)
            plan.to_apply.remove(grant)
        except TransientGitHubError as exc:
            result.retrying += _record_failed_attempt([grant], [], exc, now)
            result.errors.append(str(exc))
            plan.to_apply.remove(grant)

    where = f"{target.repository} environment '{target.environment}'"
    # Within one lease, a later pass starts from what the previous one wrote: nobody else
    # in Airlock writes this environment meanwhile, so it need not be read again.
    current = cache.get("environment")
    fresh = current is None
    try:
        if fresh:
            current = gh.get_environment(target.repository, target.environment)
            result.github_reads += 1
    except NotFoundError as exc:
        _environment_missing(target, gh, plan, result, now, exc)
        return
    except PermanentGitHubError as exc:
        # 401/403: Airlock's credentials cannot read it. Revocations stay overdue, shown.
        _fail_all(plan, f"GitHub refused to read {where}: {exc.message}", result)
        result.retrying += _record_failed_attempt([], plan.ending, exc, now)
        _note_target_error(target, str(exc), result)
        return
    except TransientGitHubError as exc:
        result.retrying += _record_failed_attempt(plan.to_apply, plan.ending, exc, now)
        _note_target_error(target, str(exc), result)
        return

    if target.baseline_recorded_at is None:
        _record_baseline(target, current)
    drift = None
    if fresh and target.observed is not None and target.observed != current.as_json():
        drift = {"expected": target.observed, "found": current.as_json()}

    # The new list: GitHub's order kept, Airlock's users no longer wanted taken out, the
    # wanted users not there yet appended. GitHub enforces its six-reviewer limit (and read
    # access) itself, and its refusal is what the grant shows (see _put_reviewers).
    wanted_ids = {g.github_user_id for g in plan.wanted}
    new = [r for r in current.reviewers if not (r.key in airlock_keys and r.id not in wanted_ids)]
    removed = [r for r in current.reviewers if r not in new]
    added: list[Reviewer] = []
    present_keys = {r.key for r in new}
    for grant in plan.wanted:
        key = ("User", grant.github_user_id)
        if key not in present_keys:
            added.append(Reviewer("User", grant.github_user_id, grant.login))
            present_keys.add(key)

    rejected: dict[int, str] = {}
    written = current
    if added or removed:
        # Intent first: the users about to be added are Airlock's, even if we crash next.
        intent = airlock + [r for r in added if r.key not in airlock_keys]
        _set_airlock_reviewers(target, intent)
        try:
            written, accepted, rejected = _put_reviewers(
                target, gh, current, new, added, result
            )
        except TransientGitHubError as exc:
            result.retrying += _record_failed_attempt(plan.to_apply, plan.ending, exc, now)
            _note_target_error(target, str(exc), result)
            return
        except PermanentGitHubError as exc:
            # Even the removals alone were refused: revocations stay overdue and visible.
            result.retrying += _record_failed_attempt([], plan.ending, exc, now)
            _fail_all(Plan(to_apply=plan.to_apply), f"GitHub refused: {exc.message}", result)
            _note_target_error(target, str(exc), result)
            return
        added = accepted
    cache["environment"] = written

    written_keys = {r.key for r in written.reviewers}
    applied_at = timezone.now()
    with transaction.atomic():
        _lock_rows(plan.keep + plan.to_apply + plan.ending + plan.withdrawn)
        target.airlock_reviewers = [
            r.as_json()
            for r in airlock + [a for a in added if a.key not in airlock_keys]
            if r.key in written_keys
        ]
        target.observed = None if target.dry_run else written.as_json()
        Target.objects.filter(pk=target.pk).update(
            airlock_reviewers=target.airlock_reviewers, observed=target.observed, last_error=""
        )
        if drift is not None:
            result.drift = True
            audit.log_event(
                action="target.drift",
                target=target,
                detail={**drift, "repaired": {"added": _names(added), "removed": _names(removed)}},
            )
        if written is not current:
            audit.log_event(
                action="github.environment_updated",
                target=target,
                detail={
                    "before": current.as_json(),
                    "after": written.as_json(),
                    "added": _names(added),
                    "removed": _names(removed),
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        for grant in plan.to_apply:
            if grant.github_user_id in rejected:
                if _mark_failed(grant, message=rejected[grant.github_user_id]):
                    result.failed.append(grant.pk)
            elif ("User", grant.github_user_id) in written_keys:
                how = "added" if any(a.id == grant.github_user_id for a in added) else "already"
                if _mark_applied(
                    grant,
                    at=applied_at,
                    detail={"github": f"reviewer {how}", "dry_run": target.dry_run},
                ):
                    result.applied.append(grant.pk)
        for grant in plan.keep:
            if grant.github_user_id in rejected:
                # Re-adding a reviewer someone removed by hand was refused (no room, say).
                Grant.objects.filter(pk=grant.pk).update(last_error=rejected[grant.github_user_id])
                result.errors.append(rejected[grant.github_user_id])
        for grant in plan.ending:
            if ("User", grant.github_user_id) in written_keys and grant.github_user_id in {
                r.id for r in removed
            }:
                continue  # the PUT did not take them out after all; next pass retries
            if _mark_revoked(grant, at=applied_at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        for grant in plan.withdrawn:
            if _mark_revoked(grant, at=applied_at, detail={"github": "never applied"}):
                result.revoked.append(grant.pk)
        _schedule_expiries(Target, target.pk, [g for g in plan.to_apply if g.expires_at])


def _put_reviewers(target, gh, current, base, added, result):
    """PUT base + added. If GitHub refuses (422) and more than one user was being added,
    add them one by one to find who it refuses; the others still get access. Returns the
    environment as written, the users added and {user id: GitHub's reason} for the refused.
    Only on this error path is there more than one write."""
    try:
        result.github_writes += 1
        written = gh.put_environment(
            target.repository, target.environment, current.with_reviewers(base + added)
        )
        return written, added, {}
    except PermanentGitHubError as exc:
        if not added:
            raise
        if len(added) == 1:
            rejected = {added[0].id: _refusal(exc, added[0])}
            accepted: list[Reviewer] = []
        else:
            rejected, accepted = {}, []
            for reviewer in added:
                try:
                    result.github_writes += 1
                    gh.put_environment(
                        target.repository,
                        target.environment,
                        current.with_reviewers(base + accepted + [reviewer]),
                    )
                    accepted.append(reviewer)
                except PermanentGitHubError as one:
                    rejected[reviewer.id] = _refusal(one, reviewer)
        if accepted:
            written = current.with_reviewers(base + accepted)
        elif [r.key for r in base] != [r.key for r in current.reviewers]:
            result.github_writes += 1
            written = gh.put_environment(
                target.repository, target.environment, current.with_reviewers(base)
            )
        else:
            written = current
        return written, accepted, rejected


def _refusal(exc: GitHubError, reviewer: Reviewer) -> str:
    return f"GitHub refused {reviewer.name} as a required reviewer: {exc.message}"


def _environment_missing(target, gh, plan, result, now, exc) -> None:
    """GET environment answered 404. Pending grants fail with GitHub's answer. For grants
    to revoke, a 404 can also mean Airlock lost access to the repository: only when the
    repository itself is still readable is the environment really gone (and its reviewers
    with it); otherwise the revocation stays overdue for an admin to look at."""
    where = f"{target.repository} environment '{target.environment}'"
    _fail_all(
        Plan(to_apply=plan.to_apply),
        f"GitHub has no {where} (404 {exc.message}); Airlock does not create environments.",
        result,
    )
    if not (plan.ending or plan.keep or plan.withdrawn):
        _note_target_error(target, str(exc))
        return
    gone = target.dry_run
    if not gone:
        try:
            gh.repository_id(target.repository)
            result.github_reads += 1
            gone = True
        except GitHubError:
            gone = False
    with transaction.atomic():
        _lock_rows(plan.keep + plan.ending + plan.withdrawn)
        for grant in plan.withdrawn:
            if _mark_revoked(grant, at=now, detail={"github": "never applied"}):
                result.revoked.append(grant.pk)
        if gone:
            audit.log_event(
                action="target.environment_deleted",
                target=target,
                detail={"before": target.observed, "message": exc.message},
            )
            Target.objects.filter(pk=target.pk).update(airlock_reviewers=[], observed=None)
            for grant in plan.ending + plan.keep:
                if _mark_revoked(grant, at=now, detail={"github": "environment deleted"}):
                    result.revoked.append(grant.pk)
    if not gone:
        result.retrying += _record_failed_attempt([], plan.ending, exc, now)
    _note_target_error(target, str(exc), result)


def _fail_all(plan: Plan, message: str, result: ReconcileResult) -> None:
    with transaction.atomic():
        _lock_rows(plan.to_apply)
        for grant in plan.to_apply:
            if _mark_failed(grant, message=message):
                result.failed.append(grant.pk)
    plan.to_apply.clear()


def _record_baseline(target: Target, current: EnvironmentProtection) -> None:
    now = timezone.now()
    with transaction.atomic():
        updated = Target.objects.filter(pk=target.pk, baseline_recorded_at__isnull=True).update(
            baseline_reviewers=[r.as_json() for r in current.reviewers],
            baseline_recorded_at=now,
        )
        if updated == 1:
            audit.log_event(
                action="target.baseline_recorded",
                target=target,
                detail={"environment": current.as_json(), "dry_run": target.dry_run},
            )
    target.baseline_reviewers = [r.as_json() for r in current.reviewers]
    target.baseline_recorded_at = now


def _set_airlock_reviewers(target: Target, reviewers: list[Reviewer]) -> None:
    target.airlock_reviewers = [r.as_json() for r in reviewers]
    Target.objects.filter(pk=target.pk).update(airlock_reviewers=target.airlock_reviewers)


def _note_target_error(target, message: str, result: ReconcileResult | None = None) -> None:
    """Keep GitHub's message on the target (the admin shows it), and in this pass's result."""
    type(target).objects.filter(pk=target.pk).update(last_error=message)
    if result is not None:
        result.errors.append(message)


def _names(reviewers) -> list[str]:
    return [r.name for r in reviewers]


# --- environment secrets -------------------------------------------------------------------


def _secret_digest(grant: Grant) -> str:
    return hashlib.sha256(bytes(grant.secret.encrypted_value)).hexdigest()


def _reconcile_environment_secret(target, gh, name, grants, result, now, check) -> None:
    """Present while any grant for it is active; deleted when the last one ends.

    Airlock only deletes a secret it wrote. If the environment already had a secret of that
    name before Airlock first wrote it, that secret belongs to someone else: Airlock does not
    overwrite it (that would change what their workflows see) and so would never delete it
    either; the grant fails with a message that says so.
    """
    plan = _plan(grants, now)
    row, _ = EnvironmentSecret.objects.get_or_create(target=target, name=name)
    wanted = bool(plan.wanted)
    where = f"{target.repository} environment '{target.environment}'"
    changed = None  # "written" | "deleted" | None
    before_present = None
    try:
        if wanted:
            digest = _secret_digest(plan.wanted[0])
            must_write = bool(plan.to_apply) and (
                not row.airlock_wrote or row.written_digest != digest
            )
            if not row.airlock_wrote:
                before_present = gh.environment_secret_exists(
                    target.repository, target.environment, name
                )
                result.github_reads += 1
                if row.baseline_present is None:
                    _record_secret_baseline(row, before_present)
                if before_present:
                    message = (
                        f"{where} already has a secret named {name} that Airlock did not "
                        "write; Airlock will neither overwrite nor delete it. Remove it on "
                        "GitHub (or choose another secret name) and retry the grant."
                    )
                    _fail_all(Plan(to_apply=plan.to_apply), message, result)
                    return
                must_write = True
            elif check and not plan.to_apply:
                before_present = gh.environment_secret_exists(
                    target.repository, target.environment, name
                )
                result.github_reads += 1
                if not before_present:
                    must_write = True
                    result.drift = True
                    with transaction.atomic():
                        audit.log_event(
                            action="target.drift",
                            target=target,
                            detail={"secret": name, "expected": "present", "found": "absent"},
                        )
            if must_write:
                # Intent first: from here on, this secret is Airlock's to delete.
                EnvironmentSecret.objects.filter(pk=row.pk).update(airlock_wrote=True)
                value = plan.wanted[0].secret.get_value()
                gh.put_environment_secret(target.repository, target.environment, name, value)
                result.github_reads += 1  # the public key
                result.github_writes += 1
                changed = "written"
                EnvironmentSecret.objects.filter(pk=row.pk).update(
                    written_at=timezone.now(), written_digest=digest
                )
        elif row.airlock_wrote:
            result.github_writes += 1
            before_present = gh.delete_environment_secret(
                target.repository, target.environment, name
            )
            EnvironmentSecret.objects.filter(pk=row.pk).update(
                airlock_wrote=False, written_digest=""
            )
            changed = "deleted"
    except NotFoundError as exc:
        _fail_all(
            Plan(to_apply=plan.to_apply),
            f"GitHub has no {where} (404 {exc.message}); Airlock does not create environments.",
            result,
        )
        if plan.ending:
            # The environment (and its secrets) is gone, or Airlock lost access: as for
            # reviewers, only an admin can tell; keep the revocation overdue and visible.
            result.retrying += _record_failed_attempt([], plan.ending, exc, now)
        result.errors.append(str(exc))
        return
    except PermanentGitHubError as exc:
        _fail_all(Plan(to_apply=plan.to_apply), f"GitHub refused: {exc.message}", result)
        result.retrying += _record_failed_attempt([], plan.ending, exc, now)
        result.errors.append(str(exc))
        return
    except TransientGitHubError as exc:
        result.retrying += _record_failed_attempt(plan.to_apply, plan.ending, exc, now)
        result.errors.append(str(exc))
        return

    at = timezone.now()
    with transaction.atomic():
        _lock_rows(plan.to_apply + plan.ending + plan.withdrawn)
        if changed:
            audit.log_event(
                action=f"github.environment_secret_{changed}",
                target=target,
                detail={
                    "secret": name,
                    "before": {"present": before_present if changed == "written" else True},
                    "after": {"present": changed == "written"},
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        for grant in plan.to_apply:
            if _mark_applied(
                grant, at=at, detail={"github": f"secret {changed or 'already present'}"}
            ):
                result.applied.append(grant.pk)
        for grant in plan.ending + plan.withdrawn:
            if _mark_revoked(grant, at=at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        _schedule_expiries(Target, target.pk, [g for g in plan.to_apply if g.expires_at])


def _record_secret_baseline(row: EnvironmentSecret, present: bool) -> None:
    with transaction.atomic():
        updated = EnvironmentSecret.objects.filter(
            pk=row.pk, baseline_present__isnull=True
        ).update(baseline_present=present, baseline_recorded_at=timezone.now())
        if updated == 1:
            audit.log_event(
                action="target.baseline_recorded",
                target=row.target,
                detail={"secret": row.name, "present": present},
            )
    row.baseline_present = present


# --- organization secrets ------------------------------------------------------------------


def reconcile_org_secret(
    org_secret_id: int, *, check: bool = False, requested_at: datetime | None = None
) -> ReconcileResult:
    """Reconcile one organization secret's repository list now (busy and skipped as for an
    environment)."""

    def org_secret_pass(target, gh, result, check):
        _org_secret_pass(target, gh, result, check=check)
        _save_dry_run_state(target, gh)

    return _reconcile_under_lease(
        OrgSecretTarget, org_secret_id, org_secret_pass, check=check, requested_at=requested_at
    )


def _repository_id(grant: Grant, gh, result) -> int:
    """The grant's repository id, cached on its environment target."""
    target = grant.target
    if target.repository_id is None:
        target.refresh_from_db(fields=["repository_id"])
    if target.repository_id is None:
        if target.dry_run:
            repository_id = _dry_run_id(target.repository)
        else:
            repository_id = gh.repository_id(target.repository)
            result.github_reads += 1
        Target.objects.filter(pk=target.pk).update(repository_id=repository_id)
        target.repository_id = repository_id
    return target.repository_id


def _org_secret_pass(target: OrgSecretTarget, gh, result: ReconcileResult, *, check) -> None:
    started = timezone.now()  # becomes last_reconciled_at: every change before it is seen
    if target.dry_run == settings.AIRLOCK_DRY_RUN:
        _adopt_extensions(org_secret=target)
    now = timezone.now()
    grants = list(
        Grant.objects.filter(org_secret=target, state__in=Grant.OPEN_STATES).select_related(
            "access_request", "secret", "target"
        )
    )
    plan = _plan(grants, now)
    secret = f"organization secret {target.org}/{target.name}"

    for grant in list(plan.to_apply):
        try:
            _repository_id(grant, gh, result)
        except NotFoundError as exc:
            _fail_all(
                Plan(to_apply=[grant]),
                f"GitHub has no repository {grant.target.repository} ({exc.message}).",
                result,
            )
            plan.to_apply.remove(grant)
        except TransientGitHubError as exc:
            result.retrying += _record_failed_attempt([grant], [], exc, now)
            plan.to_apply.remove(grant)
    airlock = list(target.airlock_repository_ids)
    kept_ids = {g.target.repository_id for g in plan.keep}
    if not (plan.to_apply or plan.ending or check or set(airlock) - kept_ids):
        if plan.withdrawn:
            with transaction.atomic():
                _lock_rows(plan.withdrawn)
                for grant in plan.withdrawn:
                    if _mark_revoked(grant, at=now, detail={"github": "never applied"}):
                        result.revoked.append(grant.pk)
        return

    try:
        if target.baseline_recorded_at is None:
            visibility = gh.org_secret_visibility(target.org, target.name)
            result.github_reads += 1
            if visibility != "selected":
                _fail_all(
                    plan,
                    f"The {secret} is visible to '{visibility}' repositories; Airlock can "
                    "only grant organization secrets with selected repositories.",
                    result,
                )
                return
        current = gh.org_secret_repository_ids(target.org, target.name)
        result.github_reads += 1
    except NotFoundError as exc:
        _fail_all(Plan(to_apply=plan.to_apply), f"GitHub has no {secret} ({exc.message}).", result)
        if plan.ending:
            result.retrying += _record_failed_attempt([], plan.ending, exc, now)
        _note_target_error(target, str(exc), result)
        return
    except PermanentGitHubError as exc:
        _fail_all(Plan(to_apply=plan.to_apply), f"GitHub refused: {exc.message}", result)
        result.retrying += _record_failed_attempt([], plan.ending, exc, now)
        _note_target_error(target, str(exc), result)
        return
    except TransientGitHubError as exc:
        result.retrying += _record_failed_attempt(plan.to_apply, plan.ending, exc, now)
        _note_target_error(target, str(exc), result)
        return

    if target.baseline_recorded_at is None:
        with transaction.atomic():
            updated = OrgSecretTarget.objects.filter(
                pk=target.pk, baseline_recorded_at__isnull=True
            ).update(baseline_repository_ids=current, baseline_recorded_at=now)
            if updated == 1:
                audit.log_event(
                    action="target.baseline_recorded",
                    target=target,
                    detail={"repository_ids": current, "dry_run": target.dry_run},
                )
    drift = None
    if target.observed is not None and sorted(target.observed) != sorted(current):
        drift = {"expected": target.observed, "found": current}

    wanted_ids = {g.target.repository_id for g in plan.wanted}
    to_add = [i for i in sorted(wanted_ids) if i not in current]
    to_remove = [i for i in current if i in airlock and i not in wanted_ids]
    # Intent first, as for reviewers.
    intent = airlock + [i for i in to_add if i not in airlock]
    OrgSecretTarget.objects.filter(pk=target.pk).update(airlock_repository_ids=intent)

    after = list(current)
    refused: dict[int, str] = {}
    error: GitHubError | None = None
    for repository_id in to_add:
        try:
            result.github_writes += 1
            gh.add_org_secret_repository(target.org, target.name, repository_id)
            after.append(repository_id)
        except PermanentGitHubError as exc:
            refused[repository_id] = f"GitHub refused to add the repository: {exc.message}"
        except TransientGitHubError as exc:
            error = exc
            break
    if error is None:
        for repository_id in to_remove:
            try:
                result.github_writes += 1
                gh.remove_org_secret_repository(target.org, target.name, repository_id)
                after.remove(repository_id)
            except GitHubError as exc:
                error = exc
                break

    at = timezone.now()
    with transaction.atomic():
        _lock_rows(plan.keep + plan.to_apply + plan.ending + plan.withdrawn)
        airlock_after = [i for i in intent if i in after]
        observed = None if target.dry_run else after
        OrgSecretTarget.objects.filter(pk=target.pk).update(
            airlock_repository_ids=airlock_after,
            observed=observed,
            last_error=str(error) if error else "",
            last_reconciled_at=started,
            **({"last_checked_at": at} if check else {}),
        )
        if drift is not None:
            result.drift = True
            audit.log_event(action="target.drift", target=target, detail=drift)
        if after != current:
            audit.log_event(
                action="github.org_secret_updated",
                target=target,
                detail={
                    "before": current,
                    "after": after,
                    "baseline": target.baseline_repository_ids or current,
                    "grants": sorted(g.pk for g in plan.to_apply + plan.ending),
                    "dry_run": target.dry_run,
                },
            )
        applied, waiting = [], []
        for grant in plan.to_apply:
            repository_id = grant.target.repository_id
            if repository_id in refused:
                if _mark_failed(grant, message=refused[repository_id]):
                    result.failed.append(grant.pk)
            elif repository_id in after:
                if _mark_applied(grant, at=at, detail={"dry_run": target.dry_run}):
                    result.applied.append(grant.pk)
                    applied.append(grant)
            else:
                waiting.append(grant)
        ending_left = []
        not_removed = set(to_remove) & set(after)  # a removal an error stopped
        for grant in plan.ending + plan.withdrawn:
            if grant in plan.ending and grant.target.repository_id in not_removed:
                ending_left.append(grant)
                continue
            if _mark_revoked(grant, at=at, detail={"dry_run": target.dry_run}):
                result.revoked.append(grant.pk)
        _schedule_expiries(OrgSecretTarget, target.pk, applied)
    if error is not None:
        result.retrying += _record_failed_attempt(waiting, ending_left, error, at)
        result.errors.append(str(error))


# --- scheduling the end of a grant ---------------------------------------------------------


def _schedule_expiries(model, pk: int, grants) -> None:
    """After the commit, ask for a reconcile at each expiry that falls before the sweep
    after next; later ones the sweep schedules when they come within reach. No long ETAs:
    brokers redeliver or drop them. Expiries close together share one message."""
    horizon = timezone.now() + timedelta(seconds=2 * settings.AIRLOCK_SWEEP_SECONDS)
    due = [g for g in grants if g.expires_at and g.expires_at <= horizon]
    for eta, together in expiry_batches(due):
        Grant.objects.filter(pk__in=[g.pk for g in together]).update(
            reconcile_scheduled_for=F("expires_at")
        )
        transaction.on_commit(lambda eta=eta: schedule_reconcile(model, pk, eta=eta))


def expiry_batches(grants) -> list[tuple[datetime, list[Grant]]]:
    """The grants of one target grouped by when a reconcile should run for them: a pass at
    eta ends every grant expiring up to EXPIRY_TOLERANCE later (_is_wanted), so one
    message serves a batch instead of one per grant (a mass expiry sends one per
    environment, not twenty)."""
    batches: list[tuple[datetime, list[Grant]]] = []
    for grant in sorted(grants, key=lambda g: (g.expires_at, g.pk)):
        if batches and grant.expires_at <= batches[-1][0] + EXPIRY_TOLERANCE:
            batches[-1][1].append(grant)
        else:
            batches.append((grant.expires_at, [grant]))
    return batches
