"""mode: token: exchange the job's OIDC token for a GitHub token restricted to this
repository (POST /api/v1/tokens), under a `token` grant of who started the run. The token
is masked in the log before anything else is done with it, and set as the output `token`
with `expires-at`; it is revoked on GitHub when the grant ends.

The `permissions` input narrows the grant's: `name:level` pairs separated by commas or new
lines, e.g. `contents:read, packages:write`. Empty: all the grant allows."""

from __future__ import annotations

import re

from runner import (
    ActionFailed,
    add_summary,
    bad_input,
    log,
    log_text,
    portal_inputs,
    set_outputs,
    text_input,
)
from transport import TRANSIENT_STATUSES, Airlock, Unavailable, message_of

PAIR = re.compile(r"([a-z_]+)\s*:\s*([a-z]+)")
# What a GitHub token looks like (and a dry-run placeholder): nothing that could end the
# mask command's line early and leave the rest of the value in the log. Installation tokens
# are ghs_<APPID>_<JWT> since April 2026, about 520 characters (GitHub: do not rely on a
# length); the bound only refuses what no token is.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,4096}")


def parse_permissions(text: str) -> dict[str, str]:
    """`contents:read, packages:write` (commas or new lines) as {name: level}."""
    permissions: dict[str, str] = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        match = PAIR.fullmatch(part)
        if match is None:
            raise bad_input(
                "permissions",
                "must be name:level pairs separated by commas, like "
                f"'contents:read, packages:write'; {part!r} is not one.",
            )
        name, level = match.groups()
        if name in permissions and permissions[name] != level:
            raise bad_input("permissions", f"names {name} twice, with different levels.")
        permissions[name] = level
    return permissions


def main() -> int:
    inputs = portal_inputs()
    permissions = parse_permissions(text_input("permissions"))
    airlock = Airlock.for_inputs(inputs)
    body = {"permissions": permissions} if permissions else {}
    # Retrying is safe: a second token is kept for the grant, and revoked with it.
    status, answer = airlock.call("POST", "/api/v1/tokens", body)
    token = answer.get("token") if status == 201 else None
    if isinstance(token, str) and token:
        if not TOKEN_SHAPE.fullmatch(token):
            # Not printed, not masked piecemeal: a token with a line break in it would
            # leave its tail unmasked.
            raise ActionFailed("Airlock answered with a token that is not a GitHub token.")
        # First of all: from here on the runner hides the value wherever it appears.
        log(f"::add-mask::{token}")
    if status in TRANSIENT_STATUSES:
        raise Unavailable(
            f"Airlock could not mint a token (HTTP {status}): {message_of(status, answer)}",
            "Airlock unavailable",
        )
    if status != 201:
        raise ActionFailed(
            f"Airlock refused a GitHub token (HTTP {status}): {message_of(status, answer)}",
            "Airlock refused",
        )
    if not isinstance(token, str) or not token:
        raise ActionFailed("Airlock answered HTTP 201 without a token.")
    set_outputs(
        {
            "token": token,
            "expires-at": str(answer.get("expires_at") or ""),
            "grant-id": str(answer.get("grant_id") or ""),
        }
    )
    granted = ", ".join(
        f"{name}: {level}" for name, level in sorted((answer.get("permissions") or {}).items())
    )
    message = str(answer.get("message") or "")
    log_text(f"Airlock: {message}")
    if answer.get("simulated"):
        log("::warning title=Airlock: simulated token::Airlock runs in dry-run mode; the "
            "token is a placeholder that GitHub does not know.")
    add_summary(
        f"### 🔑 Airlock: GitHub token minted\n\nFor {answer.get('repository', '')} with "
        f"{granted}, until {answer.get('expires_at', '')} (revoked when the grant ends, at "
        f"{answer.get('grant_expires_at', '')})."
        + (" Simulated (dry-run)." if answer.get("simulated") else "")
    )
    return 0
