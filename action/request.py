"""mode: request: file an access request for this run with the job's OIDC token, link it
in the job summary and the log, and wait until it is in force, or decided otherwise.

Approved is not done: the job waits for active, when the grant is applied on GitHub. The
request is the run's: filing again from the same run finds the same one (Airlock answers
200 with it), and it ends when the run completes or a `mode: release` step runs."""

from __future__ import annotations

import math
import os
import time

from runner import (
    ActionFailed,
    add_summary,
    annotate,
    bad_input,
    log_text,
    portal_inputs,
    set_outputs,
    text_input,
)
from transport import TRANSIENT_STATUSES, Airlock, Unavailable, message_of

DEFAULT_WAIT_MINUTES = "30"
# The wait polls the request, soon at first (an approver who is watching decides in
# seconds), then less often, so that a long wait costs the portal few calls.
POLL_FIRST_SECONDS = 1.0
POLL_GROWTH = 1.5
POLL_MAX_SECONDS = 30.0

WAITING = ("pending", "approved")
# A closed request's status: the annotation's title, and how the message says it.
CLOSED = {
    "denied": ("Airlock: request denied", "was denied"),
    "cancelled": ("Airlock: request cancelled", "was cancelled"),
    "timed_out": ("Airlock: request timed out", "timed out: no approver decided in time"),
    "failed": ("Airlock: grant failed on GitHub", "was approved, but GitHub refused the grant"),
    "revoked": ("Airlock: access revoked", "was revoked"),
    "expired": ("Airlock: access expired", "expired"),
}


def read_inputs() -> dict:
    inputs = portal_inputs()
    duration = text_input("duration")
    if duration and not (duration.isascii() and duration.isdigit() and int(duration) > 0):
        raise bad_input(
            "duration",
            f"must be a whole number of minutes, like 60 (empty: the policy's default); "
            f"got {duration!r}.",
        )
    wait = text_input("wait-minutes", DEFAULT_WAIT_MINUTES)
    try:
        wait_minutes = float(wait)
    except ValueError:
        wait_minutes = math.nan
    if not (math.isfinite(wait_minutes) and wait_minutes > 0):
        raise bad_input(
            "wait-minutes",
            f"must be a number of minutes above 0, like 30 (or 0.5 for half a minute); "
            f"got {wait!r}.",
        )
    return {
        **inputs,
        "reason": text_input("reason"),
        "duration": int(duration) if duration else None,
        "secret": text_input("secret"),
        "wait_minutes": wait_minutes,
    }


def default_reason(claims: dict) -> str:
    """The run, in words: what an approver needs to place the request."""

    def value(variable: str, claim: str) -> str:
        found = os.environ.get(variable) or claims.get(claim) or ""
        return found if isinstance(found, str) else ""

    workflow = value("GITHUB_WORKFLOW", "workflow") or "a workflow"
    ref, sha = value("GITHUB_REF", "ref"), value("GITHUB_SHA", "sha")[:7]
    run, attempt = value("GITHUB_RUN_ID", "run_id"), value("GITHUB_RUN_ATTEMPT", "run_attempt")
    words = f"Workflow '{workflow}'"
    if ref:
        words += f" on {ref}"
    if sha:
        words += f" at {sha}"
    if run:
        words += f", run {run}" + (f" attempt {attempt}" if attempt not in ("", "1") else "")
    return words


def target_words(access_request: dict) -> str:
    access = access_request.get("access", "")
    if access == "secret" and access_request.get("secret"):
        access = f"secret '{access_request['secret']}'"
    return (
        f"{access} access to {access_request.get('repository', '')} environment "
        f"'{access_request.get('environment', '')}'"
    )


def progress(access_request: dict) -> str:
    """Where a waiting request stands."""
    status = access_request.get("status")
    if status == "pending":
        given = len(access_request.get("approvals") or [])
        needed = access_request.get("approvals_required")
        return f"pending approval ({given} of {needed} approvals)"
    if status == "approved":
        grant = access_request.get("grant") or {}
        state = grant.get("github_status") or "not started"
        error = f"; last error: {grant['last_error']}" if grant.get("last_error") else ""
        return f"approved; the grant is being applied on GitHub ({state}{error})"
    return str(status)


def closed_failure(access_request: dict, link: str) -> ActionFailed:
    status = access_request.get("status")
    title, what = CLOSED[status]
    message = f"Request #{access_request['id']} {what}"
    if access_request.get("closed_by") and status != "failed":
        message += f" by {access_request['closed_by']}"
    grant = access_request.get("grant") or {}
    if status == "failed" and grant.get("last_error"):
        message += f": {grant['last_error']}"
    elif access_request.get("close_comment"):
        message += f": {access_request['close_comment']}"
    elif status == "expired" and access_request.get("expires_at"):
        message += f" at {access_request['expires_at']}"
    return ActionFailed(f"{message.rstrip('.')}. See {link}", title)


def still_waiting_failure(access_request: dict, wait_minutes: float, link: str) -> ActionFailed:
    minutes = f"{wait_minutes:g} minute{'' if wait_minutes == 1 else 's'}"
    if access_request.get("status") == "approved":
        where = f"was approved but is not in force yet after {minutes}: {progress(access_request)}"
    else:
        where = f"is still pending after {minutes}: {progress(access_request)}"
    return ActionFailed(
        f"Request #{access_request['id']} {where}. This job stops waiting (the wait-minutes "
        f"input). The request is cancelled, or its access ended, when this run completes or "
        f"a `mode: release` step runs. See {link}",
        "Airlock: still waiting",
    )


def poll(airlock: Airlock, request_id: int) -> dict | None:
    """The request now, or None when Airlock could not answer this time (the wait goes
    on). A refusal ends the wait."""
    try:
        status, body = airlock.call("GET", f"/api/v1/requests/{request_id}/", retries=0)
    except Unavailable as problem:
        log_text(f"{problem} Still waiting.")
        return None
    if status in TRANSIENT_STATUSES:
        log_text(f"Airlock answered {status} ({message_of(status, body)}); still waiting.")
        return None
    if status != 200:
        raise ActionFailed(
            f"Airlock refused to show request #{request_id} (HTTP {status}): "
            f"{message_of(status, body)}",
            "Airlock refused",
        )
    return body


def wait_until_in_force(airlock: Airlock, filed: dict, *, wait_minutes: float, link: str):
    deadline = time.monotonic() + wait_minutes * 60
    interval, current, shown = POLL_FIRST_SECONDS, filed, None
    while True:
        status = current.get("status")
        if status == "active":
            return current
        if status in CLOSED:
            raise closed_failure(current, link)
        if status not in WAITING:
            raise ActionFailed(
                f"Airlock answered request #{current['id']} with the status {status!r}, "
                f"which this version of the Action does not know. See {link}"
            )
        if progress(current) != shown:
            shown = progress(current)
            log_text(f"Request #{current['id']}: {shown}.")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise still_waiting_failure(current, wait_minutes, link)
        time.sleep(min(interval, remaining))
        interval = min(interval * POLL_GROWTH, POLL_MAX_SECONDS)
        current = poll(airlock, current["id"]) or current


def main() -> int:
    set_outputs({"allowed": "false"})
    inputs = read_inputs()
    airlock = Airlock.for_inputs(inputs)
    token = airlock.token
    token.value()  # its claims name the run, for the default reason
    body = {
        "access": inputs["access"],
        "reason": inputs["reason"] or default_reason(token.claims),
    }
    if inputs["duration"] is not None:
        body["duration_minutes"] = inputs["duration"]
    if inputs["secret"]:
        body["secret"] = inputs["secret"]
    if inputs["environment"]:
        body["environment"] = inputs["environment"]
    # Retrying this POST is safe: filing again from the same run answers the open request.
    status, filed = airlock.call("POST", "/api/v1/requests/", body)
    if status in TRANSIENT_STATUSES:
        raise Unavailable(
            f"Airlock answered HTTP {status}: {message_of(status, filed)}", "Airlock unavailable"
        )
    if status not in (200, 201):
        raise ActionFailed(
            f"Airlock refused the request (HTTP {status}): {message_of(status, filed)}",
            "Airlock refused",
        )
    request_id = filed.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise ActionFailed(f"Airlock answered HTTP {status} without a request id: {filed}")
    link = f"{inputs['url']}/requests/{request_id}/"
    set_outputs({"request-id": str(request_id), "request-url": link})
    filing = "Filed" if status == 201 else "This run already filed"
    log_text(
        f"Airlock: {filing} request #{request_id} for {target_words(filed)}: {link} "
        f"Waiting up to {inputs['wait_minutes']:g} minutes (wait-minutes) for it to be in force."
    )
    annotate("notice", "Airlock: access requested", f"{filing} request #{request_id}: {link}")
    add_summary(
        f"### ⏳ Airlock: access requested\n\n{filing} [request #{request_id}]({link}) for "
        f"{target_words(filed)}: approvers decide on its page."
    )

    active = wait_until_in_force(
        airlock, filed, wait_minutes=inputs["wait_minutes"], link=link
    )
    grant = active.get("grant") or {}
    set_outputs(
        {
            "allowed": "true",
            "expires-at": active.get("expires_at") or "",
            "grant-id": str(grant.get("id") or ""),
        }
    )
    log_text(f"Airlock: request #{request_id} is active until {active.get('expires_at')}.")
    add_summary(
        f"### ✅ Airlock: access granted\n\n[Request #{request_id}]({link}) is active until "
        f"{active.get('expires_at')}: {target_words(active)}, or until this run completes "
        "if sooner."
    )
    return 0
