"""Enqueueing the grant engine's Celery tasks; a failed publish never undoes the change that
asked for it, since the sweep finds due work from the database alone."""

import logging
from datetime import datetime

from django.utils import timezone

logger = logging.getLogger(__name__)


def schedule_reconcile(model, pk: int, *, eta: datetime | None = None, check=False) -> None:
    from grants import tasks
    from grants.models import Target

    task = tasks.reconcile_target if model is Target else tasks.reconcile_org_secret
    # When the work was asked for (for an ETA, when it is due): a pass that starts later
    # covers it, so the task is dropped if one has completed by the time it runs.
    requested_at = (eta or timezone.now()).timestamp()
    try:
        task.apply_async(args=[pk], kwargs={"check": check, "requested_at": requested_at}, eta=eta)
    except Exception:  # any broker error; the sweep is the guarantee
        logger.exception("Could not enqueue %s(%s); the sweep will pick it up", task.name, pk)


def schedule_apply(request_id: int) -> None:
    from grants import tasks

    try:
        tasks.apply_request.apply_async(args=[request_id])
    except Exception:
        logger.exception("Could not enqueue apply_request(%s); the sweep will", request_id)
