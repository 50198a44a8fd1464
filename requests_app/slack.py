"""The request card in Slack: what approvers see of a request in their group's channel (Block
Kit, as plain dicts), posted once per channel and updated in place whenever what it shows
changes (docs/notifications.md "The Slack request card")."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, timedelta

from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Subquery, Value, When
from django.urls import reverse
from django.utils import timezone

from integrations.github.permissions import format_permissions
from integrations.slack import SlackClient, SlackError, slack_configured
from requests_app.models import AccessRequest, ApproverGroup
from requests_app.notifications import absolute, quote_inline
from requests_app.selectors import request_pending_approvers
from requests_app.slack_models import SlackCard

logger = logging.getLogger(__name__)

Status = AccessRequest.Status

APPROVE_ACTION = "airlock_approve"
DENY_ACTION = "airlock_deny"
# Slack refuses a section text over 3000 characters; a reason is cut well before.
MAX_QUOTED = 2500


# --- the card -----------------------------------------------------------------------------


def escape(value) -> str:
    """Untrusted text in mrkdwn: Slack's three control characters escaped (so no <!channel>,
    <@U123> or <url|label> of its own), on one line."""
    text = quote_inline(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(value) -> str:
    """Untrusted free text (a reason, a comment) as a mrkdwn quote: each line its own `>`."""
    text = str(value)
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED] + "…"
    lines = text.splitlines() or [""]
    return "\n".join(f">{escape(line)}" for line in lines)


def link(url: str, label: str) -> str:
    """One of our own links; the label is escaped, the URL is ours (built from settings and
    canonical names), with Slack's control characters escaped anyway."""
    return f"<{escape(url).replace('|', '%7C')}|{escape(label)}>"


def _mrkdwn(text: str) -> dict:
    # verbatim: Slack makes no link or mention of a bare URL, @here or #name in quoted text.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict:
    return {"type": "section", "text": _mrkdwn(text)}


def _when(moment) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "-"


def _duration(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "0m"


def admin_url(access_request: AccessRequest) -> str:
    return absolute(reverse("admin:requests_app_accessrequest_change", args=[access_request.pk]))


def card_message(access_request: AccessRequest) -> dict:
    """The card's chat.postMessage / chat.update arguments: `text` (the fallback for
    notifications) and `blocks`."""
    r = access_request
    access = escape(r.access)
    if r.secret_id:
        access += f" (secret `{escape(r.secret.name)}`)"
    if r.break_glass:
        access += " — *break-glass*"
    fields = [
        _mrkdwn(f"*Requester*\n{escape(r.requester.get_username())}"),
        _mrkdwn(f"*Target*\n{escape(r.repository)}, environment `{escape(r.environment)}`"),
        _mrkdwn(f"*Access*\n{access}"),
        _mrkdwn(f"*Duration*\n{_duration(r.duration_minutes)}"
                + (f", from {_when(r.starts_at)}" if r.starts_at else "")),
    ]
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Access request #{r.pk}", "emoji": False},
        },
        {"type": "section", "fields": fields},
    ]
    if isinstance(r.token_permissions, dict) and r.token_permissions:
        blocks.append(_section(
            f"*Token permissions*\n{escape(format_permissions(r.token_permissions))}, in "
            f"{escape(r.repository)} only"
        ))
    if r.extends_id:
        blocks.append(_section(f"*Extends* request #{r.extends_id} (more time on active access)"))
    blocks.append(_section(f"*Reason*\n{quoted(r.reason)}"))
    if r.is_run_bound:
        blocks.append(_section("\n".join(_run_lines(r))))
    blocks.append(_section("\n".join(_approval_lines(r))))
    blocks.append(_section(f"*Status*: {_outcome(r)}"))
    blocks.append(_actions(r))
    text = (
        f"Access request #{r.pk}: {quote_inline(r.requester.get_username())} asks for "
        f"{quote_inline(r.access)} access to {quote_inline(r.target)} — {r.status}"
    )
    return {"text": escape(text), "blocks": blocks}


def _run_lines(r: AccessRequest) -> list[str]:
    """The run the request is bound to: the words of notifications.run_lines, in mrkdwn."""
    if r.run_commit_url:
        commit = link(r.run_commit_url, r.run_short_sha)
    elif r.run_sha:
        commit = f"{escape(r.run_sha)} (not a commit id, so not linked)"
    else:
        commit = "-"
    attempt = f", attempt {int(r.run_attempt)}" if r.run_attempt else ""
    return [
        "*Filed by* a workflow, for its run: Airlock's check and deployment protection rule "
        "answer only this run. *Ends* when the run completes or releases it.",
        f"*Workflow*: {escape(r.run_workflow) or '-'}",
        f"*Ref*: {escape(r.run_ref) or '-'}",
        f"*Commit*: {commit}",
        f"*Run*: {link(r.run_url, f'Run {int(r.run_id)}{attempt}')}",
    ]


def _approval_lines(r: AccessRequest) -> list[str]:
    approvals = list(r.approvals.select_related("approver").order_by("created_at", "pk"))
    lines = [f"*Approvals*: {len(approvals)} of {r.approvals_required}"]
    for approval in approvals:
        line = f"• {escape(approval.approver.get_username())}, {_when(approval.created_at)}"
        if approval.comment:
            line += f": {escape(approval.comment)}"
        lines.append(line)
    if r.status == Status.PENDING:
        waiting = request_pending_approvers(access_request=r)
        lines.append(
            "*May still approve*: " + (", ".join(escape(login) for login in waiting) or "nobody")
        )
    return lines


def _approvers(r: AccessRequest) -> str:
    names = [a.approver.get_username() for a in r.approvals.select_related("approver")]
    if r.break_glass:
        return "break-glass, by the requester (reviewed afterwards)"
    if not names:
        return "automatically (the policy needs no approval)"
    return "by " + ", ".join(escape(name) for name in names)


def _closer(r: AccessRequest) -> str:
    return escape(r.closed_by.get_username()) if r.closed_by_id else "Airlock"


def _with_comment(text: str, comment: str) -> str:
    return f"{text}\n{quoted(comment)}" if comment else text


def _outcome(r: AccessRequest) -> str:
    if r.status == Status.PENDING:
        return f"pending, until {_when(r.pending_until)} at the latest"
    if r.status == Status.APPROVED:
        return f"*approved* {_approvers(r)}; the access is being granted"
    if r.status == Status.ACTIVE:
        return f"*active* until {_when(r.expires_at)} (approved {_approvers(r)})"
    if r.status == Status.EXPIRED:
        return f"*expired* at {_when(r.ended_at)} (approved {_approvers(r)})"
    if r.status == Status.REVOKED:
        return _with_comment(f"*revoked* by {_closer(r)} at {_when(r.ended_at)}", r.close_comment)
    if r.status == Status.DENIED:
        return _with_comment(f"*denied* by {_closer(r)}", r.close_comment)
    if r.status == Status.CANCELLED:
        return _with_comment(f"*cancelled* by {_closer(r)}", r.close_comment)
    if r.status == Status.TIMED_OUT:
        return f"*timed out*: no decision by {_when(r.pending_until)}"
    if r.status == Status.FAILED:
        return _with_comment("*failed*: GitHub refused the grant", r.close_comment)
    return escape(r.status)


def _actions(r: AccessRequest) -> dict:
    """Approve and Deny while pending and the policy lets Slack decide (contract: the
    action_ids, and the request id as value); otherwise a link to the request's admin page."""
    if r.status == Status.PENDING and r.policy is not None and r.policy.slack_approvals:
        elements = [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": str(r.pk),
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": str(r.pk),
            },
        ]
    else:
        label = "Decide in Airlock" if r.status == Status.PENDING else "Open in Airlock"
        elements = [
            {
                "type": "button",
                "action_id": "airlock_open",
                "text": {"type": "plain_text", "text": label},
                "url": admin_url(r),
                "value": str(r.pk),
            }
        ]
    return {"type": "actions", "block_id": f"airlock_request_{r.pk}", "elements": elements}


def card_digest(message: dict) -> str:
    return hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()


# --- posting and updating -----------------------------------------------------------------


def card_channels(access_request: AccessRequest) -> list[str]:
    """The channels of the request's approver groups (those that have one)."""
    if access_request.policy_id is None:
        return []
    groups = access_request.policy.approver_groups.exclude(slack_channel="")
    return sorted(set(groups.values_list("slack_channel", flat=True)))


# How long a sync's claim on a card stands while it calls Slack (well over the client's 10 s
# timeout): a worker killed mid-call leaves a claim that a sync may take over after it.
CLAIM_FOR = timedelta(seconds=60)


def _shown(request_id: int) -> tuple[dict, str, str] | None:
    """What the request's card should show now: (message, its digest, the status), or None
    once the request is gone."""
    access_request = (
        AccessRequest.objects.select_related("policy", "requester", "secret", "closed_by")
        .filter(pk=request_id)
        .first()
    )
    if access_request is None:
        return None
    message = card_message(access_request)
    return message, card_digest(message), access_request.status


def slack_cards_sync(request_id: int, *, client: SlackClient | None = None) -> None:
    """Post the request's card in each of its groups' channels (once: only a pending request
    is posted), and update the cards already posted whenever what they show changed.

    A permanent Slack error is recorded on the card (last_error) and logged; a transient one
    is raised after every card was tried, for the task to retry. Nothing without a token.
    """
    if not slack_configured():
        return
    access_request = AccessRequest.objects.select_related("policy").filter(pk=request_id).first()
    if access_request is None:
        return
    if access_request.status == Status.PENDING:
        for channel in card_channels(access_request):
            SlackCard.objects.get_or_create(request=access_request, channel=channel)
    card_ids = list(
        SlackCard.objects.filter(request=access_request).values_list("pk", flat=True)
    )
    shown = _shown(request_id) if card_ids else None
    if shown is None:
        return
    client = client or SlackClient()
    retry = None
    for card_id in card_ids:
        try:
            _card_sync(card_id, request_id=request_id, shown=shown, client=client)
        except SlackError as error:
            retry = retry or error
    if retry is not None:
        raise retry


def _card_sync(
    card_id: int, *, request_id: int, shown: tuple[dict, str, str], client: SlackClient
) -> None:
    """One card, in the order STYLE.md asks of a call out: claim the card (a short
    transaction), render the request and call Slack outside any transaction, then record the
    outcome and release the claim. No lock is held across the call, so on SQLite decisions
    and audit writes do not wait on Slack.

    Only the claimer calls Slack for a card, so it is posted once. A sync that finds the card
    claimed marks it to be synced again and leaves; the claimer, on releasing, renders the
    request afresh and goes round again. The claimer renders after claiming, so any change
    committed later is either seen by a sync that finds the claim or synced after it: an
    update is never overtaken by an older one."""
    message, digest, status = shown
    while True:
        now = timezone.now()
        with transaction.atomic():
            card = SlackCard.objects.select_for_update().filter(pk=card_id).first()
            if card is None:
                return
            if card.claimed_until and card.claimed_until > now:
                if not card.resync:
                    card.resync = True
                    card.save(update_fields=["resync"])
                return
            if card.ts and card.shown_digest == digest:
                card.shown_status = status
                card.checked_at = now
                card.resync = False
                card.save(update_fields=["shown_status", "checked_at", "resync"])
                return
            card.claimed_until = now + CLAIM_FOR
            card.resync = False
            card.save(update_fields=["claimed_until", "resync"])
        fresh = _shown(request_id)
        error = None
        answer_ts = None
        if fresh is not None:
            message, digest, status = fresh
            if not (card.ts and card.shown_digest == digest):
                try:
                    if card.ts:
                        client.update_message(channel=card.channel, ts=card.ts, **message)
                    else:
                        answer_ts = str(client.post_message(channel=card.channel,
                                                            **message).get("ts") or "")
                except SlackError as exc:
                    error = exc
        again = _card_release(card_id, fresh=fresh, error=error, answer_ts=answer_ts)
        if error is not None and error.transient:
            raise error
        if not again:
            return
        shown = _shown(request_id)
        if shown is None:
            return
        message, digest, status = shown


def _card_release(card_id: int, *, fresh, error: SlackError | None, answer_ts) -> bool:
    """Record what the call did and release the claim; True when another sync asked for the
    card to be synced again meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        card = SlackCard.objects.select_for_update().filter(pk=card_id).first()
        if card is None:
            return False
        # Looked at, whatever came of it: the sweep takes the least recently checked first.
        fields = ["claimed_until", "resync", "checked_at"]
        again, card.resync, card.claimed_until = card.resync, False, None
        card.checked_at = now
        if error is not None:
            if error.transient:
                # Not shown, and whoever asked for another round is not served either: the
                # card is certainly stale for the sweep (slack_cards_due).
                card.resync = True
            else:
                logger.error("Slack card of request #%s in %s: %s", card.request_id,
                             card.channel, error)
                card.last_error = str(error)[:1000]
                fields.append("last_error")
        elif fresh is not None:
            _message, digest, status = fresh
            if answer_ts is not None:
                card.ts = answer_ts
                card.posted_at = now
            if card.shown_digest != digest:
                card.updated_at = now
            card.shown_digest = digest
            card.shown_status = status
            card.last_error = ""
            fields += ["ts", "posted_at", "updated_at", "shown_digest", "shown_status",
                       "last_error"]
        card.save(update_fields=fields)
    return again


def slack_cards_due(*, limit: int = 500) -> list[int]:
    """The requests whose cards may not show them as they are, at most `limit`, in one query.

    First those that are certainly stale: a card whose request changed status since it was
    shown (SlackCard.shown_status) or that a sync could not bring up to date (resync), and a
    pending request routed to a channel where no card of it was posted. Then those that may
    be: every pending, approved or active request with a card (an approval's or an
    extension's message may have been lost). In each part, the requests whose cards were
    least recently looked at come first (SlackCard.checked_at, recorded by every sync, even
    one that finds the card up to date or that Slack failed), so that successive sweeps go
    round every open request rather than looking at the same `limit` each time, and a card
    Slack keeps failing does not hold up the others.

    The after-commit task posts and updates cards at once; the sweep catches what a lost
    message missed (a broker outage, a worker killed before it ran). A card that already
    shows its request costs no Slack call."""
    cards = SlackCard.objects.filter(request=OuterRef("pk"))
    # resync: a sync found the card claimed, or Slack failed its call, and no sync has
    # confirmed it since.
    shown_stale = Exists(cards.filter(~Q(shown_status=OuterRef("status")) | Q(resync=True)))
    unposted = Exists(
        ApproverGroup.objects.filter(policies=OuterRef("policy"), slack_channel__gt="").exclude(
            Exists(
                SlackCard.objects.filter(
                    request=OuterRef(OuterRef("pk")), channel=OuterRef("slack_channel"), ts__gt=""
                )
            )
        )
    )
    certainly = Q(shown_stale) | Q(status=Status.PENDING, policy__isnull=False) & Q(unposted)
    maybe = Q(status__in=AccessRequest.OPEN_STATUSES) & Q(Exists(cards))
    last_checked = cards.order_by(F("checked_at").asc(nulls_first=True)).values("checked_at")[:1]
    due = (
        AccessRequest.objects.filter(certainly | maybe)
        .annotate(
            certainly_stale=Case(When(certainly, then=Value(0)), default=Value(1)),
            last_checked=Subquery(last_checked),
        )
        .order_by("certainly_stale", F("last_checked").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
    )
    return list(due[:limit])


def slack_card_error_record(request_id: int, error: SlackError) -> None:
    """A transient error the task gave up on, recorded on the request's cards."""
    SlackCard.objects.filter(request_id=request_id).update(last_error=str(error)[:1000])
