#!/usr/bin/env python3
"""The Airlock Action's one step: fail the job unless the person who started it holds an
active grant for its repository and environment (inputs and outputs: docs/api.md)."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_SECONDS = 30
RETRY_DELAY_SECONDS = 3
TRANSIENT_STATUSES = {429, 502, 503, 504}


class ActionFailed(Exception):
    """Stop with this message; the job fails."""

    def __init__(self, message: str, title: str = "Airlock"):
        super().__init__(message)
        self.title = title


def log(line: str = "") -> None:
    print(line, flush=True)


def annotate(kind: str, title: str, message: str) -> None:
    # Workflow commands: a one-line annotation on the run's summary page.
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    log(f"::{kind} title={title}::{escaped}")


def set_outputs(values: dict[str, str]) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as output:
        for name, value in values.items():
            output.write(f"{name}={value}\n")


def add_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")


def read_inputs() -> dict[str, str]:
    url = os.environ.get("INPUT_AIRLOCK_URL", "").strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ActionFailed(
            f"The airlock-url input must be the portal's address, like "
            f"https://airlock.example.com; got {url!r}.",
            "Airlock: bad input",
        )
    retries = os.environ.get("INPUT_RETRIES", "2").strip() or "2"
    if not retries.isdigit():
        raise ActionFailed(f"The retries input must be a number; got {retries!r}.")
    return {
        "url": url,
        "environment": os.environ.get("INPUT_ENVIRONMENT", "").strip(),
        "access": os.environ.get("INPUT_ACCESS", "").strip() or "reviewer",
        "audience": os.environ.get("INPUT_AUDIENCE", "").strip() or url,
        "retries": retries,
    }


def fetch_json(request: urllib.request.Request, *, what: str, retries: int) -> tuple[int, dict]:
    """(status, JSON body) of a request; transient failures are retried a few times."""
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
            if status in TRANSIENT_STATUSES and not last:
                log(f"{what} answered {status}; trying again.")
            else:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"message": raw.decode("utf-8", "replace")[:300]}
                return status, body if isinstance(body, dict) else {"message": str(body)}
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            if last:
                raise ActionFailed(
                    f"Could not reach {what} at {request.full_url.split('?')[0]}: {reason}. "
                    "Check the airlock-url input and that the portal is up and reachable "
                    "from this runner.",
                    "Airlock unreachable",
                ) from None
            log(f"Could not reach {what} ({reason}); trying again.")
        except ValueError:
            raise ActionFailed(f"{what} did not answer with JSON.") from None
        time.sleep(RETRY_DELAY_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def request_id_token(audience: str, retries: int) -> str:
    request_url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not request_url or not request_token:
        raise ActionFailed(
            "This job cannot request an OIDC token from GitHub. Give the job "
            "`permissions: id-token: write` (and keep `contents: read` if it checks out "
            "code); Airlock identifies the job by that token.",
            "Airlock: no OIDC token",
        )
    separator = "&" if "?" in request_url else "?"
    url = f"{request_url}{separator}audience={urllib.parse.quote(audience, safe='')}"
    request = urllib.request.Request(
        url, headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"}
    )
    status, body = fetch_json(request, what="GitHub's OIDC token service", retries=retries)
    token = body.get("value")
    if status != 200 or not isinstance(token, str) or not token:
        raise ActionFailed(
            f"GitHub did not hand out an OIDC token (HTTP {status}): "
            f"{body.get('message', body)}",
            "Airlock: no OIDC token",
        )
    log(f"::add-mask::{token}")
    return token


def token_claims(token: str) -> dict:
    """The token's claims, unverified: only to name the repository and environment in
    messages (Airlock verifies the token itself)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def request_link(url: str, repository: str, environment: str, access: str) -> str:
    query = urllib.parse.urlencode(
        {"repository": repository, "environment": environment, "access": access}, safe="/"
    )
    return f"{url}/requests/new/?{query}"


def main() -> int:
    set_outputs({"allowed": "false"})
    try:
        inputs = read_inputs()
        retries = int(inputs["retries"])
        token = request_id_token(inputs["audience"], retries)
        claims = token_claims(token)
        repository = claims.get("repository") or os.environ.get("GITHUB_REPOSITORY", "")
        environment = inputs["environment"] or claims.get("environment") or ""
        query = {"access": inputs["access"]}
        if inputs["environment"]:
            query["environment"] = inputs["environment"]
        check = urllib.request.Request(
            f"{inputs['url']}/api/v1/grants/check?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        status, body = fetch_json(check, what="Airlock", retries=retries)
        if status != 200:
            message = body.get("message") or f"HTTP {status}"
            raise ActionFailed(
                f"Airlock refused the check (HTTP {status}): {message}", "Airlock refused"
            )
        grant = body.get("grant") or {}
        set_outputs(
            {
                "allowed": "true" if body.get("allowed") else "false",
                "expires-at": grant.get("expires_at") or "",
                "grant-id": str(grant.get("id") or ""),
                "request-id": str(grant.get("request") or ""),
            }
        )
        if not body.get("allowed"):
            link = request_link(inputs["url"], repository, environment, inputs["access"])
            raise ActionFailed(
                f"{body.get('reason', 'No active grant.')} Request access at {link}",
                "No active Airlock grant",
            )
    except ActionFailed as failure:
        annotate("error", failure.title, str(failure))
        add_summary(f"### ❌ {failure.title}\n\n{failure}")
        return 1
    log(f"Airlock: {body.get('reason', 'allowed')}")
    add_summary(f"### ✅ Airlock grant active\n\n{body.get('reason', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
