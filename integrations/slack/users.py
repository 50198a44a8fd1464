"""Who a Slack user is, as Slack says (users.info), for a person to recognise: best effort,
so a page that shows it never fails because Slack is slow, down or refuses."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

from integrations.slack.client import SlackClient, SlackError, slack_configured

logger = logging.getLogger(__name__)
NAME_MAX = 80  # Slack's own limit for names; a longer one is cut


@dataclass(frozen=True)
class SlackPerson:
    """A Slack user's names as their profile says (self-chosen unless the workspace locks
    them: a hint for a person, never proof), and whether Slack calls them deleted or a bot."""

    user_id: str
    username: str  # `name`: the handle, unique in the workspace
    real_name: str
    display_name: str
    deleted: bool
    is_bot: bool

    @property
    def handle(self) -> str:
        """What to show after an @: the display name, else the username."""
        return self.display_name or self.username


def _clean(value) -> str:
    """A name as plain text on one line: no control or format characters (a right-to-left
    override could make one name read as another), at most NAME_MAX characters."""
    if not isinstance(value, str):
        return ""
    kept = "".join(c for c in value if not unicodedata.category(c).startswith("C"))
    return " ".join(kept.split())[:NAME_MAX]


def slack_person(user_id: str, *, timeout: float) -> SlackPerson | None:
    """users.info for that id, or None when Slack is not configured, cannot be reached in
    `timeout` seconds, or refuses (user_not_found, missing_scope, ...): logged, not raised."""
    if not slack_configured():
        return None
    try:
        answer = SlackClient(timeout=timeout).user_info(user_id)
    except SlackError as error:
        logger.warning("Slack users.info for %s failed: %s", user_id, error)
        return None
    user = answer.get("user")
    if not isinstance(user, dict) or user.get("id") != user_id:
        logger.warning("Slack users.info for %s answered no such user", user_id)
        return None
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    return SlackPerson(
        user_id=user_id,
        username=_clean(user.get("name")),
        real_name=_clean(profile.get("real_name") or user.get("real_name")),
        display_name=_clean(profile.get("display_name")),
        deleted=user.get("deleted") is True,
        is_bot=user.get("is_bot") is True or user_id == "USLACKBOT",
    )
