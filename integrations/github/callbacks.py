"""Which repository and run a webhook's deployment_callback_url names, accepted only when it is
GITHUB_API_URL's own deployment protection rule endpoint."""

from __future__ import annotations

import re
import urllib.parse

from django.conf import settings


class CallbackUrlError(ValueError):
    """A deployment_callback_url that is not GITHUB_API_URL's own review endpoint."""


_CALLBACK_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def deployment_callback_target(url: str) -> tuple[str, int]:
    """(repository, run_id) of a webhook's deployment_callback_url.

    The URL arrives in a webhook, so it is never requested as given (a forged or mistaken
    one would make Airlock send an App token wherever it pointed). It must be
    GITHUB_API_URL's own `/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`
    (same scheme, host and port; no credentials, query or fragment); the answer is then
    posted to that path, rebuilt from the parts, under GITHUB_API_URL.
    """
    base = urllib.parse.urlsplit(settings.GITHUB_API_URL)
    try:
        given = urllib.parse.urlsplit(url)
        same_origin = (given.scheme, given.hostname, given.port) == (
            base.scheme,
            base.hostname,
            base.port,
        )
    except ValueError:  # a malformed port, for instance
        same_origin = False
    if not same_origin or given.username or given.password or given.query or given.fragment:
        raise CallbackUrlError(
            f"deployment_callback_url is not on GITHUB_API_URL ({settings.GITHUB_API_URL})."
        )
    prefix = base.path.rstrip("/")
    match = re.fullmatch(
        re.escape(prefix)
        + r"/repos/([^/]+)/([^/]+)/actions/runs/([0-9]{1,19})/deployment_protection_rule",
        given.path,
    )
    owner, name = (urllib.parse.unquote(p) for p in match.groups()[:2]) if match else ("", "")
    if not (match and _CALLBACK_NAME.fullmatch(owner) and _CALLBACK_NAME.fullmatch(name)):
        raise CallbackUrlError(
            "deployment_callback_url is not a deployment protection rule callback "
            "(/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule)."
        )
    return f"{owner}/{name}", int(match.group(3))
