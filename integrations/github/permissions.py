"""The GitHub App permissions a minted token may carry, and the rules a token's permissions
keep: known names and levels, and a request may only narrow what its grant allows.

The table is the repository part of GitHub's `app-permissions` schema (the request body of
POST /app/installations/{id}/access_tokens), read from the description the local GitHub
checks against (tests/github_fake/openapi-subset.json; a test keeps the two in step). A
minted token is restricted to one repository, so the organization and user permissions of
that schema are left out: they would reach past the repository.
"""

from __future__ import annotations

REPOSITORY_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "actions": ("read", "write"),
    "administration": ("read", "write"),
    "artifact_metadata": ("read", "write"),
    "attestations": ("read", "write"),
    "checks": ("read", "write"),
    "code_quality": ("read", "write"),
    "codespaces": ("read", "write"),
    "contents": ("read", "write"),
    "dependabot_secrets": ("read", "write"),
    "deployments": ("read", "write"),
    "discussions": ("read", "write"),
    "environments": ("read", "write"),
    "issues": ("read", "write"),
    "merge_queues": ("read", "write"),
    "metadata": ("read", "write"),
    "packages": ("read", "write"),
    "pages": ("read", "write"),
    "pull_requests": ("read", "write"),
    "repository_custom_properties": ("read", "write"),
    "repository_hooks": ("read", "write"),
    "repository_projects": ("read", "write", "admin"),
    "secret_scanning_alerts": ("read", "write"),
    "secrets": ("read", "write"),
    "security_events": ("read", "write"),
    "single_file": ("read", "write"),
    "statuses": ("read", "write"),
    "vulnerability_alerts": ("read", "write"),
    "workflows": ("write",),
}

# How much each level allows: a narrower request asks for a lower rank.
LEVEL_RANK = {"read": 1, "write": 2, "admin": 3}


def permissions_refusal(permissions) -> str:
    """Why this is not a set of repository permissions a token may carry; "" if it is.
    permissions: {name: level}, e.g. {"contents": "write", "packages": "read"}."""
    if not isinstance(permissions, dict) or not permissions:
        return (
            "Give the token's permissions as a mapping of GitHub App permission names to "
            "levels, for example {contents: read, packages: write}."
        )
    problems = []
    for name, level in permissions.items():
        levels = REPOSITORY_PERMISSIONS.get(name) if isinstance(name, str) else None
        if levels is None:
            problems.append(
                f"{name!r} is not a GitHub App repository permission (for example contents, "
                "packages, deployments, actions)"
            )
        elif level not in levels:
            problems.append(f"{name} takes {' or '.join(levels)}, not {level!r}")
    return "; ".join(problems) + "." if problems else ""


def narrowed_permissions(*, allowed: dict, asked: dict | None) -> tuple[dict, str]:
    """The permissions of a token asked for with `asked` under a grant allowing `allowed`:
    (permissions, "") or ({}, why not). None or {} asks for all that is allowed; a request
    may name fewer permissions or lower levels, never more."""
    if not asked:
        return dict(allowed), ""
    if refusal := permissions_refusal(asked):
        return {}, refusal
    wider = []
    for name, level in asked.items():
        granted = allowed.get(name)
        if granted is None:
            wider.append(f"{name} (not granted)")
        elif LEVEL_RANK[level] > LEVEL_RANK[granted]:
            wider.append(f"{name}: {level} (granted: {granted})")
    if wider:
        return {}, (
            "A token may only narrow its grant's permissions; these go further: "
            + ", ".join(wider)
            + f". The grant allows {format_permissions(allowed)}."
        )
    return dict(asked), ""


def narrower_permissions(approved: dict, now: dict) -> dict:
    """What both allow: each permission named in both, at the lower of its two levels. A
    permission only one names is dropped, so the result never goes beyond `approved`."""
    narrower = {}
    for name, level in approved.items():
        other = now.get(name)
        if level in LEVEL_RANK and other in LEVEL_RANK:
            narrower[name] = min(level, other, key=LEVEL_RANK.__getitem__)
    return narrower


def format_permissions(permissions: dict) -> str:
    """{contents: write, packages: read} → "contents: write, packages: read"."""
    return ", ".join(f"{name}: {level}" for name, level in sorted(permissions.items()))
