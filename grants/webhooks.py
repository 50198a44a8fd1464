"""POST /github/webhook: the GitHub App's webhook, for its deployment protection rule and
for runs that completed (its answers: docs/api.md "The GitHub webhook")."""

import hashlib
import hmac
import logging
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from grants import gates, runs
from integrations import github
from portal.parsers import JSONTooDeep, parse_json

logger = logging.getLogger(__name__)

# GitHub's delivery ids are GUIDs; anything printable and short is kept.
DELIVERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def signature_is_valid(*, secret: str, body: bytes, signature: str) -> bool:
    """X-Hub-Signature-256 is "sha256=" followed by the hex HMAC-SHA256 of the raw body."""
    scheme, _, given = signature.partition("=")
    if scheme != "sha256" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


def _answer(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"message": message, **extra}, status=status)


def _refused_payload(refusal: ValidationError) -> JsonResponse:
    errors = refusal.message_dict if hasattr(refusal, "error_dict") else {}
    message = "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in errors.items()
    ) or "; ".join(refusal.messages)
    return _answer(400, f"The payload cannot be acted on: {message}", errors=errors)


def _run_completed(*, delivery_id: str, payload) -> JsonResponse:
    try:
        delivery = runs.workflow_run_completion_receive(delivery_id=delivery_id, payload=payload)
    except runs.CompletionReplayed as replay:
        earlier = replay.delivery
        logger.warning(
            "GitHub webhook delivery %s repeats the completion received as delivery %s; ignored",
            delivery_id,
            earlier.delivery_id,
        )
        return _answer(
            200,
            f"Delivery {earlier.delivery_id} ({earlier}) was already received; nothing was "
            "done.",
            delivery=earlier.delivery_id,
        )
    except runs.DeliveryReplayed:
        logger.warning("GitHub webhook delivery %s reused for another run; refused", delivery_id)
        return _answer(409, f"Delivery {delivery_id} was already received; nothing was done.")
    except ValidationError as refusal:
        return _refused_payload(refusal)
    return _answer(
        202,
        runs.completion_message(delivery),
        delivery=delivery.delivery_id,
        grants_ended=delivery.grants_ended,
        requests_cancelled=delivery.requests_cancelled,
    )


@csrf_exempt  # GitHub cannot send a CSRF token; the signature authenticates the delivery
@require_POST
def github_webhook(request):
    secret = settings.AIRLOCK_GITHUB_WEBHOOK_SECRET
    if not secret:
        return _answer(
            503, "webhook secret not configured: set AIRLOCK_GITHUB_WEBHOOK_SECRET"
        )
    try:
        body = request.body
    except RequestDataTooBig:
        return _answer(413, "The payload is too large.")
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature_is_valid(secret=secret, body=body, signature=signature):
        logger.warning(
            "GitHub webhook refused: %s X-Hub-Signature-256",
            "bad" if signature else "missing",
        )
        return _answer(
            401, "Missing or bad X-Hub-Signature-256: not signed with the webhook secret."
        )

    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not DELIVERY_ID.fullmatch(delivery_id):
        return _answer(400, "Missing or malformed X-GitHub-Delivery header.")
    event = request.headers.get("X-GitHub-Event", "")
    try:
        payload = parse_json(body)
    except JSONTooDeep as refusal:
        return _answer(400, f"The body is not JSON: {refusal}")
    except ValueError:
        return _answer(400, "The body is not JSON.")
    action = payload.get("action") if isinstance(payload, dict) else None
    if event == runs.EVENT and action == runs.ACTION:
        # Needs no App credentials: ending access writes nothing but the engine's removals.
        return _run_completed(delivery_id=delivery_id, payload=payload)
    if event != gates.EVENT or action != gates.ACTION:
        return HttpResponse(status=204)

    if not github.app_credentials_configured():
        logger.error("Deployment protection rule webhook received without App credentials")
        return _answer(
            503,
            "GitHub App credentials not configured (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY): "
            "Airlock cannot answer the deployment protection rule.",
        )
    try:
        gate = gates.deployment_gate_receive(delivery_id=delivery_id, payload=payload)
    except gates.EventReplayed as replay:
        gate = replay.gate
        logger.warning(
            "GitHub webhook delivery %s repeats the event of deployment gate %s; ignored",
            delivery_id,
            gate.pk,
        )
        return _answer(
            200,
            f"Deployment gate #{gate.pk} was opened for this deployment already (run "
            f"{gate.run_id}, environment {gate.environment}); nothing was done again.",
            gate=gate.pk,
        )
    except gates.DeliveryReplayed:
        logger.warning("GitHub webhook delivery %s reused for another event; refused", delivery_id)
        return _answer(409, f"Delivery {delivery_id} was already received; nothing was done.")
    except ValidationError as refusal:
        errors = refusal.message_dict if hasattr(refusal, "error_dict") else {}
        message = "; ".join(refusal.messages)
        return _answer(400, f"The payload cannot be acted on: {message}", errors=errors)
    return _answer(
        202,
        f"Deployment gate #{gate.pk} is {gate.state}.",
        gate=gate.pk,
        state=gate.state,
    )
