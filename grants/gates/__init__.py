"""Deployment gates: Airlock as a GitHub custom deployment protection rule
(docs/deployment-gates.md)."""

from grants.gates.deciding import (
    CLOSED_WITHOUT_ACCESS,
    GATE_HORIZON,
    OPEN_STATUSES,
    deployment_gates_follow_request,
    deployment_gates_wait_on,
)
from grants.gates.intake import (
    ACTION,
    EVENT,
    GITHUB_ID_MAX,
    WEBHOOK_ACTOR,
    DeliveryReplayed,
    EventReplayed,
    GateRequest,
    deployment_gate_receive,
    gate_request_from_payload,
)
from grants.gates.outbox import CLAIM_SECONDS, deployment_gate_post
from grants.gates.sweep import deployment_gates_sweep

__all__ = [
    "ACTION",
    "CLAIM_SECONDS",
    "CLOSED_WITHOUT_ACCESS",
    "EVENT",
    "GATE_HORIZON",
    "GITHUB_ID_MAX",
    "OPEN_STATUSES",
    "WEBHOOK_ACTOR",
    "DeliveryReplayed",
    "EventReplayed",
    "GateRequest",
    "deployment_gate_post",
    "deployment_gate_receive",
    "deployment_gates_follow_request",
    "deployment_gates_sweep",
    "deployment_gates_wait_on",
    "gate_request_from_payload",
]
