"""Slack approvals' rows: who a Slack user is in the portal (an explicit link, made with a
one-time code), the cards requests were posted as, and the signed calls already acted on."""

from datetime import timedelta

from django.conf import settings
from django.db import models


class SlackLink(models.Model):
    """A Slack user linked to a portal account, by the person themselves (the slash command
    /airlock link, then confirming while signed in): the only way a click in Slack is
    taken to be someone's. Never by email or display name."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_links"
    )
    team_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One portal account per Slack user (per workspace).
            models.UniqueConstraint(
                fields=["team_id", "slack_user_id"], name="one_link_per_slack_user"
            ),
        ]

    def __str__(self):
        return f"Slack {self.team_id}/{self.slack_user_id} → {self.user}"


class SlackLinkCode(models.Model):
    """A one-time code the slash command hands a Slack user, to link their account: kept
    as a digest, valid ten minutes, used once."""

    VALID_FOR = timedelta(minutes=10)

    digest = models.CharField(max_length=64, unique=True, editable=False)
    team_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"link code for Slack {self.team_id}/{self.slack_user_id}"


class SlackCard(models.Model):
    """The message a request was posted as in one approver group's channel, kept to update
    it in place (chat.update) whenever the request changes."""

    request = models.ForeignKey(
        "requests_app.AccessRequest", on_delete=models.CASCADE, related_name="slack_cards"
    )
    channel = models.CharField(max_length=32)
    # Slack's message timestamp (its id in the channel); "" until posted.
    ts = models.CharField(max_length=32, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    # What was last shown (a digest of the blocks), so an unchanged request is not sent again.
    shown_digest = models.CharField(max_length=64, blank=True)
    # The request's status when the card was last shown: the sweep (slack_cards_due) looks
    # again at every card whose request moved on since, in case the message was lost.
    shown_status = models.CharField(max_length=20, blank=True)
    last_error = models.TextField(blank=True)
    # When a sync last looked at the card (even to find it up to date): the sweep looks at the
    # least recently checked first, so successive sweeps go round every open request.
    checked_at = models.DateTimeField(null=True, blank=True)
    # A sync calling Slack for the card claims it until then (requests_app.slack._card_sync),
    # instead of holding a row lock across the call; resync: another sync came meanwhile (the
    # claimer renders the request again once done) or Slack failed the call, so the card is
    # certainly stale until a sync confirms it (slack_cards_due takes it first).
    claimed_until = models.DateTimeField(null=True, blank=True)
    resync = models.BooleanField(default=False)

    class Meta:
        ordering = ["request", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["request", "channel"], name="one_card_per_channel"),
        ]

    def __str__(self):
        return f"card of #{self.request_id} in {self.channel}"


class SlackDelivery(models.Model):
    """A signed call from Slack already acted on (a digest of its signature base), so a
    replay within the five minutes its timestamp is accepted changes nothing."""

    digest = models.CharField(max_length=64, unique=True, editable=False)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"Slack delivery {self.digest[:12]}"
