"""Posting a gate's answer to GitHub's callback, outside any transaction: claimed, retried
with backoff on transient errors, recorded and audited."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.durations import exponential_backoff
from grants.models import DeploymentGate
from integrations import github

logger = logging.getLogger(__name__)

State = DeploymentGate.State
CLAIM_SECONDS = 120
RETRY_BASE_SECONDS = 15
RETRY_CAP_SECONDS = 900


def enqueue_post(gate_id: int) -> None:
    from grants.tasks import schedule_gate_post

    schedule_gate_post(gate_id)


def _retry_delay(attempts: int) -> timedelta:
    return exponential_backoff(
        attempts,
        base=timedelta(seconds=RETRY_BASE_SECONDS),
        cap=timedelta(seconds=RETRY_CAP_SECONDS),
    )


def _due(gate: DeploymentGate) -> str | None:
    """What is still to be posted: "decision", "notice" or None."""
    if gate.gave_up_at is not None:
        return None
    if gate.state in DeploymentGate.DECIDED_STATES and gate.posted_at is None:
        return "decision"
    if gate.state == State.PENDING and gate.notice_posted_at is None:
        return "notice"
    return None


def deployment_gate_post(*, gate_id: int, client=None) -> str:
    """Post what the gate still owes GitHub (its decision, or the waiting comment), outside
    any transaction. Returns what happened: "posted", "nothing to post", "busy", "retry"
    or "failed". A claim keeps two workers from posting the same answer at once."""
    now = timezone.now()
    until = now + timedelta(seconds=CLAIM_SECONDS)
    claimed = (
        DeploymentGate.objects.filter(pk=gate_id)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=until)
    )
    if claimed != 1:
        return "busy" if DeploymentGate.objects.filter(pk=gate_id).exists() else "nothing to post"
    outcome = "nothing to post"
    try:
        # A decision may arrive while the waiting comment is being posted: post it too.
        for _ in range(2):
            gate = DeploymentGate.objects.get(pk=gate_id)
            due = _due(gate)
            if due is None or (gate.next_attempt_at and gate.next_attempt_at > now):
                break
            outcome = _post_once(gate, due, client)
            if outcome != "posted":
                break
    finally:
        # Only our own claim: one that ran out may have been taken by another worker.
        DeploymentGate.objects.filter(pk=gate_id, claimed_until=until).update(claimed_until=None)
    return outcome


def _post_once(gate: DeploymentGate, due: str, client) -> str:
    client = client or github.AppInstallationClient(installation_id=gate.installation_id)
    state = gate.state if due == "decision" else None
    try:
        client.review_deployment_protection_rule(
            gate.repository, gate.run_id, gate.environment, state=state, comment=gate.comment
        )
    except github.PermanentGitHubError as refusal:
        return _record_refusal(gate, due, str(refusal))
    except Exception as problem:  # transient GitHub errors, and anything unforeseen
        if not isinstance(problem, github.TransientGitHubError):
            logger.exception("Posting %s of %s failed unexpectedly", due, gate)
        return _record_retry(gate, f"{type(problem).__name__}: {problem}"[:2000])
    now = timezone.now()
    with transaction.atomic():
        field = "posted_at" if due == "decision" else "notice_posted_at"
        DeploymentGate.objects.filter(pk=gate.pk).update(
            **{field: now}, last_error="", post_attempts=0, next_attempt_at=None
        )
        audit.log_event(
            action=(
                AuditAction.GITHUB_DEPLOYMENT_PROTECTION_RULE_REVIEWED
                if due == "decision"
                else "github.deployment_protection_rule_commented"
            ),
            target=gate,
            reason=gate.comment,
            detail={
                "repository": gate.repository,
                "environment": gate.environment,
                "run_id": gate.run_id,
                "state": state,
                "installation_id": gate.installation_id,
                "attempts": gate.post_attempts + 1,
            },
        )
    logger.info("Deployment gate %s: %s posted to GitHub", gate.pk, state or "comment")
    return "posted"


def _record_retry(gate: DeploymentGate, message: str) -> str:
    attempts = gate.post_attempts + 1
    DeploymentGate.objects.filter(pk=gate.pk).update(
        post_attempts=attempts,
        next_attempt_at=timezone.now() + _retry_delay(attempts),
        last_error=message,
    )
    logger.warning("Deployment gate %s: post failed (attempt %d): %s", gate.pk, attempts, message)
    return "retry"


def _record_refusal(gate: DeploymentGate, due: str, message: str) -> str:
    with transaction.atomic():
        DeploymentGate.objects.filter(pk=gate.pk).update(
            gave_up_at=timezone.now(), last_error=message, post_attempts=gate.post_attempts + 1
        )
        audit.log_event(
            action=AuditAction.DEPLOYMENT_GATE_POST_FAILED,
            target=gate,
            reason=message,
            detail={"posting": due, "state": gate.state, "run_id": gate.run_id},
        )
    logger.error("Deployment gate %s: GitHub refused the %s: %s", gate.pk, due, message)
    return "failed"
