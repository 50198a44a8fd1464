"""mode: release: give back every grant bound to this run, and cancel its pending requests
(POST /api/v1/runs/release), for a last step with `if: always()`. Finding nothing open is
a success: a run that never asked, or a second release, is nothing to fail over."""

from __future__ import annotations

from request import target_words
from runner import ActionFailed, add_summary, log_text, portal_inputs
from transport import Airlock, message_of


def main() -> int:
    inputs = portal_inputs()
    airlock = Airlock.for_inputs(inputs)
    status, body = airlock.call("POST", "/api/v1/runs/release", {})
    if status != 200:
        raise ActionFailed(
            f"Airlock refused to release this run (HTTP {status}): {message_of(status, body)} "
            "The run's access still ends when the run completes, or at its expiry.",
            "Airlock refused",
        )
    lines = [
        f"- ended: request #{r['id']} ({target_words(r)})" for r in body.get("ended") or []
    ] + [
        f"- cancelled: pending request #{r['id']} ({target_words(r)})"
        for r in body.get("cancelled") or []
    ]
    message = body.get("message") or "Released."
    log_text(f"Airlock: {message}")
    for line in lines:
        log_text(line)
    add_summary("\n".join([f"### 🔓 Airlock: run released\n\n{message}", *lines]))
    return 0
