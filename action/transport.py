"""The Action's HTTP: the job's OIDC token from GitHub's token service (fetched again before
it expires), and JSON calls to Airlock, retrying what may pass. Standard library only: the
Action runs on a bare runner's python3."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from runner import ActionFailed, log, log_text

TIMEOUT_SECONDS = 30
RETRY_DELAY_SECONDS = 3
TRANSIENT_STATUSES = {429, 502, 503, 504}
# A token this close to its `exp` is not used for another call: a fresh one is asked for.
REFRESH_MARGIN_SECONDS = 60
# When a token does not say when it expires: GitHub's live about five minutes.
ASSUMED_LIFETIME_SECONDS = 300


class Unavailable(ActionFailed):
    """A failure that may pass: the service cannot be reached, or answered 429/502/503/504
    after the retries."""


def fetch_json(request: urllib.request.Request, *, what: str, retries: int) -> tuple[int, dict]:
    """(status, JSON body) of a request. Transient failures are retried `retries` times;
    after that a transient HTTP status is returned like any other, and an unreachable
    service raises Unavailable."""
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, _json_object(response.read())
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
            if status in TRANSIENT_STATUSES and not last:
                log(f"{what} answered {status}; trying again.")
            else:
                try:
                    return status, _json_object(raw)
                except ValueError:
                    return status, {"message": raw.decode("utf-8", "replace")[:300]}
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            if last:
                raise Unavailable(
                    f"Could not reach {what} at {request.full_url.split('?')[0]}: {reason}. "
                    "Check the airlock-url input and that the portal is up and reachable "
                    "from this runner.",
                    "Airlock unreachable",
                ) from None
            log_text(f"Could not reach {what} ({reason}); trying again.")
        except ValueError:
            raise ActionFailed(f"{what} did not answer with JSON.") from None
        time.sleep(RETRY_DELAY_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def _json_object(raw: bytes) -> dict:
    body = json.loads(raw or b"{}")
    return body if isinstance(body, dict) else {"message": str(body)}


def message_of(status: int, body: dict) -> str:
    """What an error answer says, for people."""
    return str(body.get("message") or f"HTTP {status}")


def token_claims(token: str) -> dict:
    """The token's claims, unverified: only to name the run, the repository and the
    environment in messages, and to know when it expires (Airlock verifies the token)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


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
    what = "GitHub's OIDC token service"
    status, body = fetch_json(request, what=what, retries=retries)
    token = body.get("value")
    if status in TRANSIENT_STATUSES:
        raise Unavailable(
            f"{what} answered HTTP {status}: {message_of(status, body)}", "Airlock: no OIDC token"
        )
    if status != 200 or not isinstance(token, str) or not token:
        raise ActionFailed(
            f"GitHub did not hand out an OIDC token (HTTP {status}): "
            f"{body.get('message', body)}",
            "Airlock: no OIDC token",
        )
    log(f"::add-mask::{token}")
    return token


class IdToken:
    """The job's OIDC token for one audience. A token lives minutes and a wait for approval
    can last longer, so a fresh one is asked for when the current one nears its `exp`."""

    def __init__(self, audience: str, retries: int):
        self.audience, self.retries = audience, retries
        self._value, self._expires_at, self.claims = "", 0.0, {}

    def value(self) -> str:
        if not self._value or self._expires_at - time.time() < REFRESH_MARGIN_SECONDS:
            self.refresh()
        return self._value

    def refresh(self) -> None:
        self._value = request_id_token(self.audience, self.retries)
        self.claims = token_claims(self._value)
        exp = self.claims.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            self._expires_at = float(exp)
        else:
            self._expires_at = time.time() + ASSUMED_LIFETIME_SECONDS


class Airlock:
    """JSON calls to the portal's API with the job's OIDC token."""

    def __init__(self, url: str, token: IdToken, retries: int):
        self.url, self.token, self.retries = url, token, retries

    @classmethod
    def for_inputs(cls, inputs: dict) -> Airlock:
        """The portal the inputs name (runner.portal_inputs), with the job's token."""
        retries = inputs["retries"]
        return cls(inputs["url"], IdToken(inputs["audience"], retries), retries)

    def call(
        self, method: str, path: str, body: dict | None = None, *, retries: int | None = None
    ) -> tuple[int, dict]:
        """(status, JSON body). A 401 is asked once more with a fresh token: the token
        may have expired on the way."""
        for fresh_token in (False, True):
            if fresh_token:
                self.token.refresh()
            request = urllib.request.Request(
                f"{self.url}{path}",
                data=None if body is None else json.dumps(body).encode(),
                method=method,
                headers={
                    "Authorization": f"Bearer {self.token.value()}",
                    "Accept": "application/json",
                    **({} if body is None else {"Content-Type": "application/json"}),
                },
            )
            status, answer = fetch_json(
                request, what="Airlock", retries=self.retries if retries is None else retries
            )
            if status != 401:
                break
        return status, answer
