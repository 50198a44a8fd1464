"""What the local Slack remembers: channels, users, messages by ts, ephemeral messages, opened
views, issued trigger_ids, and every Web API call. One lock guards it all (the server is
threaded)."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field

BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "header",
    "image",
    "input",
    "rich_text",
    "section",
    "file",
    "video",
}
ELEMENT_TYPES = {
    "button",
    "plain_text_input",
    "static_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "checkboxes",
    "radio_buttons",
    "datepicker",
    "overflow",
    "image",
    "plain_text",
    "mrkdwn",
}
TEXT_TYPES = {"plain_text", "mrkdwn"}
VIEW_TYPES = {"modal", "home"}


@dataclass
class Call:
    """One Web API call as the stand-in received it (arguments decoded)."""

    method: str
    arguments: dict
    at: float
    token: str = ""
    error: str | None = None  # Slack's error code, if it answered ok=false
    status: int = 200


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list
    user: str = ""  # the bot's user id
    edits: list[dict] = field(default_factory=list)  # earlier {text, blocks}, oldest first

    def as_dict(self) -> dict:
        answer = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts}
        if self.blocks:
            answer["blocks"] = self.blocks
        if self.edits:
            answer["edited"] = {"user": self.user, "ts": self.ts}
        return answer


class SlackState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.RLock()):
            self.team_id = "T0LOCAL"
            self.bot_user_id = "U0AIRLOCKBOT"
            self.tokens: set[str] = set()
            self.channels: dict[str, dict[str, Message]] = {}
            self.users: dict[str, dict] = {}  # user id -> users.info's `user`
            self.ephemeral: dict[str, list[dict]] = {}  # user id -> messages
            self.views: list[dict] = []
            self.trigger_ids: dict[str, float] = {}  # trigger_id -> issued at
            self.exchanged_trigger_ids: set[str] = set()
            self.calls: list[Call] = []
            self._ts = itertools.count(1)

    # -- seeding -------------------------------------------------------------------------

    def add_token(self, token: str) -> str:
        with self.lock:
            self.tokens.add(token)
        return token

    def add_channel(self, channel_id: str) -> str:
        with self.lock:
            self.channels.setdefault(channel_id, {})
        return channel_id

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str = "",
        display_name: str = "",
        *,
        deleted: bool = False,
        is_bot: bool = False,
    ) -> str:
        """A user users.info knows, answered in Slack's shape (name = the handle)."""
        with self.lock:
            self.users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "deleted": deleted,
                "real_name": real_name,
                "is_bot": is_bot,
                "is_app_user": False,
                "profile": {
                    "real_name": real_name,
                    "real_name_normalized": real_name,
                    "display_name": display_name,
                    "display_name_normalized": display_name,
                    "team": self.team_id,
                },
            }
        return user_id

    def new_trigger_id(self) -> str:
        """A trigger_id views.open accepts once (Slack's live three seconds; these until
        used)."""
        trigger = f"{next(self._ts)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self.lock:
            self.trigger_ids[trigger] = time.time()
        return trigger

    def expire_trigger_id(self, trigger: str) -> None:
        """As if its three seconds had passed: views.open answers expired_trigger_id."""
        with self.lock:
            self.trigger_ids.pop(trigger, None)

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    # -- readers ---------------------------------------------------------------------------

    def messages(self, channel: str) -> list[Message]:
        """The channel's messages, oldest first, as they are now (after updates)."""
        with self.lock:
            return list(self.channels.get(channel, {}).values())

    def message(self, channel: str, ts: str) -> Message:
        with self.lock:
            return self.channels[channel][ts]

    def ephemeral_for(self, user: str) -> list[dict]:
        with self.lock:
            return list(self.ephemeral.get(user, []))

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]


def blocks_errors(blocks) -> list[str]:
    """A light Block Kit check: what Slack would call invalid_blocks."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors: list[str] = []
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            errors.append(f"{where} must be an object")
            continue
        if block.get("type") not in BLOCK_TYPES:
            errors.append(f"{where}: unknown type {block.get('type')!r}")
            continue
        for key in ("text", "title", "label"):
            if key in block:
                errors += _text_errors(block[key], f"{where}.{key}")
        for number, item in enumerate(block.get("fields") or []):
            errors += _text_errors(item, f"{where}.fields[{number}]")
        elements = list(block.get("elements") or [])
        if "accessory" in block:
            elements.append(block["accessory"])
        if "element" in block:
            elements.append(block["element"])
        if block["type"] == "actions" and not elements:
            errors.append(f"{where}: actions need elements")
        for number, element in enumerate(elements):
            errors += _element_errors(element, f"{where}.elements[{number}]", block["type"])
    return errors


def _text_errors(text, where: str) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in TEXT_TYPES:
        return [f"{where} must be a text object of type plain_text or mrkdwn"]
    if not isinstance(text.get("text"), str) or not text["text"]:
        return [f"{where} needs a non-empty text"]
    return []


def _element_errors(element, where: str, block_type: str) -> list[str]:
    if not isinstance(element, dict) or element.get("type") not in ELEMENT_TYPES:
        return [f"{where}: unknown element"]
    kind = element["type"]
    if kind in TEXT_TYPES:
        return _text_errors(element, where) if block_type == "context" else []
    errors = []
    if kind == "button":
        errors += _text_errors(element.get("text"), f"{where}.text")
        if not element.get("action_id") or not isinstance(element.get("value"), str):
            errors.append(f"{where}: a button needs an action_id and a value")
        if element.get("style") not in {None, "primary", "danger"}:
            errors.append(f"{where}: style must be primary or danger")
    return errors


def view_errors(view) -> list[str]:
    """What Slack's views.open would refuse (invalid_arguments) in a view."""
    if not isinstance(view, dict) or view.get("type") not in VIEW_TYPES:
        return ["view must be an object of type modal"]
    errors = []
    if view["type"] == "modal":
        errors += _text_errors(view.get("title"), "view.title")
        if "submit" in view:
            errors += _text_errors(view["submit"], "view.submit")
    return errors + blocks_errors(view.get("blocks", []))
