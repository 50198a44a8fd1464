"""Questions asked with a person's own OAuth token (not Airlock's credentials): whether they
belong to an organization, for sign-in."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from django.conf import settings

from integrations.github.connections import api_path
from integrations.github.errors import TransientGitHubError

MEMBERSHIP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class OrgMembership:
    """GitHub's answer about the token owner's membership: the HTTP status, and on a 200 the
    membership's state ("active", "pending", ...)."""

    status: int
    state: str | None = None


def org_membership(*, token: str, org: str) -> OrgMembership:
    """GET /user/memberships/orgs/{org} as the token's owner. Asked once, without retries:
    the person is waiting on the sign-in page. TransientGitHubError (its message the
    connection's error) when GitHub could not be reached."""
    try:
        response = requests.get(
            settings.GITHUB_API_URL + api_path("user", "memberships", "orgs", org),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=MEMBERSHIP_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise TransientGitHubError(str(exc), operation=f"GET membership of {org}") from exc
    if response.status_code == 200:
        return OrgMembership(status=200, state=response.json().get("state"))
    return OrgMembership(status=response.status_code)
