"""Deciding gates: approving the waiting gates a grant in force covers, rejecting those whose
request closed without access; compare-and-set, audited, posted after the commit."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit
from audit.actions import AuditAction
from grants.check import restriction_refusal
from grants.gates.comments import approved_comment, rejected_comment
from grants.gates.outbox import enqueue_post
from grants.models import DeploymentGate
from requests_app.models import AccessRequest
from requests_app.selectors import github_people_served_by, requests_serving_github_person

State = DeploymentGate.State
Status = AccessRequest.Status

# Requests that have ended: a gate still waiting on one is rejected (denied, cancelled,
# timed out or failed: access never came; revoked or expired: it is gone, and whatever
# waits was not covered by it).
CLOSED_WITHOUT_ACCESS = AccessRequest.CLOSED_STATUSES
OPEN_STATUSES = AccessRequest.OPEN_STATUSES
# GitHub stops waiting for a custom protection rule after 30 days; the sweep stops looking.
GATE_HORIZON = timedelta(days=30)


def qualified_ref(ref: str) -> str | None:
    # "main" could be a branch or a tag: a ref restriction is matched only against a ref
    # that says which ("refs/heads/main"); an ambiguous one counts as unknown.
    return ref if ref.startswith("refs/") else None


def gate_requests(gate: DeploymentGate):
    """The requests on the gate's target whose requester may be the gate's sender: matched
    by GitHub id as the check matches a workflow's actor (a gate opened before the id was
    kept: by login)."""
    return AccessRequest.objects.filter(
        requests_serving_github_person(login=gate.login, github_id=gate.sender_id),
        repository=gate.repository,
        environment=gate.environment,
    )


def covering_request(gate: DeploymentGate, now: datetime):
    """The active request (longest-lasting first) whose grant covers the gate, and why
    each other active one does not (restrictions)."""
    in_force = gate_requests(gate).in_force(now).order_by("-expires_at", "-pk")
    refusals = []
    for candidate in in_force[:50]:
        refusal = restriction_refusal(
            candidate, job_workflow_ref=None, ref=qualified_ref(gate.ref), run_id=gate.run_id
        )
        if not refusal:
            return candidate, refusals
        refusals.append(f"request #{candidate.pk}: {refusal}")
    return None, refusals


def decide(gate, state, *, access_request, now, reason: str = "") -> bool:
    """pending → approved/rejected, compare-and-set, audited in the caller's transaction;
    the post to GitHub is enqueued after the commit. False if it was decided already."""
    comment = (
        approved_comment(gate, access_request)
        if state == State.APPROVED
        else rejected_comment(gate, access_request)
    )
    updated = DeploymentGate.objects.filter(pk=gate.pk, state=State.PENDING).update(
        state=state,
        decided_at=now,
        access_request=access_request,
        comment=comment,
        # A decision is a new answer to post: fresh attempts, even if a comment failed.
        post_attempts=0,
        next_attempt_at=None,
        gave_up_at=None,
    )
    if updated != 1:
        return False
    gate.state, gate.decided_at, gate.comment = state, now, comment
    gate.access_request = access_request
    audit.log_event(
        action=AuditAction(f"deployment_gate.{state}"),
        target=gate,
        reason=reason or comment,
        detail={
            "request": access_request.pk,
            "request_status": access_request.status,
            "expires_at": access_request.expires_at,
            "login": gate.login,
            "run_id": gate.run_id,
        },
    )
    gate_id = gate.pk
    transaction.on_commit(lambda: enqueue_post(gate_id))
    return True


def deployment_gates_follow_request(*, request_id: int) -> int:
    """Bring the gates waiting on this request's person and environment up to date with
    it: approve them when it is active, reject them when it closed without access (and no
    other open request of theirs may still grant it). Returns how many were decided."""
    access_request = (
        AccessRequest.objects.select_related("requester").filter(pk=request_id).first()
    )
    if access_request is None:
        return 0
    return follow(access_request, timezone.now())


def deployment_gates_wait_on(*, request_id: int) -> bool:
    """Whether any gate waits on this request's person and environment."""
    now = timezone.now()
    # Usually no gate waits at all (a mass expiry asks once per request): one indexed
    # query answers that before the request is read.
    if not DeploymentGate.objects.filter(
        state=State.PENDING, created_at__gte=now - GATE_HORIZON
    ).exists():
        return False
    access_request = (
        AccessRequest.objects.select_related("requester").filter(pk=request_id).first()
    )
    return access_request is not None and waiting_gates(access_request, now).exists()


def waiting_gates(access_request, now):
    """The gates waiting on the target whose sender the request's requester may be (the
    rule of gate_requests, read from the request's side)."""
    login, github_ids = github_people_served_by(user=access_request.requester)
    sender_ids = [int(uid) for uid in github_ids if uid.isdigit()]
    person = Q(login__iexact=login)
    if github_ids:
        # Signed in with GitHub: their own account's gates, and old ones by login.
        person = Q(sender_id__in=sender_ids) | Q(sender_id__isnull=True, login__iexact=login)
    return DeploymentGate.objects.filter(
        person,
        state=State.PENDING,
        repository=access_request.repository,
        environment=access_request.environment,
        created_at__gte=now - GATE_HORIZON,
    ).order_by("pk")


def follow(access_request, now) -> int:
    decided = 0
    if access_request.is_in_force(now):
        for gate in waiting_gates(access_request, now):
            refusal = restriction_refusal(
                access_request,
                job_workflow_ref=None,
                ref=qualified_ref(gate.ref),
                run_id=gate.run_id,
            )
            if refusal:
                continue
            with transaction.atomic():
                decided += decide(gate, State.APPROVED, access_request=access_request, now=now)
    elif access_request.status in CLOSED_WITHOUT_ACCESS:
        closed_at = request_closed_at(access_request)
        if closed_at is None:
            return 0
        gates = waiting_gates(access_request, now).filter(created_at__lte=closed_at)
        if access_request.is_run_bound:
            # It could only ever have covered its own run's deployments.
            gates = gates.filter(run_id=access_request.run_id)
        open_runs = _open_request_runs(access_request)
        for gate in gates:
            # Another open request that may still grant this deployment keeps it waiting:
            # a person's, or one bound to this gate's run.
            if None in open_runs or gate.run_id in open_runs:
                continue
            with transaction.atomic():
                decided += decide(gate, State.REJECTED, access_request=access_request, now=now)
    return decided


def request_closed_at(access_request) -> datetime | None:
    if access_request.status in (Status.FAILED, Status.REVOKED, Status.EXPIRED):
        return access_request.ended_at or access_request.decided_at
    return access_request.decided_at


def _open_request_runs(access_request) -> set[int | None]:
    """The runs of the person's other open requests on the target (None: a person's
    request, which may cover any run's deployment)."""
    return set(
        AccessRequest.objects.filter(
            status__in=OPEN_STATUSES,
            repository=access_request.repository,
            environment=access_request.environment,
            requester_id=access_request.requester_id,
        )
        .exclude(pk=access_request.pk)
        .values_list("run_id", flat=True)
    )
