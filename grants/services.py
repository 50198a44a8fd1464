"""Changes to grants: creating them for approved requests, revoking early, ending a run's
access, retrying, and the sweep that finds everything due; GitHub is only touched by the
reconciler."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core import metrics
from core.errors import NotAllowed, WrongState
from core.names import NameRefused, canonical_owner, canonical_secret_name, canonical_target
from grants import reconciler
from grants.locking import lock_requests_then_grants
from grants.models import Grant, OrgSecretTarget, Target
from grants.scheduling import schedule_reconcile
from grants.selectors import user_is_grants_admin
from integrations.github import Work, github_budget
from requests_app import services as request_services
from requests_app.models import AccessKind, AccessRequest, SecretDefinition
from requests_app.notifications import notify

logger = logging.getLogger(__name__)

State = Grant.State
Kind = Grant.Kind


# --- creating grants ------------------------------------------------------------------------


def _find_or_create(model, names: dict):
    """Find-or-create by canonical names, surviving a concurrent create (the unique
    constraints on Target and OrgSecretTarget are on the canonical columns)."""
    found = model.objects.filter(**names).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return model.objects.create(**names)
    except IntegrityError:
        return model.objects.get(**names)


def target_for(*, repository: str, environment: str, dry_run: bool) -> Target:
    """The environment's target; NameRefused for a name outside GitHub's rules."""
    repository, environment = canonical_target(repository=repository, environment=environment)
    return _find_or_create(
        Target, {"repository": repository, "environment": environment, "dry_run": dry_run}
    )


def org_secret_target_for(*, org: str, name: str, dry_run: bool) -> OrgSecretTarget:
    return _find_or_create(
        OrgSecretTarget,
        {
            "org": canonical_owner(org, field="org"),
            "name": canonical_secret_name(name),
            "dry_run": dry_run,
        },
    )


def grant_create_for_request(*, access_request: AccessRequest) -> Grant | None:
    """The grant of an approved request, created once (idempotent; safe concurrently).
    None when the request is not approved (any more). In dry-run the grant's targets are
    dry-run targets: simulated for good, even if credentials are configured later."""
    existing = Grant.objects.filter(access_request_id=access_request.pk).first()
    if existing is not None:
        return existing
    access_request.refresh_from_db()
    if access_request.status != AccessRequest.Status.APPROVED:
        return None
    dry_run = settings.AIRLOCK_DRY_RUN
    kind, org_secret = Kind.REVIEWER, None
    secret = access_request.secret
    try:
        target = target_for(
            repository=access_request.repository,
            environment=access_request.environment,
            dry_run=dry_run,
        )
        if access_request.access == AccessKind.TOKEN:
            kind = Kind.TOKEN
        elif access_request.access == AccessKind.SECRET:
            if secret.kind == SecretDefinition.Kind.ORGANIZATION:
                kind = Kind.ORGANIZATION_SECRET
                org_secret = org_secret_target_for(
                    org=secret.org, name=secret.name, dry_run=dry_run
                )
            else:
                kind = Kind.ENVIRONMENT_SECRET
    except NameRefused as refusal:
        # Only a request filed before names were checked (the canonical_targets migrations
        # leave names outside the rules as they were): it fails here rather than being
        # written to whichever environment GitHub's own case folding makes of the name.
        request_services.access_request_fail(
            access_request=access_request,
            reason=f"The target is outside GitHub's naming rules: {' '.join(refusal.messages)}",
        )
        return None
    try:
        with transaction.atomic():
            grant = Grant.objects.create(
                access_request=access_request,
                target=target,
                org_secret=org_secret,
                kind=kind,
                secret=secret if access_request.access == AccessKind.SECRET else None,
                login=access_request.requester.get_username(),
            )
            audit.log_event(
                action=AuditAction.GRANT_CREATED,
                target=grant,
                detail={
                    "request": access_request.pk,
                    "kind": kind,
                    "target": str(org_secret or target),
                    "dry_run": dry_run,
                },
            )
    except IntegrityError:
        return Grant.objects.get(access_request_id=access_request.pk)
    return grant


def grant_apply_request(*, request_id: int) -> reconciler.ReconcileResult | None:
    """Create the grant of an approved request and reconcile its target now."""
    access_request = AccessRequest.objects.filter(pk=request_id).first()
    if access_request is None:
        return None
    grant = grant_create_for_request(access_request=access_request)
    if grant is None:
        return None
    return grant_reconcile(grant=grant)


def grant_reconcile(*, grant: Grant, check: bool = False) -> reconciler.ReconcileResult:
    """Reconcile the target that carries this grant, in this process."""
    if grant.kind == Kind.ORGANIZATION_SECRET:
        return reconciler.reconcile_org_secret(grant.org_secret_id, check=check)
    return reconciler.reconcile_environment(grant.target_id, check=check)


def _enqueue_for(grant: Grant) -> None:
    if grant.kind == Kind.ORGANIZATION_SECRET:
        model, pk = OrgSecretTarget, grant.org_secret_id
    else:
        model, pk = Target, grant.target_id
    transaction.on_commit(lambda: schedule_reconcile(model, pk))


# --- people acting on grants ---------------------------------------------------------------


def _may_manage(user) -> bool:
    return user_is_grants_admin(user=user, permission="grants.change_grant")


def grant_revoke(*, grant: Grant, user, comment: str = "") -> Grant:
    """End a grant early: the requester gives access back, or an admin takes it away.

    The request is revoked at once (so the API's check says no from now on); removing the
    access from GitHub follows after the commit, and is retried until it succeeds.

    A grant and its extensions are one stretch of access: ending any of them ends the open
    ones before and after it too (a pending extension is withdrawn), or the access would
    simply go on under the next one.
    """
    is_requester = grant.access_request.requester_id == user.pk
    if not (is_requester or _may_manage(user)):
        raise NotAllowed("Only the requester or a platform admin can revoke this grant.")
    with transaction.atomic():
        _lock_extension_chain(grant.access_request)
        if not _revoke_one(grant, user=user, comment=comment):
            grant.refresh_from_db()
            raise WrongState(
                f"Grant #{grant.pk} is {grant.state}"
                f"{' and already being revoked' if grant.revoke_requested_at else ''}; "
                "there is nothing to revoke."
            )
        _end_extension_chain(grant.access_request, user=user, comment=comment)
    return grant


def _lock_extension_chain(access_request: AccessRequest) -> None:
    """Lock every request of the stretch of access, then their grants, in the one order
    (grants.locking), so a revocation deadlocks with none of the other writers."""
    from requests_app.selectors import request_extension_chain

    chain = request_extension_chain(access_request=access_request)
    lock_requests_then_grants(request_ids=[r.pk for r in chain])


def _revoke_one(
    grant: Grant,
    *,
    user,
    comment: str,
    request_action: AuditAction = AuditAction.REQUEST_REVOKED,
    detail: dict | None = None,
    actor_label: str = "",
) -> bool:
    now = timezone.now()
    updated = Grant.objects.filter(
        pk=grant.pk, state__in=Grant.OPEN_STATES, revoke_requested_at__isnull=True
    ).update(revoke_requested_at=now, revoke_requested_by=user)
    if updated != 1:
        return False
    grant.revoke_requested_at, grant.revoke_requested_by = now, user
    audit.log_event(
        action=AuditAction.GRANT_REVOKE_REQUESTED,
        actor=user,
        actor_label=actor_label,
        target=grant,
        reason=comment,
        detail={"state": grant.state, "expires_at": grant.expires_at, **(detail or {})},
    )
    request_services.access_request_end_early(
        access_request=grant.access_request,
        user=user,
        comment=comment,
        action=request_action,
        actor_label=actor_label,
    )
    _enqueue_for(grant)
    return True


def _end_extension_chain(access_request: AccessRequest, *, user, comment: str) -> None:
    from requests_app.selectors import request_extension_chain

    Status = AccessRequest.Status
    note = f"Ended with request #{access_request.pk}" + (f": {comment}" if comment else ".")
    for other in request_extension_chain(access_request=access_request):
        if other.pk == access_request.pk or other.status not in AccessRequest.OPEN_STATUSES:
            continue
        if other.status == Status.PENDING:
            request_services.access_request_withdraw(access_request=other, user=user, comment=note)
            continue
        other_grant = Grant.objects.filter(access_request=other).first()
        if other_grant is None or not _revoke_one(other_grant, user=user, comment=note):
            # Approved, not yet picked up by the engine: no grant will be made for it now.
            if other.status in (Status.APPROVED, Status.ACTIVE):
                try:
                    request_services.access_request_end_early(
                        access_request=other, user=user, comment=note
                    )
                except WrongState:
                    pass


def grant_retry(*, grant: Grant, user) -> Grant:
    """Try a grant again now: a failed one is reopened (its request goes back to approved);
    one waiting for its next attempt, or an overdue revocation, is tried at once."""
    if not _may_manage(user):
        raise NotAllowed("Only a platform admin can retry a grant.")
    with transaction.atomic():
        lock_requests_then_grants(request_ids=[grant.access_request_id], grant_ids=[grant.pk])
        grant = Grant.objects.get(pk=grant.pk)
        if grant.state == State.FAILED:
            Grant.objects.filter(pk=grant.pk, state=State.FAILED).update(
                state=State.PENDING, attempts=0, next_attempt_at=None
            )
            request_services.access_request_retry(access_request=grant.access_request, user=user)
            before = State.FAILED
        elif grant.state in Grant.OPEN_STATES:
            Grant.objects.filter(pk=grant.pk).update(next_attempt_at=None)
            before = grant.state
        else:
            raise WrongState(f"Grant #{grant.pk} is {grant.state}; there is nothing to retry.")
        audit.log_event(
            action=AuditAction.GRANT_RETRY_REQUESTED,
            actor=user,
            target=grant,
            detail={"state": before, "last_error": grant.last_error},
        )
        _enqueue_for(grant)
    grant.refresh_from_db()
    return grant


# --- a run's access ends with the run --------------------------------------------------------


class RunEnd:
    """Why a run's access ends: the run released it, or GitHub said the run completed."""

    RELEASED = "released"
    COMPLETED = "completed"


@dataclass
class RunAccessEnded:
    """What ending a run's access did: requests whose access ended (now revoked), and
    pending ones cancelled."""

    ended: list[AccessRequest] = field(default_factory=list)
    cancelled: list[AccessRequest] = field(default_factory=list)

    def __str__(self):
        return (
            f"{len(self.ended)} grant(s) ended, {len(self.cancelled)} pending request(s) "
            "cancelled"
        )


def run_access_end(
    *, repository: str, run_id: int, cause: str, up_to_attempt: int | None = None, by: str = ""
) -> RunAccessEnded:
    """End every open request bound to this run: its access is revoked at once (the check
    says no from now on; the engine removes it from GitHub after the commit, retrying), and
    a pending one is cancelled. Idempotent: a run with nothing open changes nothing.

    up_to_attempt: only requests filed by that attempt or an earlier one (a completed
    attempt ends its own access, never that of a re-run filed after it). by names who
    asked (the run's OIDC caller, or the webhook delivery): the audit log's actor.
    """
    from requests_app.selectors import run_requests_open

    if cause == RunEnd.RELEASED:
        action = AuditAction.REQUEST_RELEASED_BY_RUN
        comment = f"Released by run {run_id} of {repository}."
    else:
        action = AuditAction.REQUEST_ENDED_WITH_RUN
        comment = f"Run {run_id} of {repository} completed."
    detail = {"run_id": run_id, "cause": cause, **({"by": by} if by else {})}
    report = RunAccessEnded()
    with transaction.atomic():
        open_requests = run_requests_open(repository=repository, run_id=run_id)
        if up_to_attempt is not None:
            open_requests = open_requests.filter(run_attempt__lte=up_to_attempt)
        request_ids = list(open_requests.values_list("pk", flat=True))
        lock_requests_then_grants(request_ids=request_ids)
        # Read again under the locks, with the same filter: while this waited, a re-run may
        # have taken a request over (requests_app's _follow_attempt: a later attempt) or
        # another transaction closed it; those are no longer this call's to end.
        for access_request in open_requests.filter(pk__in=request_ids).order_by("pk"):
            if access_request.status == AccessRequest.Status.PENDING:
                if request_services.access_request_withdraw(
                    access_request=access_request,
                    user=None,
                    comment=comment,
                    action=action,
                    actor_label=by,
                ):
                    report.cancelled.append(access_request)
                continue
            grant = Grant.objects.filter(access_request=access_request).first()
            if grant is not None and _revoke_one(
                grant,
                user=None,
                comment=comment,
                request_action=action,
                detail=detail,
                actor_label=by,
            ):
                report.ended.append(access_request)
                continue
            try:
                # Approved, not yet picked up by the engine: no grant will be made for it.
                request_services.access_request_end_early(
                    access_request=access_request,
                    user=None,
                    comment=comment,
                    action=action,
                    actor_label=by,
                )
            except WrongState:
                continue
            report.ended.append(access_request)
    if report.ended or report.cancelled:
        logger.info("Run %s of %s %s: %s", run_id, repository, cause, report)
    return report


# --- the sweep -------------------------------------------------------------------------------


@dataclass
class SweepReport:
    timed_out: int = 0
    grants_created: int = 0
    reconciles: list[str] = field(default_factory=list)
    scheduled: int = 0
    newly_overdue: int = 0
    tokens_expired: int = 0
    # Targets with only grants to apply, held back while GitHub's budget is critical.
    deferred: int = 0

    def __str__(self):
        text = (
            f"{self.timed_out} timed out, {self.grants_created} grant(s) created, "
            f"{len(self.reconciles)} target(s) to reconcile now, {self.scheduled} scheduled, "
            f"{self.newly_overdue} newly overdue, {self.tokens_expired} token(s) expired"
        )
        if self.deferred:
            text += f", {self.deferred} target(s) waiting for GitHub's budget"
        return text


def _unit(grant: Grant):
    if grant.kind == Kind.ORGANIZATION_SECRET:
        return (OrgSecretTarget, grant.org_secret_id)
    return (Target, grant.target_id)


@metrics.sweep_observed
def grants_sweep(*, now: datetime | None = None) -> SweepReport:
    """Find everything due, from the database alone (run by beat every
    AIRLOCK_SWEEP_SECONDS, so a lost message costs at most one interval):

    - pending requests past their TTL time out;
    - approved requests get their grant, and pending grants whose start has come (and whose
      backoff, after a transient failure, is over) are applied;
    - grants past their expiry, or revoked early, are revoked; those still there one sweep
      interval after they were due are marked overdue (audited once, shown to admins) and
      retried by every sweep until GitHub answers;
    - starts and expiries that fall before the sweep after next are enqueued with that ETA,
      once, so they happen on time without long-lived ETA messages;
    - GitHub token secrets get the reconcile that replaces their token REFRESH_MARGIN
      before it expires (enqueued with that ETA by the sweep before it, and every sweep
      while it is due); a live token kept for a closed grant gets its environment's
      reconcile, which revokes it; minted tokens past their expiry are erased (nothing to
      revoke);
    - revocations are enqueued before the rest, and while GitHub's budget is critical
      (integrations/github/budget.py) targets with nothing to revoke wait for the reset.
    """
    now = now or timezone.now()
    report = SweepReport()
    interval = timedelta(seconds=settings.AIRLOCK_SWEEP_SECONDS)
    horizon = now + 2 * interval
    report.timed_out = request_services.access_requests_time_out_overdue()

    for access_request in AccessRequest.objects.filter(
        status=AccessRequest.Status.APPROVED, grant__isnull=True
    ).select_related("requester", "secret"):
        if grant_create_for_request(access_request=access_request) is not None:
            report.grants_created += 1

    # Targets to reconcile now: those with a revocation due, and the others (grants to
    # apply, tokens to refresh). While GitHub's budget is critical only the first are
    # reconciled (budget.py); the others wait, pending, for the first sweep after the reset.
    units: set = set()
    applying: set = set()
    budget = github_budget()
    grants_wait = budget is not None and not budget.allows(Work.GRANT, now)
    may_try = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    started = Q(access_request__starts_at__isnull=True) | Q(access_request__starts_at__lte=now)
    pending = Grant.objects.filter(state=State.PENDING)
    for grant in pending.filter(may_try & started).only("kind", "target_id", "org_secret_id"):
        applying.add(_unit(grant))
    withdrawn = pending.filter(
        Q(revoke_requested_at__isnull=False)
        | ~Q(access_request__status=AccessRequest.Status.APPROVED)
    )
    for grant in withdrawn.only("kind", "target_id", "org_secret_id"):
        units.add(_unit(grant))

    applied = Grant.objects.filter(state=State.APPLIED)
    ending = applied.filter(
        Q(expires_at__lte=now + reconciler.EXPIRY_TOLERANCE) | Q(revoke_requested_at__isnull=False)
    )
    for grant in ending.filter(may_try).only("kind", "target_id", "org_secret_id"):
        units.add(_unit(grant))
    report.newly_overdue = _mark_overdue(ending, now - interval)

    # (unit, eta, grants, what each grant records as scheduled): a start each; expiries
    # batched per unit (reconciler.expiry_batches), each grant recording its own expiry.
    later = []
    for grant in pending.filter(
        access_request__starts_at__gt=now, access_request__starts_at__lte=horizon
    ).select_related("access_request"):
        if grant.reconcile_scheduled_for != grant.access_request.starts_at:
            starts_at = grant.access_request.starts_at
            later.append((_unit(grant), starts_at, [grant], starts_at))
    expiring: dict = {}
    for grant in applied.filter(
        expires_at__gt=now, expires_at__lte=horizon, revoke_requested_at__isnull=True
    ):
        if grant.reconcile_scheduled_for != grant.expires_at:
            expiring.setdefault(_unit(grant), []).append(grant)
    for unit, grants in expiring.items():
        later += [
            (unit, eta, batch, F("expires_at"))
            for eta, batch in reconciler.expiry_batches(grants)
        ]
    for (model, pk), eta, grants, scheduled in later:
        Grant.objects.filter(pk__in=[g.pk for g in grants]).update(
            reconcile_scheduled_for=scheduled
        )
        schedule_reconcile(model, pk, eta=eta)
        report.scheduled += 1
    # Token refreshes within one interval: the next sweep finds the later ones (a duplicate
    # at the edge is dropped by the task as covered); a refresh due now, every sweep.
    for pk, refresh_at in reconciler.secret_token_refreshes(until=now + interval).items():
        if refresh_at <= now:
            applying.add((Target, pk))
        else:
            schedule_reconcile(Target, pk, eta=refresh_at)
            report.scheduled += 1
    # A live token kept for a closed grant (it failed, or the exchange recorded one as the
    # grant ended): its environment's reconcile revokes it.
    units |= {(Target, pk) for pk in reconciler.tokens_left_targets(now)}
    report.tokens_expired = reconciler.tokens_erase_expired(now)

    applying -= units  # a target's revocation pass applies what it may at the same time
    if grants_wait:
        waiting = _spending_github(applying)
        applying -= waiting
        report.deferred = len(waiting)

    # Revocations first: a worker takes the engine's queue in order, so when GitHub's
    # quota is short what it has left goes to ending access before starting any.
    def in_order(found):
        return sorted(found, key=lambda unit: (unit[0].__name__, unit[1]))

    for model, pk in in_order(units) + in_order(applying):
        schedule_reconcile(model, pk)
        report.reconciles.append(f"{model.__name__} {pk}")
    if report.reconciles or report.grants_created or report.timed_out or report.newly_overdue:
        logger.info("Sweep: %s", report)
    return report


def _spending_github(units: set) -> set:
    """The units that would reach GitHub: a dry-run target only simulates it."""
    targets = {pk for model, pk in units if model is Target}
    org_secrets = {pk for model, pk in units if model is OrgSecretTarget}
    simulated = {
        (Target, pk)
        for pk in Target.objects.filter(pk__in=targets, dry_run=True).values_list("pk", flat=True)
    } | {
        (OrgSecretTarget, pk)
        for pk in OrgSecretTarget.objects.filter(pk__in=org_secrets, dry_run=True).values_list(
            "pk", flat=True
        )
    }
    return units - simulated


def _mark_overdue(ending, due_before: datetime) -> int:
    """Revocations due more than one sweep interval ago and still not done: record since
    when they are overdue (kept until they succeed) and audit it once."""
    count = 0
    late = ending.filter(revocation_overdue_since__isnull=True).filter(
        Q(expires_at__lt=due_before) | Q(revoke_requested_at__lt=due_before)
    )
    for grant in late:
        due = grant.revoke_requested_at or grant.expires_at
        with transaction.atomic():
            updated = Grant.objects.filter(
                pk=grant.pk, state=State.APPLIED, revocation_overdue_since__isnull=True
            ).update(revocation_overdue_since=due)
            if updated == 1:
                audit.log_event(
                    action=AuditAction.GRANT_REVOCATION_OVERDUE,
                    target=grant,
                    reason="Not revoked one sweep interval after it was due.",
                    detail={"due_at": due, "last_error": grant.last_error},
                )
                logger.error("Revocation of %s is overdue since %s", grant, due)
                notify("revocation_overdue", grant_id=grant.pk)
                count += 1
    return count
