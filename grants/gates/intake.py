"""A gate's intake: reading a deployment_protection_rule webhook and opening its gate,
decided at once when an active grant covers it (docs/deployment-gates.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.names import NameRefused, ascii_lower, canonical_environment, canonical_repository
from grants.gates.comments import waiting_comment
from grants.gates.deciding import State, covering_request, decide
from grants.gates.outbox import enqueue_post
from grants.models import DeploymentGate
from integrations import github

WEBHOOK_ACTOR = "github-webhook"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# The one event and action that opens a gate (the webhook ignores the others).
EVENT = "deployment_protection_rule"
ACTION = "requested"


class EventReplayed(Exception):
    """The event was received before, under this delivery id or another: nothing is done
    again. `gate` is the gate it opened."""

    def __init__(self, gate: DeploymentGate):
        super().__init__(gate.subject)
        self.gate = gate


class DeliveryReplayed(Exception):
    """The webhook's X-GitHub-Delivery was received before, with another event: refused."""




@dataclass(frozen=True)
class GateRequest:
    """The fields of a deployment_protection_rule "requested" payload Airlock uses."""

    repository: str
    environment: str
    run_id: int
    callback_url: str
    installation_id: int
    login: str
    # The sender's GitHub id: who they are, whatever their login is now.
    sender_id: int
    deployment_id: int | None
    event: str
    ref: str
    sha: str

    @property
    def subject(self) -> str:
        """What the event is about, as DeploymentGate.subject keeps it: a re-run of a job
        is a new deployment of the same run, and one run may wait on several environments.
        The environment (canonical: core.names) comes last, so no two subjects spell the same.
        (Without a deployment, which GitHub's schema allows, the run and environment say
        it alone.)"""
        return (
            f"{EVENT}.{ACTION} installation={self.installation_id} run={self.run_id} "
            f"deployment={self.deployment_id or '-'} environment={self.environment}"
        )


def _text(value, *, limit: int) -> str | None:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        return None
    return value


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


# GitHub's ids are kept in BigIntegerFields: one beyond them is no id GitHub sent.
GITHUB_ID_MAX = 2**63 - 1


def _github_id(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= GITHUB_ID_MAX:
        return None
    return value


def gate_request_from_payload(payload) -> GateRequest:
    """Read the payload, refusing (ValidationError, naming the field) anything Airlock
    could not act on safely. The callback URL must be GITHUB_API_URL's own endpoint for
    the payload's repository (github.deployment_callback_target)."""
    if not isinstance(payload, dict):
        raise ValidationError("The payload must be a JSON object.")
    errors = {}
    # Kept in canonical form (core.names): the gate is matched to grants by plain equality.
    repository = environment = None
    try:
        repository = canonical_repository(
            _object(payload.get("repository")).get("full_name"), field="repository.full_name"
        )
    except NameRefused as refusal:
        errors.update(refusal.message_dict)
    try:
        environment = canonical_environment(payload.get("environment"))
    except NameRefused as refusal:
        errors.update(refusal.message_dict)
    installation_id = _github_id(_object(payload.get("installation")).get("id"))
    if installation_id is None:
        errors["installation.id"] = "Missing or not an id: the webhook must come from a GitHub App."
    sender = _object(payload.get("sender"))
    login = _text(sender.get("login"), limit=100)
    if not login:
        errors["sender.login"] = "Missing: who triggered the run."
    sender_id = _github_id(sender.get("id"))
    if sender_id is None:
        errors["sender.id"] = (
            "Missing or not a GitHub id: whose GitHub account triggered the run."
        )
    callback_url = _text(payload.get("deployment_callback_url"), limit=2000) or ""
    run_id = None
    try:
        callback_repository, run_id = github.deployment_callback_target(callback_url)
    except github.CallbackUrlError as refusal:
        errors["deployment_callback_url"] = str(refusal)
    else:
        if repository and ascii_lower(callback_repository) != repository:
            errors["deployment_callback_url"] = (
                f"It names {callback_repository}, not the payload's repository {repository}."
            )
        elif _github_id(run_id) is None:
            errors["deployment_callback_url"] = f"Run id {run_id} is not a GitHub id."
    # GitHub's schema allows a null deployment; one that is there must have a usable id.
    deployment_id = _object(payload.get("deployment")).get("id")
    if deployment_id is not None and _github_id(deployment_id) is None:
        errors["deployment.id"] = "Not a GitHub id (a positive 64-bit integer)."
    optional = {}
    for name, limit in (("event", 100), ("ref", 255), ("sha", 64)):
        value = payload.get(name)
        if value is None:
            optional[name] = ""
        elif (text := _text(value, limit=limit)) is None:
            errors[name] = f"Not a string of at most {limit} characters."
        else:
            optional[name] = text
    if errors:
        raise ValidationError(errors)
    return GateRequest(
        repository=repository,
        environment=environment,
        run_id=run_id,
        callback_url=callback_url,
        installation_id=installation_id,
        login=login,
        sender_id=sender_id,
        deployment_id=deployment_id,
        **optional,
    )


def deployment_gate_receive(*, delivery_id: str, payload) -> DeploymentGate:
    """Open a gate for a `deployment_protection_rule` "requested" webhook, and decide it at
    once when an active grant covers it. The answer is posted to GitHub after the commit.

    Raises ValidationError for a payload Airlock cannot act on; EventReplayed when its event
    was received before (the unique subject refuses the insert, so of two replays at once
    one waits for the other and then fails); DeliveryReplayed when the delivery id came
    before with another event.
    """
    request = gate_request_from_payload(payload)
    now = timezone.now()
    try:
        with transaction.atomic():
            gate = DeploymentGate.objects.create(
                delivery_id=delivery_id,
                subject=request.subject,
                repository=request.repository,
                environment=request.environment,
                run_id=request.run_id,
                callback_url=request.callback_url,
                installation_id=request.installation_id,
                login=request.login,
                sender_id=request.sender_id,
                deployment_id=request.deployment_id,
                event=request.event,
                ref=request.ref,
                sha=request.sha,
            )
            covering, refusals = covering_request(gate, now)
            audit.log_event(
                action=AuditAction.DEPLOYMENT_GATE_REQUESTED,
                actor_label=WEBHOOK_ACTOR,
                target=gate,
                detail={
                    "delivery": delivery_id,
                    "repository": gate.repository,
                    "environment": gate.environment,
                    "run_id": gate.run_id,
                    "login": gate.login,
                    "sender_id": gate.sender_id,
                    "event": gate.event,
                    "ref": gate.ref,
                    "sha": gate.sha,
                    "deployment_id": gate.deployment_id,
                    "installation_id": gate.installation_id,
                    "covered_by": covering.pk if covering else None,
                },
            )
            if covering is not None:
                decide(gate, State.APPROVED, access_request=covering, now=now)  # posts it
            else:
                comment = waiting_comment(gate, refusals)
                DeploymentGate.objects.filter(pk=gate.pk).update(comment=comment)
                gate.comment = comment
                gate_id = gate.pk
                transaction.on_commit(lambda: enqueue_post(gate_id))
    except IntegrityError:
        replayed = DeploymentGate.objects.filter(subject=request.subject).first()
        if replayed is not None:
            raise EventReplayed(replayed) from None
        if DeploymentGate.objects.filter(delivery_id=delivery_id).exists():
            raise DeliveryReplayed(delivery_id) from None
        raise
    return gate
