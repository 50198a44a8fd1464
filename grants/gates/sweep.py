"""The gates' sweep (beat): decides what a lost message did not, and enqueues the posts
still owed to GitHub."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from grants.gates.deciding import (
    CLOSED_WITHOUT_ACCESS,
    GATE_HORIZON,
    State,
    covering_request,
    follow,
    gate_requests,
    request_closed_at,
)
from grants.gates.outbox import enqueue_post
from grants.models import DeploymentGate

logger = logging.getLogger(__name__)


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
        # Per run too: a run-bound grant covers only its own run's deployments.
        # The person as the gate names them: their GitHub id where the gate keeps it.
        person = gate.sender_id if gate.sender_id is not None else gate.login.casefold()
        key = (gate.repository, gate.environment, person, gate.run_id)
        if key in seen:
            continue
        seen.add(key)
        people = gate_requests(gate).select_related("requester")
        covering, _ = covering_request(gate, now)
        if covering is not None:
            decided += follow(covering, now)
            continue
        # The request that ended last covers every gate opened before it ended; only those
        # that ended after this key's oldest waiting gate (this one) can reject anything.
        ended = [
            r
            for r in people.filter(status__in=CLOSED_WITHOUT_ACCESS).filter(
                Q(decided_at__gte=gate.created_at) | Q(ended_at__gte=gate.created_at)
            )
            if (request_closed_at(r) or gate.created_at) >= gate.created_at
        ]
        # Latest first: a run-bound request rejects only its own run's gates, so an earlier
        # one may still have gates of its own to reject.
        for closed in sorted(ended, key=lambda r: (request_closed_at(r), r.pk), reverse=True):
            decided += follow(closed, now)

    owed = DeploymentGate.objects.filter(gave_up_at__isnull=True).filter(
        Q(state__in=DeploymentGate.DECIDED_STATES, posted_at__isnull=True)
        | Q(state=State.PENDING, notice_posted_at__isnull=True, created_at__gte=now - GATE_HORIZON)
    )
    due = owed.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    posts = list(due.values_list("pk", flat=True)[:500])
    for gate_id in posts:
        enqueue_post(gate_id)
    if decided or posts:
        logger.info("Deployment gates: %d decided, %d post(s) enqueued", decided, len(posts))
    return {"decided": decided, "posts": len(posts)}
