"""Celery tasks of the grant engine: thin, idempotent, loading by id.

Every task re-reads the database and may run twice, or at the same time as another copy:
the reconciler's lease lets one worker at a time work on a target, and every transition is
a compare-and-set. acks_late (with reject-on-worker-lost, set globally) means a task a
dying worker held is delivered again; if the broker loses it instead, the beat sweep finds
the work in the database. Transient GitHub errors are not retried here by Celery: the
reconciler records them on the grants (next_attempt_at, overdue) and the sweep tries again.
"""

import logging

from celery import shared_task

from grants import reconciler, services
from grants.scheduling import schedule_apply

logger = logging.getLogger(__name__)


def enqueue_grant_for_request(request_id: int) -> None:
    """Called by requests_app after an approval commits."""
    schedule_apply(request_id)


@shared_task(acks_late=True, ignore_result=True)
def apply_request(request_id: int) -> None:
    result = services.grant_apply_request(request_id=request_id)
    if result is not None:
        logger.info("apply_request(%s): %s", request_id, result.summary())


@shared_task(acks_late=True, ignore_result=True)
def reconcile_target(target_id: int, check: bool = False) -> None:
    result = reconciler.reconcile_environment(target_id, check=check)
    logger.info("reconcile_target(%s): %s", target_id, result.summary())


@shared_task(acks_late=True, ignore_result=True)
def reconcile_org_secret(org_secret_id: int, check: bool = False) -> None:
    result = reconciler.reconcile_org_secret(org_secret_id, check=check)
    logger.info("reconcile_org_secret(%s): %s", org_secret_id, result.summary())


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> None:
    services.grants_sweep()


@shared_task(acks_late=True, ignore_result=True)
def drift_check() -> None:
    count = services.grants_drift_check()
    logger.info("drift_check: %d target(s) enqueued", count)
