"""The permissions a minted token may carry: GitHub's own names and levels, and narrowing."""

import json
from pathlib import Path

from integrations.github.permissions import (
    REPOSITORY_PERMISSIONS,
    narrowed_permissions,
    permissions_refusal,
)

SCHEMA = Path(__file__).resolve().parents[1] / "github_fake" / "openapi-subset.json"


def test_the_table_is_the_repository_part_of_githubs_app_permissions_schema():
    schema = json.loads(SCHEMA.read_text())["components"]["schemas"]["app-permissions"]
    github = {name: tuple(spec["enum"]) for name, spec in schema["properties"].items()}
    for name, levels in REPOSITORY_PERMISSIONS.items():
        assert github[name] == levels, name
    # Every repository permission GitHub lists (they come first, up to workflows) is here,
    # and nothing that reaches past the repository (organization and user permissions).
    names = list(github)
    repository_part = names[: names.index("workflows") + 1]
    assert list(REPOSITORY_PERMISSIONS) == repository_part
    assert "members" not in REPOSITORY_PERMISSIONS
    assert "organization_secrets" not in REPOSITORY_PERMISSIONS


def test_unknown_names_and_levels_are_refused_saying_which():
    assert permissions_refusal({"contents": "write", "packages": "read"}) == ""
    refusal = permissions_refusal({"contents": "admin", "members": "read", "workflows": "read"})
    assert "contents takes read or write, not 'admin'" in refusal
    assert "'members' is not a GitHub App repository permission" in refusal
    assert "workflows takes write, not 'read'" in refusal
    assert "mapping" in permissions_refusal([])
    assert "mapping" in permissions_refusal({})


def test_a_request_narrows_never_widens():
    allowed = {"contents": "write", "packages": "read"}
    assert narrowed_permissions(allowed=allowed, asked=None) == (allowed, "")
    assert narrowed_permissions(allowed=allowed, asked={"contents": "read"}) == (
        {"contents": "read"},
        "",
    )
    permissions, refusal = narrowed_permissions(
        allowed=allowed, asked={"packages": "write", "issues": "read"}
    )
    assert permissions == {}
    assert "packages: write (granted: read)" in refusal
    assert "issues (not granted)" in refusal
    assert "contents: write, packages: read" in refusal
