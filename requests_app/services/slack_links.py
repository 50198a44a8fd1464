"""Who a Slack user is in the portal: the one-time codes `/airlock link` hands out, linking
a Slack user to the signed-in account that confirms one, unlinking, and the signed Slack
calls already acted on (replays). A Slack user is never matched by email or name."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.errors import NotAllowed, WrongState
from requests_app.slack_models import SlackDelivery, SlackLink, SlackLinkCode


def code_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def slack_link_code_create(*, team_id: str, slack_user_id: str) -> str:
    """A new one-time code for that Slack user (valid SlackLinkCode.VALID_FOR); only its
    digest is kept, so the raw code is returned once."""
    raw = secrets.token_urlsafe(24)
    SlackLinkCode.objects.create(
        digest=code_digest(raw),
        team_id=team_id,
        slack_user_id=slack_user_id,
        expires_at=timezone.now() + SlackLinkCode.VALID_FOR,
    )
    return raw


def slack_link_code_refusal(code: SlackLinkCode | None) -> str | None:
    """Why a code cannot link anyone (unknown, used, expired), or None."""
    if code is None:
        return "This link is unknown. Run /airlock link in Slack to get a new one."
    if code.used_at is not None:
        return "This link has already been used. Run /airlock link in Slack for a new one."
    if code.expires_at <= timezone.now():
        return "This link has expired (links last ten minutes). Run /airlock link again."
    return None


def slack_link_code_find(raw: str) -> SlackLinkCode | None:
    return SlackLinkCode.objects.filter(digest=code_digest(raw)).first()


def slack_link_confirm(*, raw_code: str, user) -> SlackLink:
    """Link the code's Slack user to `user`, and use the code up. Refused (WrongState) for
    an unknown, used or expired code; (NotAllowed) when that Slack user is linked to another
    account, or when this account is linked to another Slack user in that workspace (never
    replaced silently: remove it first)."""
    with transaction.atomic():
        code = (
            SlackLinkCode.objects.select_for_update().filter(digest=code_digest(raw_code)).first()
        )
        refusal = slack_link_code_refusal(code)
        if refusal:
            raise WrongState(refusal)
        elsewhere = (
            SlackLink.objects.select_for_update()
            .filter(team_id=code.team_id, slack_user_id=code.slack_user_id)
            .exclude(user=user)
            .first()
        )
        if elsewhere is not None:
            raise NotAllowed(
                f"Slack user {code.slack_user_id} is already linked to another Airlock account. "
                "Its owner must remove that link (on their account's Slack page) first."
            )
        same = SlackLink.objects.filter(
            team_id=code.team_id, slack_user_id=code.slack_user_id, user=user
        ).first()
        if same is not None:
            code.used_at = timezone.now()
            code.save(update_fields=["used_at"])
            return same
        # Never replaced silently: a link someone else made (and got this account's owner
        # to confirm) would otherwise take over their Slack decisions unnoticed.
        current = (
            SlackLink.objects.select_for_update().filter(team_id=code.team_id, user=user).first()
        )
        if current is not None:
            raise NotAllowed(
                f"This account is already linked to Slack user {current.slack_user_id} in "
                "this workspace. Remove that link on your account's Slack page first, then "
                "open this link again."
            )
        code.used_at = timezone.now()
        code.save(update_fields=["used_at"])
        try:
            with transaction.atomic():
                link = SlackLink.objects.create(
                    user=user, team_id=code.team_id, slack_user_id=code.slack_user_id
                )
        except IntegrityError:
            raise NotAllowed(
                f"Slack user {code.slack_user_id} was just linked to another account."
            ) from None
        audit.log_event(
            action=AuditAction.SLACK_LINKED,
            actor=user,
            target=link,
            detail={"slack_team": link.team_id, "slack_user": link.slack_user_id},
        )
    return link


def slack_unlink(*, link: SlackLink, user) -> None:
    """Remove one of `user`'s own links."""
    with transaction.atomic():
        if link.user_id != user.pk:
            raise NotAllowed("You can only remove your own Slack links.")
        deleted, _ = SlackLink.objects.filter(pk=link.pk).delete()
        if not deleted:
            raise WrongState("That Slack link was already removed.")
        audit.log_event(
            action=AuditAction.SLACK_UNLINKED,
            actor=user,
            target_type="requests_app.slacklink",
            target_id=str(link.pk),
            target_repr=str(link),
            detail={"slack_team": link.team_id, "slack_user": link.slack_user_id},
        )


def slack_user_account(*, team_id: str, slack_user_id: str):
    """The portal account linked to that Slack user, or None."""
    link = (
        SlackLink.objects.select_related("user")
        .filter(team_id=team_id, slack_user_id=slack_user_id, user__is_active=True)
        .first()
    )
    return link.user if link else None


# A signed call is accepted while its timestamp is within five minutes of now, so a replay
# can come at most ten minutes after the first receipt: older rows guard nothing.
DELIVERY_KEPT = timedelta(minutes=15)


def slack_delivery_record(*, digest: str) -> bool:
    """Record a signed call as acted on; False if it already was (a replay). The insert
    comes first and the digest is unique, so two identical calls at once act once. Rows
    older than DELIVERY_KEPT are dropped on the way."""
    try:
        with transaction.atomic():
            SlackDelivery.objects.create(digest=digest)
    except IntegrityError:
        return False
    SlackDelivery.objects.filter(received_at__lt=timezone.now() - DELIVERY_KEPT).delete()
    return True
