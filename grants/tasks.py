"""Celery tasks of the grant engine: thin, idempotent, loading by id (why running twice is
safe: docs/operations.md "The engine's tasks")."""

import logging
from datetime import UTC, datetime

from celery import shared_task

from grants import drift, gates, reconciler, services
from grants.models import DeploymentGate
from grants.scheduling import schedule_apply

logger = logging.getLogger(__name__)


def enqueue_grant_for_request(request_id: int) -> None:
    """After an approval commits (grants.receivers)."""
    schedule_apply(request_id)


@shared_task(acks_late=True, ignore_result=True)
def apply_request(request_id: int) -> None:
    result = services.grant_apply_request(request_id=request_id)
    if result is not None:
        logger.info("apply_request(%s): %s", request_id, result.summary())


def _moment(requested_at: float | None):
    return None if requested_at is None else datetime.fromtimestamp(requested_at, UTC)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_target(target_id: int, check: bool = False, requested_at: float | None = None):
    result = reconciler.reconcile_environment(
        target_id, check=check, requested_at=_moment(requested_at)
    )
    logger.info("reconcile_target(%s): %s", target_id, result.summary())


@shared_task(acks_late=True, ignore_result=True)
def reconcile_org_secret(
    org_secret_id: int, check: bool = False, requested_at: float | None = None
):
    result = reconciler.reconcile_org_secret(
        org_secret_id, check=check, requested_at=_moment(requested_at)
    )
    logger.info("reconcile_org_secret(%s): %s", org_secret_id, result.summary())


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> None:
    services.grants_sweep()


@shared_task(acks_late=True, ignore_result=True)
def drift_check() -> None:
    count = drift.grants_drift_check()
    logger.info("drift_check: %d target(s) enqueued", count)


# --- deployment gates (grants.gates) ------------------------------------------------------------
#
# Enqueueing never raises: a message that is lost, or never sent, is found by the gates'
# sweep (beat, every AIRLOCK_SWEEP_SECONDS). A task delivered twice is harmless: deciding is
# compare-and-set and posting takes a claim and checks what is still owed.


def schedule_gate_post(gate_id: int, *, eta=None) -> None:
    try:
        post_deployment_gate.apply_async(args=[gate_id], eta=eta)
    except Exception:  # any broker error; the sweep is the guarantee
        logger.exception("Could not enqueue post_deployment_gate(%s); the sweep will", gate_id)


def enqueue_deployment_gates_for_request(request_id: int) -> None:
    """After a request became active or closed without access (grants.receivers).
    Most requests have no deployment waiting: a quick look here saves a message then."""
    if not gates.deployment_gates_wait_on(request_id=request_id):
        return
    try:
        follow_request_gates.apply_async(args=[request_id])
    except Exception:
        logger.exception("Could not enqueue follow_request_gates(%s); the sweep will", request_id)


@shared_task(acks_late=True, ignore_result=True)
def post_deployment_gate(gate_id: int) -> None:
    outcome = gates.deployment_gate_post(gate_id=gate_id)
    logger.info("post_deployment_gate(%s): %s", gate_id, outcome)
    if outcome == "retry":
        # Transient GitHub error: try again when the backoff ends, without waiting for the
        # sweep to notice.
        retry_at = (
            DeploymentGate.objects.filter(pk=gate_id)
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        schedule_gate_post(gate_id, eta=retry_at)


@shared_task(acks_late=True, ignore_result=True)
def follow_request_gates(request_id: int) -> None:
    decided = gates.deployment_gates_follow_request(request_id=request_id)
    if decided:
        logger.info("follow_request_gates(%s): %d gate(s) decided", request_id, decided)


@shared_task(acks_late=True, ignore_result=True)
def sweep_deployment_gates() -> None:
    gates.deployment_gates_sweep()
