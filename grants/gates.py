"""Deployment gates: Airlock as a GitHub custom deployment protection rule.

When a workflow job reaches an environment that has Airlock's GitHub App enabled as a
protection rule, GitHub sends a `deployment_protection_rule` webhook and keeps the job
waiting until the App answers through the run's callback. These services decide, record
and post that answer:

- Receipt (deployment_gate_receive). The person who triggered the run is the webhook's
  `sender` (GitHub: "the user that triggered the event"; for a workflow job it is the run's
  actor, and also the deployment's creator). When they hold an active grant for the
  environment (a request of theirs that is active with expires_at in the future, like the
  grant check), the gate is approved at once. Otherwise it waits, and a status comment
  (a callback with a comment and no state, which GitHub shows on the run without deciding)
  links to the request that is open for it, or to a prefilled new request. An event is
  acted on once: the delivery id is not signed, so the gate keeps what the event is about
  (its subject, unique), and a replay under any delivery id changes and posts nothing.
- A grant becoming active approves the waiting gates of that person and environment; a
  request that ends (denied, cancelled, timed out, failed; or revoked, expired) rejects the
  gates that were waiting while it was open, unless another open request of theirs for the
  environment may still grant it (deployment_gates_follow_request, run after those
  transitions commit).
- Restricted grants. The webhook does not name the workflow, and names the ref without
  saying whether it is a branch or a tag ("main"), so a grant restricted to a workflow never
  approves a gate, and one restricted to refs only when the ref arrives fully qualified
  ("refs/heads/main"). The status comment says so.
- Posting (deployment_gate_post) happens outside any transaction, as an outbox: the
  decision is recorded and audited first; posted_at is set once GitHub has accepted it.
  Transient errors are retried with backoff (next_attempt_at), permanent ones are recorded
  and audited and the gate is left alone, until a later decision gives it fresh attempts.
- The sweep (deployment_gates_sweep, from beat) is the guarantee: it approves or rejects
  waiting gates whose outcome a lost message did not deliver, and posts what is unposted.

Every receipt, decision and write to GitHub is in the audit log, in the transaction of the
change it records.

This lives beside grants/services.py rather than in it: it is one feature with its own
model and its own beat entry, and the grant engine's services do not depend on it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

import audit
from core.durations import exponential_backoff
from core.names import NameRefused, ascii_lower, canonical_environment, canonical_repository
from grants.check import restriction_refusal
from grants.models import DeploymentGate
from integrations import github
from requests_app.models import AccessRequest

logger = logging.getLogger(__name__)

State = DeploymentGate.State
Status = AccessRequest.Status

# Requests that have ended: a gate still waiting on one is rejected (denied, cancelled,
# timed out or failed: access never came; revoked or expired: it is gone, and whatever
# waits was not covered by it).
CLOSED_WITHOUT_ACCESS = AccessRequest.CLOSED_STATUSES
OPEN_STATUSES = AccessRequest.OPEN_STATUSES
# GitHub stops waiting for a custom protection rule after 30 days; the sweep stops looking.
GATE_HORIZON = timedelta(days=30)
CLAIM_SECONDS = 120
RETRY_BASE_SECONDS = 15
RETRY_CAP_SECONDS = 900
MAX_COMMENT = 1000
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


# --- receipt -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRequest:
    """The fields of a deployment_protection_rule "requested" payload Airlock uses."""

    repository: str
    environment: str
    run_id: int
    callback_url: str
    installation_id: int
    login: str
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
    login = _text(_object(payload.get("sender")).get("login"), limit=100)
    if not login:
        errors["sender.login"] = "Missing: who triggered the run."
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
                deployment_id=request.deployment_id,
                event=request.event,
                ref=request.ref,
                sha=request.sha,
            )
            covering, refusals = _covering_request(gate, now)
            audit.log_event(
                action="deployment_gate.requested",
                actor_label=WEBHOOK_ACTOR,
                target=gate,
                detail={
                    "delivery": delivery_id,
                    "repository": gate.repository,
                    "environment": gate.environment,
                    "run_id": gate.run_id,
                    "login": gate.login,
                    "event": gate.event,
                    "ref": gate.ref,
                    "sha": gate.sha,
                    "deployment_id": gate.deployment_id,
                    "installation_id": gate.installation_id,
                    "covered_by": covering.pk if covering else None,
                },
            )
            if covering is not None:
                _decide(gate, State.APPROVED, access_request=covering, now=now)  # posts it
            else:
                comment = _waiting_comment(gate, refusals)
                DeploymentGate.objects.filter(pk=gate.pk).update(comment=comment)
                gate.comment = comment
                gate_id = gate.pk
                transaction.on_commit(lambda: _enqueue_post(gate_id))
    except IntegrityError:
        replayed = DeploymentGate.objects.filter(subject=request.subject).first()
        if replayed is not None:
            raise EventReplayed(replayed) from None
        if DeploymentGate.objects.filter(delivery_id=delivery_id).exists():
            raise DeliveryReplayed(delivery_id) from None
        raise
    return gate


# --- deciding ------------------------------------------------------------------------------------


def _qualified_ref(ref: str) -> str | None:
    # "main" could be a branch or a tag: a ref restriction is matched only against a ref
    # that says which ("refs/heads/main"); an ambiguous one counts as unknown.
    return ref if ref.startswith("refs/") else None


def _covering_request(gate: DeploymentGate, now: datetime):
    """The active request (longest-lasting first) whose grant covers the gate, and why
    each other active one does not (restrictions)."""
    in_force = AccessRequest.objects.in_force(now).filter(
        repository=gate.repository,
        environment=gate.environment,
        requester__username__iexact=gate.login,
    ).order_by("-expires_at", "-pk")
    refusals = []
    for candidate in in_force[:50]:
        refusal = restriction_refusal(
            candidate, job_workflow_ref=None, ref=_qualified_ref(gate.ref)
        )
        if not refusal:
            return candidate, refusals
        refusals.append(f"request #{candidate.pk}: {refusal}")
    return None, refusals


def _decide(gate, state, *, access_request, now, reason: str = "") -> bool:
    """pending → approved/rejected, compare-and-set, audited in the caller's transaction;
    the post to GitHub is enqueued after the commit. False if it was decided already."""
    comment = (
        _approved_comment(gate, access_request)
        if state == State.APPROVED
        else _rejected_comment(gate, access_request)
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
        action=f"deployment_gate.{state}",
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
    transaction.on_commit(lambda: _enqueue_post(gate_id))
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
    return _follow(access_request, timezone.now())


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
    return access_request is not None and _waiting_gates(access_request, now).exists()


def _waiting_gates(access_request, now):
    return DeploymentGate.objects.filter(
        state=State.PENDING,
        repository=access_request.repository,
        environment=access_request.environment,
        login__iexact=access_request.requester.get_username(),
        created_at__gte=now - GATE_HORIZON,
    ).order_by("pk")


def _follow(access_request, now) -> int:
    decided = 0
    if access_request.status == Status.ACTIVE and access_request.expires_at > now:
        for gate in _waiting_gates(access_request, now):
            refusal = restriction_refusal(
                access_request, job_workflow_ref=None, ref=_qualified_ref(gate.ref)
            )
            if refusal:
                continue
            with transaction.atomic():
                decided += _decide(gate, State.APPROVED, access_request=access_request, now=now)
    elif access_request.status in CLOSED_WITHOUT_ACCESS:
        closed_at = _closed_at(access_request)
        if closed_at is None or _has_open_request(access_request):
            return 0
        for gate in _waiting_gates(access_request, now).filter(created_at__lte=closed_at):
            with transaction.atomic():
                decided += _decide(gate, State.REJECTED, access_request=access_request, now=now)
    return decided


def _closed_at(access_request) -> datetime | None:
    if access_request.status in (Status.FAILED, Status.REVOKED, Status.EXPIRED):
        return access_request.ended_at or access_request.decided_at
    return access_request.decided_at


def _has_open_request(access_request) -> bool:
    return (
        AccessRequest.objects.filter(
            status__in=OPEN_STATUSES,
            repository=access_request.repository,
            environment=access_request.environment,
            requester_id=access_request.requester_id,
        )
        .exclude(pk=access_request.pk)
        .exists()
    )


# --- what GitHub shows ---------------------------------------------------------------------------


def _portal_url(path: str) -> str:
    return settings.AIRLOCK_BASE_URL.rstrip("/") + path


def _target(gate) -> str:
    return f"{gate.repository} environment '{gate.environment}'"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_COMMENT else text[: MAX_COMMENT - 1] + "…"


def _approved_comment(gate, access_request) -> str:
    return _clip(
        f"Airlock: approved. {gate.login} holds {access_request.access} access to "
        f"{_target(gate)} until {access_request.expires_at:%Y-%m-%d %H:%M %Z} "
        f"(request #{access_request.pk}: "
        f"{_portal_url(reverse('requests_app:detail', args=[access_request.pk]))})."
    )


_CLOSED_WORDS = {
    Status.DENIED: "was denied",
    Status.CANCELLED: "was cancelled",
    Status.TIMED_OUT: "timed out before it was decided",
    Status.FAILED: "failed: GitHub refused the grant",
    Status.REVOKED: "was revoked",
    Status.EXPIRED: "expired",
}


def _rejected_comment(gate, access_request) -> str:
    words = _CLOSED_WORDS.get(access_request.status, f"is {access_request.status}")
    why = f": {access_request.close_comment}" if access_request.close_comment else ""
    if access_request.status == Status.FAILED:
        why = f" ({access_request.close_comment})" if access_request.close_comment else ""
    return _clip(
        f"Airlock: rejected. {gate.login}'s request #{access_request.pk} for {_target(gate)} "
        f"{words}{why}. Ask again at {_new_request_url(gate)} and re-run the job."
    )


def _new_request_url(gate) -> str:
    query = urlencode(
        {"repository": gate.repository, "environment": gate.environment, "access": "reviewer"}
    )
    return _portal_url(f"{reverse('requests_app:new')}?{query}")


def _waiting_comment(gate, refusals: list[str]) -> str:
    open_request = (
        AccessRequest.objects.filter(
            status__in=(Status.PENDING, Status.APPROVED),
            repository=gate.repository,
            environment=gate.environment,
            requester__username__iexact=gate.login,
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    if refusals:
        held = (
            f"{gate.login}'s active grant does not cover this deployment "
            f"({'; '.join(refusals)}; a deployment webhook names no workflow, and a ref "
            "only by name)."
        )
    else:
        held = f"{gate.login} holds no active Airlock grant for {_target(gate)}."
    if open_request is not None:
        follow = (
            f"Request #{open_request.pk} is {open_request.status}: "
            f"{_portal_url(reverse('requests_app:detail', args=[open_request.pk]))}"
        )
    else:
        follow = f"Request access: {_new_request_url(gate)}"
    return _clip(
        f"Airlock: waiting. {held} {follow}. This deployment is approved as soon as a grant "
        "is active, and rejected if the request is denied or times out."
    )


# --- posting to GitHub (outbox) ------------------------------------------------------------------


def _enqueue_post(gate_id: int) -> None:
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
                "github.deployment_protection_rule_reviewed"
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
            action="deployment_gate.post_failed",
            target=gate,
            reason=message,
            detail={"posting": due, "state": gate.state, "run_id": gate.run_id},
        )
    logger.error("Deployment gate %s: GitHub refused the %s: %s", gate.pk, due, message)
    return "failed"


# --- the sweep -----------------------------------------------------------------------------------


def deployment_gates_sweep(*, now: datetime | None = None) -> dict:
    """The guarantee behind the after-commit messages (beat, every AIRLOCK_SWEEP_SECONDS):
    decide waiting gates whose grant became active or whose request closed, and enqueue the
    posts still owed to GitHub whose next attempt is due."""
    now = now or timezone.now()
    decided = 0
    waiting = DeploymentGate.objects.filter(
        state=State.PENDING, created_at__gte=now - GATE_HORIZON
    )
    seen = set()
    for gate in waiting.order_by("pk"):
        key = (gate.repository, gate.environment, gate.login.casefold())
        if key in seen:
            continue
        seen.add(key)
        people = AccessRequest.objects.select_related("requester").filter(
            repository=gate.repository,
            environment=gate.environment,
            requester__username__iexact=gate.login,
        )
        covering, _ = _covering_request(gate, now)
        if covering is not None:
            decided += _follow(covering, now)
            continue
        # The request that ended last covers every gate opened before it ended; only those
        # that ended after this key's oldest waiting gate (this one) can reject anything.
        ended = [
            r
            for r in people.filter(status__in=CLOSED_WITHOUT_ACCESS).filter(
                Q(decided_at__gte=gate.created_at) | Q(ended_at__gte=gate.created_at)
            )
            if (_closed_at(r) or gate.created_at) >= gate.created_at
        ]
        if ended:
            decided += _follow(max(ended, key=lambda r: (_closed_at(r), r.pk)), now)

    owed = DeploymentGate.objects.filter(gave_up_at__isnull=True).filter(
        Q(state__in=DeploymentGate.DECIDED_STATES, posted_at__isnull=True)
        | Q(state=State.PENDING, notice_posted_at__isnull=True, created_at__gte=now - GATE_HORIZON)
    )
    due = owed.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    posts = list(due.values_list("pk", flat=True)[:500])
    for gate_id in posts:
        _enqueue_post(gate_id)
    if decided or posts:
        logger.info("Deployment gates: %d decided, %d post(s) enqueued", decided, len(posts))
    return {"decided": decided, "posts": len(posts)}
