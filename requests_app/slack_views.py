"""Slack's calls to Airlock: the Approve and Deny buttons of a request card (and the deny
modal's comment), POST /slack/interactions; and the slash command `/airlock link`, POST
/slack/commands. Both are signed by Slack (v0, AIRLOCK_SLACK_SIGNING_SECRET), checked over
the raw body before anything is parsed, and each signed call acts once.

Slack wants its answer within three seconds. The decision itself is a service call made
inline (a few queries). The only Slack API calls made before answering are views.open,
which must be (its trigger_id lives three seconds), and chat.postEphemeral for a refusal;
both use INLINE_TIMEOUT_SECONDS, so a slow Slack costs at most that before we answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from urllib.parse import parse_qs

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from integrations.slack.client import SlackClient, SlackError
from requests_app.models import AccessRequest
from requests_app.selectors import request_refusal_for_decider
from requests_app.services import access_request_approve, access_request_deny
from requests_app.services.slack_links import (
    slack_delivery_record,
    slack_link_code_create,
    slack_user_account,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_AGE_SECONDS = 5 * 60
INLINE_TIMEOUT_SECONDS = 2
APPROVE, DENY = "airlock_approve", "airlock_deny"
DENY_CALLBACK = "airlock_deny"
COMMENT_BLOCK, COMMENT_ACTION = "comment", "comment"
COMMENT_MAX = 2000
# Slack's ids (T…, U…, W…, C…): anything else is refused before it reaches a query.
SLACK_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
LINK_FIRST = "Your Slack account is not linked to Airlock: run `/airlock link` first."


class Refused(Exception):
    """A call we answer without acting on it: status and the message saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def signature_base(timestamp: str, body: bytes) -> bytes:
    return b"v0:" + timestamp.encode() + b":" + body


def expected_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), signature_base(timestamp, body), hashlib.sha256)
    return "v0=" + mac.hexdigest()


def verified_body(request) -> bytes:
    """The raw body of a call Slack signed less than five minutes ago and that was not seen
    before, or Refused."""
    secret = settings.AIRLOCK_SLACK_SIGNING_SECRET
    if not secret:
        raise Refused(503, "Slack is not configured here (AIRLOCK_SLACK_SIGNING_SECRET).")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise Refused(413, f"Body over {MAX_BODY_BYTES} bytes.")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise Refused(413, f"Body over {MAX_BODY_BYTES} bytes.")
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    # Ten digits until the year 2286; a longer number is no timestamp (and would overflow
    # the arithmetic below).
    if (
        not timestamp.isascii()
        or not timestamp.isdigit()
        or len(timestamp) > 12
        or not signature
    ):
        logger.warning("Slack call without a timestamp or signature refused")
        raise Refused(401, "Missing X-Slack-Signature or X-Slack-Request-Timestamp.")
    if abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
        logger.warning("Slack call with an old timestamp (%s) refused", timestamp)
        raise Refused(401, "X-Slack-Request-Timestamp is more than five minutes away.")
    expected = expected_signature(secret=secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        logger.warning("Slack call with a bad signature refused")
        raise Refused(401, "Bad X-Slack-Signature.")
    digest = hashlib.sha256(signature_base(timestamp, body)).hexdigest()
    if not slack_delivery_record(digest=digest):
        logger.warning("Replayed Slack call refused")
        raise Refused(409, "This call was already received; it is not acted on twice.")
    return body


def _form(body: bytes) -> dict:
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "The body is not a form.") from None
    return {name: values[0] for name, values in fields.items()}


def _inline_client() -> SlackClient:
    return SlackClient(timeout=INLINE_TIMEOUT_SECONDS)


# --- interactions -----------------------------------------------------------------------


@csrf_exempt
@require_POST
def slack_interactions(request):
    try:
        payload = _payload(verified_body(request))
        kind = payload.get("type")
        if kind == "block_actions":
            return _block_actions(payload)
        if kind == "view_submission":
            return _view_submission(payload)
        return HttpResponse(status=200)
    except Refused as refusal:
        return _text(refusal.status, str(refusal))


def _payload(body: bytes) -> dict:
    raw = _form(body).get("payload")
    if not raw:
        raise Refused(400, "No payload field.")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise Refused(400, "The payload is not JSON.") from None
    if not isinstance(payload, dict):
        raise Refused(400, "The payload is not a JSON object.")
    return payload


def _id(value) -> str:
    return value.get("id", "") if isinstance(value, dict) else ""


class Click:
    """Who clicked where: the Slack user, team and channel, and their portal account."""

    def __init__(self, payload: dict):
        user = payload.get("user")
        self.slack_user = _id(user)
        self.team = _id(payload.get("team")) or (
            user.get("team_id", "") if isinstance(user, dict) else ""
        )
        self.channel = _id(payload.get("channel"))
        if not _is_id(self.slack_user) or not _is_id(self.team):
            raise Refused(400, "The payload names no Slack user or team id.")
        if not _is_id(self.channel):
            self.channel = ""
        self.account = slack_user_account(team_id=self.team, slack_user_id=self.slack_user)

    def via(self) -> dict:
        return {
            "slack_user": self.slack_user,
            "slack_team": self.team,
            "slack_channel": self.channel,
        }

    def tell(self, text: str) -> None:
        """Tell the clicker alone (chat.postEphemeral in the card's channel)."""
        if not self.channel:
            logger.warning("Slack refusal with no channel to say it in: %s", text)
            return
        try:
            _inline_client().post_ephemeral(channel=self.channel, user=self.slack_user, text=text)
        except SlackError as error:
            logger.warning("Could not tell Slack user %s why: %s", self.slack_user, error)

    def refuse(self, text: str, *, decision: str, access_request=None) -> HttpResponse:
        audit.log_event(
            action=AuditAction.SLACK_DECISION_REFUSED,
            actor=self.account,
            target=access_request,
            reason=text,
            detail={"decision": decision, **self.via()},
        )
        self.tell(text)
        return HttpResponse(status=200)


def _is_id(value) -> bool:
    return isinstance(value, str) and SLACK_ID.fullmatch(value) is not None


def _request_of(value) -> AccessRequest | None:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    if len(value) > 18:
        return None
    return AccessRequest.objects.select_related("policy").filter(pk=int(value)).first()


def _policy_refusal(access_request: AccessRequest) -> str | None:
    if access_request.policy is not None and not access_request.policy.slack_approvals:
        return (
            f"Request #{access_request.pk}'s policy does not take decisions from Slack: "
            f"decide it in the admin, {_admin_url(access_request)}"
        )
    return None


def _admin_url(access_request: AccessRequest) -> str:
    path = reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    return settings.AIRLOCK_BASE_URL.rstrip("/") + path


def _block_actions(payload: dict) -> HttpResponse:
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, dict) or action.get("action_id") not in (APPROVE, DENY):
        return HttpResponse(status=200)  # another element (a link button): nothing to do
    decision = "approve" if action["action_id"] == APPROVE else "deny"
    click = Click(payload)
    if click.account is None:
        return click.refuse(LINK_FIRST, decision=decision)
    access_request = _request_of(action.get("value"))
    if access_request is None:
        return click.refuse(
            f"No request {str(action.get('value'))[:40]!r} in Airlock.", decision=decision
        )
    refusal = _policy_refusal(access_request)
    if refusal is None and decision == "deny":
        refusal = _deny_refusal(access_request, click.account)
    if refusal:
        return click.refuse(refusal, decision=decision, access_request=access_request)
    if decision == "deny":
        return _open_deny_modal(payload, click, access_request)
    try:
        access_request_approve(
            access_request=access_request, approver=click.account, via=click.via()
        )
    except (NotAllowed, WrongState) as error:
        return click.refuse(str(error), decision=decision, access_request=access_request)
    return HttpResponse(status=200)  # the card follows the request and updates itself


def _deny_refusal(access_request: AccessRequest, user) -> str | None:
    """Said before the modal opens (the service says it again at submission)."""
    if access_request.status != AccessRequest.Status.PENDING:
        return (
            f"Request #{access_request.pk} is {access_request.status}; only a pending "
            "request can be denied."
        )
    return request_refusal_for_decider(access_request=access_request, user=user)


def deny_view(access_request: AccessRequest, channel: str) -> dict:
    return {
        "type": "modal",
        "callback_id": DENY_CALLBACK,
        "private_metadata": json.dumps({"request": access_request.pk, "channel": channel}),
        "title": {"type": "plain_text", "text": f"Deny request #{access_request.pk}"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "label": {
                    "type": "plain_text",
                    "text": "Why are you denying? (the requester reads it)",
                },
                "element": {
                    "type": "plain_text_input",
                    "action_id": COMMENT_ACTION,
                    "multiline": True,
                    "max_length": COMMENT_MAX,
                },
            }
        ],
    }


def _open_deny_modal(payload: dict, click: Click, access_request) -> HttpResponse:
    trigger_id = payload.get("trigger_id")
    if not isinstance(trigger_id, str) or not trigger_id:
        raise Refused(400, "The payload has no trigger_id to open the deny form with.")
    try:
        _inline_client().open_view(
            trigger_id=trigger_id, view=deny_view(access_request, click.channel)
        )
    except SlackError as error:
        logger.warning("Could not open the deny form for #%s: %s", access_request.pk, error)
        click.tell(f"Slack did not open the deny form ({error}); try again, or use the admin.")
    return HttpResponse(status=200)


def _errors(message: str) -> JsonResponse:
    return JsonResponse({"response_action": "errors", "errors": {COMMENT_BLOCK: message}})


def _view_submission(payload: dict) -> HttpResponse:
    view = payload.get("view")
    if not isinstance(view, dict) or view.get("callback_id") != DENY_CALLBACK:
        return HttpResponse(status=200)
    try:
        metadata = json.loads(view.get("private_metadata") or "")
    except (TypeError, ValueError):
        raise Refused(400, "The form's private_metadata is not JSON.") from None
    if not isinstance(metadata, dict):
        raise Refused(400, "The form's private_metadata is not a JSON object.")
    channel = metadata.get("channel")
    if isinstance(channel, str) and not _id(payload.get("channel")):
        payload = {**payload, "channel": {"id": channel}}
    click = Click(payload)
    comment = _comment(view)
    if click.account is None:
        click.refuse(LINK_FIRST, decision="deny")
        return _errors(LINK_FIRST)
    access_request = _request_of(str(metadata.get("request", "")))
    if access_request is None:
        return _errors("That request is not in Airlock.")
    if not comment:
        return _errors("Say why you deny, so the requester knows.")
    refusal = _policy_refusal(access_request)
    if refusal:
        click.refuse(refusal, decision="deny", access_request=access_request)
        return _errors(refusal)
    try:
        access_request_deny(
            access_request=access_request,
            approver=click.account,
            comment=comment,
            via=click.via(),
        )
    except (NotAllowed, WrongState) as error:
        click.refuse(str(error), decision="deny", access_request=access_request)
        return _errors(str(error))
    return JsonResponse({"response_action": "clear"})


def _comment(view: dict) -> str:
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(COMMENT_BLOCK) if isinstance(values, dict) else None
    field = block.get(COMMENT_ACTION) if isinstance(block, dict) else None
    value = field.get("value") if isinstance(field, dict) else None
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "").strip()[:COMMENT_MAX]


# --- the slash command ------------------------------------------------------------------

USAGE = (
    "`/airlock link`: link your Slack account to your Airlock account, so your Approve "
    "and Deny clicks count as you.\n`/airlock help`: this text."
)


def _ephemeral(text: str) -> JsonResponse:
    return JsonResponse({"response_type": "ephemeral", "text": text})


@csrf_exempt
@require_POST
def slack_commands(request):
    try:
        form = _form(verified_body(request))
    except Refused as refusal:
        return _text(refusal.status, str(refusal))
    words = form.get("text", "").split()
    if words[:1] != ["link"]:
        return _ephemeral(USAGE)
    team, slack_user = form.get("team_id", ""), form.get("user_id", "")
    if not _is_id(team) or not _is_id(slack_user):
        return _ephemeral("Slack did not say who you are (team_id, user_id); try again.")
    code = slack_link_code_create(team_id=team, slack_user_id=slack_user)
    url = settings.AIRLOCK_BASE_URL.rstrip("/") + reverse("slack-link", args=[code])
    return _ephemeral(
        f"Open this link while signed in to Airlock and confirm, to link Slack user "
        f"{slack_user} to your account. It works once, for ten minutes: {url}"
    )
