"""Access ends with the run: the run's own release (POST /api/v1/runs/release), and the
`workflow_run` "completed" webhook's intake. A completed attempt ends every grant bound to
that attempt of the run, or an earlier one, and cancels their pending requests
(grants.services.run_access_end); each completion is recorded (WorkflowRunDelivery) and
acted on once (docs/api.md "The GitHub webhook")."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed
from core.names import NameRefused, canonical_repository
from grants.gates import GITHUB_ID_MAX, WEBHOOK_ACTOR
from grants.models import WorkflowRunDelivery
from grants.services import RunAccessEnded, RunEnd, run_access_end
from integrations.github.actions import WorkflowJob

logger = logging.getLogger(__name__)

# The one event and action that ends a run's access (the webhook ignores the others).
EVENT = "workflow_run"
ACTION = "completed"

# WorkflowRunDelivery.run_attempt is a PositiveIntegerField.
ATTEMPT_MAX = 2**31 - 1
CONCLUSION_MAX = 50
_CONCLUSION = re.compile(rf"[a-z_]{{1,{CONCLUSION_MAX}}}")


@dataclass(frozen=True)
class RunRelease:
    repository: str  # canonical
    run_id: int
    report: RunAccessEnded


def run_release(*, job: WorkflowJob) -> RunRelease:
    """A job gives back every grant bound to its run, and cancels the run's pending
    requests (its last step, `if: always()`). NotAllowed when its token names no run."""
    run = job.workflow_run
    if run is None:
        raise NotAllowed(
            "This job's OIDC token names no workflow run (run_id, run_attempt) to release."
        )
    try:
        repository = canonical_repository(job.repository)
    except NameRefused as refusal:
        raise NotAllowed(
            f"This job's OIDC token names a repository outside GitHub's naming rules: "
            f"{' '.join(refusal.messages)}"
        ) from None
    report = run_access_end(
        repository=repository, run_id=run.run_id, cause=RunEnd.RELEASED, by=job.get_username()
    )
    return RunRelease(repository=repository, run_id=run.run_id, report=report)


class CompletionReplayed(Exception):
    """This completion was received before, under this delivery id or another: nothing is
    done again. `delivery` is the one that acted on it."""

    def __init__(self, delivery: WorkflowRunDelivery):
        super().__init__(str(delivery))
        self.delivery = delivery


class DeliveryReplayed(Exception):
    """The webhook's X-GitHub-Delivery was received before, with another run's completion:
    refused. `delivery` is the one received under that id."""

    def __init__(self, delivery: WorkflowRunDelivery):
        super().__init__(delivery.delivery_id)
        self.delivery = delivery


@dataclass(frozen=True)
class RunCompletion:
    """The fields of a workflow_run "completed" payload Airlock uses."""

    repository: str  # canonical (core.names)
    run_id: int
    run_attempt: int
    conclusion: str  # "" when GitHub sent null


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _positive_int(value, *, maximum: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        return None
    return value


def run_completion_from_payload(payload) -> RunCompletion:
    """Read the payload, refusing (ValidationError, naming each field) one Airlock could
    not act on safely."""
    if not isinstance(payload, dict):
        raise ValidationError("The payload must be a JSON object.")
    errors = {}
    repository = None
    try:
        repository = canonical_repository(
            _object(payload.get("repository")).get("full_name"), field="repository.full_name"
        )
    except NameRefused as refusal:
        errors.update(refusal.message_dict)
    run = payload.get("workflow_run")
    if not isinstance(run, dict):
        errors["workflow_run"] = "Missing or not an object: the run that completed."
        run = {}
    run_id = _positive_int(run.get("id"), maximum=GITHUB_ID_MAX)
    if run_id is None and "workflow_run" not in errors:
        errors["workflow_run.id"] = "Missing or not a GitHub id (a positive 64-bit integer)."
    run_attempt = _positive_int(run.get("run_attempt"), maximum=ATTEMPT_MAX)
    if run_attempt is None and "workflow_run" not in errors:
        errors["workflow_run.run_attempt"] = (
            "Missing or not an attempt number (a positive integer, 1 for the first attempt)."
        )
    conclusion = run.get("conclusion")
    if conclusion is None:
        # GitHub's schema allows a null conclusion; the attempt ended all the same, and
        # refusing it would leave the run's access in place until it expires.
        conclusion = ""
    elif not isinstance(conclusion, str) or not _CONCLUSION.fullmatch(conclusion):
        if "workflow_run" not in errors:
            errors["workflow_run.conclusion"] = (
                f"Not a conclusion (null, or lower-case letters and underscores, at most "
                f"{CONCLUSION_MAX}, such as success or failure)."
            )
    if errors:
        raise ValidationError(errors)
    return RunCompletion(
        repository=repository, run_id=run_id, run_attempt=run_attempt, conclusion=conclusion
    )


def workflow_run_completion_receive(*, delivery_id: str, payload) -> WorkflowRunDelivery:
    """End the access bound to a run whose attempt completed, for a `workflow_run`
    "completed" webhook: the requests filed by that attempt or an earlier one (never a
    re-run's filed after it) are revoked or cancelled, and the engine removes their grants
    from GitHub after the commit. Recorded and audited once, with what it ended.

    Raises ValidationError for a payload Airlock cannot act on; CompletionReplayed when
    the completion was received before (the unique delivery id and completion refuse the
    insert, so of two replays at once one waits for the other and then fails);
    DeliveryReplayed when the delivery id came before with another run's completion.
    """
    completion = run_completion_from_payload(payload)
    try:
        with transaction.atomic():
            # Inserted first: the constraints make a concurrent replay wait here, then fail.
            delivery = WorkflowRunDelivery.objects.create(
                delivery_id=delivery_id,
                repository=completion.repository,
                run_id=completion.run_id,
                run_attempt=completion.run_attempt,
                conclusion=completion.conclusion,
            )
            ended = run_access_end(
                repository=completion.repository,
                run_id=completion.run_id,
                cause=RunEnd.COMPLETED,
                up_to_attempt=completion.run_attempt,
                by=f"delivery {delivery_id}",
            )
            delivery.grants_ended = len(ended.ended)
            delivery.requests_cancelled = len(ended.cancelled)
            WorkflowRunDelivery.objects.filter(pk=delivery.pk).update(
                grants_ended=delivery.grants_ended,
                requests_cancelled=delivery.requests_cancelled,
            )
            audit.log_event(
                action=AuditAction.GITHUB_WORKFLOW_RUN_COMPLETED,
                actor_label=WEBHOOK_ACTOR,
                target=delivery,
                detail={
                    "delivery": delivery_id,
                    "repository": completion.repository,
                    "run_id": completion.run_id,
                    "run_attempt": completion.run_attempt,
                    "conclusion": completion.conclusion,
                    "grants_ended": delivery.grants_ended,
                    "requests_cancelled": delivery.requests_cancelled,
                    "ended": [r.pk for r in ended.ended],
                    "cancelled": [r.pk for r in ended.cancelled],
                },
            )
    except IntegrityError:
        earlier = WorkflowRunDelivery.objects.filter(delivery_id=delivery_id).first()
        if earlier is not None and (
            earlier.repository,
            earlier.run_id,
            earlier.run_attempt,
        ) != (completion.repository, completion.run_id, completion.run_attempt):
            raise DeliveryReplayed(earlier) from None
        if earlier is None:
            earlier = WorkflowRunDelivery.objects.filter(
                repository=completion.repository,
                run_id=completion.run_id,
                run_attempt=completion.run_attempt,
            ).first()
        if earlier is None:
            raise
        raise CompletionReplayed(earlier) from None
    return delivery


def completion_message(delivery: WorkflowRunDelivery) -> str:
    """What the webhook answers for a completion it acted on."""
    grants = "grant" if delivery.grants_ended == 1 else "grants"
    pending = "pending request" if delivery.requests_cancelled == 1 else "pending requests"
    attempt = f" (attempt {delivery.run_attempt})" if delivery.run_attempt > 1 else ""
    return (
        f"Run {delivery.run_id}{attempt} of {delivery.repository} completed: "
        f"{delivery.grants_ended} {grants} ended, {delivery.requests_cancelled} {pending} "
        "cancelled."
    )
