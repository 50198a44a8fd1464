#!/usr/bin/env python3
"""mode: check (the default): fail the job unless the person who started it holds an
active grant for its repository and environment (inputs and outputs: docs/api.md)."""

from __future__ import annotations

import os
import sys
import urllib.parse

from runner import ActionFailed, add_summary, log_text, portal_inputs, run_step, set_outputs
from transport import Airlock, message_of


def request_link(url: str, repository: str, environment: str, access: str) -> str:
    query = urllib.parse.urlencode(
        {"repository": repository, "environment": environment, "access": access}, safe="/"
    )
    return f"{url}/requests/new/?{query}"


def main() -> int:
    set_outputs({"allowed": "false"})
    inputs = portal_inputs()
    airlock = Airlock.for_inputs(inputs)
    token = airlock.token
    query = {"access": inputs["access"]}
    if inputs["environment"]:
        query["environment"] = inputs["environment"]
    status, body = airlock.call("GET", f"/api/v1/grants/check?{urllib.parse.urlencode(query)}")
    if status != 200:
        raise ActionFailed(
            f"Airlock refused the check (HTTP {status}): {message_of(status, body)}",
            "Airlock refused",
        )
    grant = body.get("grant") or {}
    request_id = str(grant.get("request") or "")
    set_outputs(
        {
            "allowed": "true" if body.get("allowed") else "false",
            "expires-at": grant.get("expires_at") or "",
            "grant-id": str(grant.get("id") or ""),
            "request-id": request_id,
            "request-url": f"{inputs['url']}/requests/{request_id}/" if request_id else "",
        }
    )
    if not body.get("allowed"):
        repository = token.claims.get("repository") or os.environ.get("GITHUB_REPOSITORY", "")
        environment = inputs["environment"] or token.claims.get("environment") or ""
        link = request_link(inputs["url"], repository, environment, inputs["access"])
        raise ActionFailed(
            f"{body.get('reason', 'No active grant.')} Request access at {link}",
            "No active Airlock grant",
        )
    log_text(f"Airlock: {body.get('reason', 'allowed')}")
    add_summary(f"### ✅ Airlock grant active\n\n{body.get('reason', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_step(main))
