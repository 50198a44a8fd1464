"""One Slack Web API client: slack_sdk's WebClient pointed at SLACK_API_URL with the bot
token, with its own retries off. A Celery task retries instead, with backoff and Slack's
Retry-After, so that a Slack outage holds no worker and blocks no decision."""

from __future__ import annotations

import logging
import urllib.error
from dataclasses import dataclass

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

logger = logging.getLogger(__name__)

# Slack's own error codes that mean "not now" rather than "never".
TRANSIENT_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}
TIMEOUT_SECONDS = 10
NON_JSON = "Received a response in a non-JSON format"


def slack_configured() -> bool:
    """Whether Airlock can post to Slack (AIRLOCK_SLACK_BOT_TOKEN)."""
    return bool(settings.AIRLOCK_SLACK_BOT_TOKEN)


class SlackError(Exception):
    """Slack refused or could not be reached. transient: trying again later may help;
    retry_after: the seconds Slack asked to wait (429), if it said."""

    def __init__(self, message: str, *, transient: bool, retry_after: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass
class SlackClient:
    """chat.postMessage, chat.update, chat.postEphemeral, views.open and users.info, each
    answering Slack's JSON or raising SlackError."""

    token: str = ""
    timeout: float = TIMEOUT_SECONDS

    def __post_init__(self):
        self.token = self.token or settings.AIRLOCK_SLACK_BOT_TOKEN
        self._web = WebClient(
            token=self.token,
            base_url=settings.SLACK_API_URL.rstrip("/") + "/",
            timeout=self.timeout,
            retry_handlers=[],
        )

    def __repr__(self):
        return "SlackClient(token=<hidden>)"

    def _call(self, method: str, **arguments) -> dict:
        try:
            return getattr(self._web, method)(**arguments).data
        except SlackApiError as error:
            response = error.response
            code = response.get("error", "") if hasattr(response, "get") else ""
            status = getattr(response, "status_code", 0)
            if code.startswith(NON_JSON):
                code = ""  # slack_sdk puts a non-JSON body (a proxy's 502 page) here
            retry_after = None
            if status == 429:
                headers = {
                    str(k).lower(): v for k, v in (getattr(response, "headers", None) or {}).items()
                }
                header = str(headers.get("retry-after") or "").strip()
                retry_after = int(header) if header.isdigit() else None
            transient = status == 429 or status >= 500 or code in TRANSIENT_ERRORS
            raise SlackError(
                f"Slack {method} failed: {code or f'HTTP {status}'}",
                transient=transient,
                retry_after=retry_after,
            ) from None
        except (SlackClientError, urllib.error.URLError, TimeoutError, OSError) as error:
            raise SlackError(
                f"Slack {method} could not be reached: {type(error).__name__}", transient=True
            ) from None

    def post_message(self, *, channel: str, text: str, blocks: list) -> dict:
        """chat.postMessage: the answer's `ts` identifies the message for updates."""
        return self._call("chat_postMessage", channel=channel, text=text, blocks=blocks)

    def update_message(self, *, channel: str, ts: str, text: str, blocks: list) -> dict:
        return self._call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks)

    def post_ephemeral(self, *, channel: str, user: str, text: str) -> dict:
        """A message only `user` sees in `channel` (why their click was refused)."""
        return self._call("chat_postEphemeral", channel=channel, user=user, text=text)

    def open_view(self, *, trigger_id: str, view: dict) -> dict:
        """views.open: a modal in answer to a click (trigger_id lives three seconds)."""
        return self._call("views_open", trigger_id=trigger_id, view=view)

    def user_info(self, user: str) -> dict:
        """users.info (scope users:read): the answer's `user` has `name`, `real_name`,
        `deleted`, `is_bot` and `profile` (`real_name`, `display_name`). An unknown id is
        SlackError "user_not_found" (not transient)."""
        return self._call("users_info", user=user)
