"""The policy file (policies as code): parsing and validation, before anything is saved; a
file with any problem is refused whole, each problem named with its place in the file."""

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta

import yaml
from django.core.exceptions import ValidationError

from core.durations import parse_duration, validate_positive_duration
from core.names import (
    GITHUB_LOGIN,
    NameRefused,
    canonical_environment_pattern,
    canonical_owner,
    canonical_repository_pattern,
    canonical_secret_name,
    github_team_parts,
    validate_slack_channel,
)
from integrations.github.permissions import permissions_refusal
from requests_app.models import AccessKind, SecretDefinition
from requests_app.rules import (
    NAME_HINT,
    NAME_RE,
    approver_groups_refusal,
    default_duration_refusal,
    policy_number_maximum,
    secret_permissions_refusal,
    secrets_refusal,
    token_permissions_refusal,
)


class PolicyFileError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class GroupSpec:
    name: str
    members: list[str] | None
    github_team: str
    slack_channel: str = ""


@dataclass
class SecretSpec:
    name: str
    kind: str
    org: str
    value: str | None  # read from value_from_env; None leaves the stored value alone
    value_from_env: str
    # GitHub token secrets only: the minted token's {permission: level}.
    permissions: dict[str, str] = field(default_factory=dict)


@dataclass
class PolicySpec:
    name: str
    repositories: list[str]
    environments: list[str]
    access: list[str]
    secrets: list[str]
    max_duration: timedelta
    default_duration: timedelta
    approvals_required: int
    approver_groups: list[str]
    reason_min_length: int
    pending_ttl: timedelta
    break_glass: bool
    break_glass_max_duration: timedelta
    workflow_requests: bool = False
    slack_approvals: bool = True
    # Token access only: what a minted token may do, {permission: level}.
    token_permissions: dict[str, str] = field(default_factory=dict)


@dataclass
class PolicyDocument:
    groups: list[GroupSpec] = field(default_factory=list)
    secrets: list[SecretSpec] = field(default_factory=list)
    policies: list[PolicySpec] = field(default_factory=list)


class _Reader:
    """Turns YAML nodes into values while remembering where each came from."""

    def __init__(self):
        self.problems: list[str] = []

    def fail(self, path: str, node, message: str) -> None:
        line = f", line {node.start_mark.line + 1}" if node is not None else ""
        self.problems.append(f"{path}{line}: {message}")

    def mapping(self, node, path: str, allowed: set[str], required: set[str]) -> dict:
        if not isinstance(node, yaml.MappingNode):
            self.fail(path, node, "expected a mapping (key: value lines)")
            return {}
        items = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"{path}.{key}", key_node, f"unknown field (known: {known})")
            elif key in items:
                self.fail(f"{path}.{key}", key_node, "given twice")
            else:
                items[key] = value_node
        for key in sorted(required - items.keys()):
            self.fail(f"{path}.{key}", node, "is required")
        return items

    def sequence(self, node, path: str) -> list:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(path, node, "expected a list")
            return []
        return node.value

    def scalar(self, node, path: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.fail(path, node, "expected a single value")
            return None
        return node.value

    def text(self, items, key, path, *, pattern=None, hint="", default="") -> str:
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return default
        value = value.strip()
        if pattern is not None and not pattern.match(value):
            self.fail(f"{path}.{key}", node, f"{value!r} is not valid{hint}")
        return value

    def strings(self, items, key, path, *, pattern=None, hint="", nonempty=False) -> list[str]:
        node = items.get(key)
        values = []
        for index, item in enumerate(self.sequence(node, f"{path}.{key}")):
            value = self.scalar(item, f"{path}.{key}[{index}]")
            if value is None:
                continue
            if pattern is not None and not pattern.match(value):
                self.fail(f"{path}.{key}[{index}]", item, f"{value!r} is not valid{hint}")
            values.append(value)
        if nonempty and node is not None and not values:
            self.fail(f"{path}.{key}", node, "must list at least one")
        return values

    def name(self, items, key, path, *, rule, keep_as_written=False) -> str:
        """A GitHub name checked by rule (core.names): its canonical form, or the name as
        written when keep_as_written; "" when missing or refused."""
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return ""
        try:
            canonical = rule(value)
        except ValidationError as refusal:  # NameRefused, or a model field validator's
            self.fail(f"{path}.{key}", node, " ".join(refusal.messages))
            return ""
        return value.strip() if keep_as_written else canonical

    def patterns(self, items, key, path, *, rule) -> list[str]:
        """A non-empty list of policy patterns, each checked and lower-cased by rule."""
        node = items.get(key)
        values = []
        entries = self.sequence(node, f"{path}.{key}")
        for index, item in enumerate(entries):
            value = self.scalar(item, f"{path}.{key}[{index}]")
            if value is None:
                continue
            try:
                values.append(rule(value))
            except NameRefused as refusal:
                self.fail(f"{path}.{key}[{index}]", item, " ".join(refusal.messages))
        if node is not None and not entries:
            self.fail(f"{path}.{key}", node, "must list at least one")
        return values

    def duration(self, items, key, path, default: timedelta) -> timedelta:
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return default
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            self.fail(f"{path}.{key}", node, str(exc))
            return default
        try:
            validate_positive_duration(duration)
        except ValidationError as refusal:
            self.fail(f"{path}.{key}", node, " ".join(refusal.messages))
        return duration

    def integer(self, items, key, path, default: int, *, minimum=0, maximum=1000) -> int:
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return default
        if not re.fullmatch(r"\d+", value.strip()) or not minimum <= int(value) <= maximum:
            self.fail(f"{path}.{key}", node, f"must be a whole number from {minimum} to {maximum}")
            return default
        return int(value)

    def permissions(self, items, key, path) -> dict[str, str] | None:
        """A {GitHub App permission: level} mapping, e.g. `{contents: write}`, each entry
        checked where it is written: {} when missing, None when any entry was refused (the
        refusal is recorded)."""
        node = items.get(key)
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                f"{path}.{key}", node,
                "expected a mapping of permissions to levels, e.g. {contents: read}",
            )
            return None
        permissions, refused = {}, False
        for key_node, value_node in node.value:
            name = self.scalar(key_node, f"{path}.{key}")
            level = self.scalar(value_node, f"{path}.{key}.{name}")
            if name is None or level is None:
                refused = True
                continue
            if name in permissions:
                self.fail(f"{path}.{key}.{name}", key_node, "given twice")
                refused = True
            elif refusal := permissions_refusal({name: level}):
                self.fail(f"{path}.{key}.{name}", key_node, refusal)
                refused = True
            else:
                permissions[name] = level
        return None if refused else permissions

    def slack_channel(self, items, key, path) -> str:
        """A Slack channel id (C0123456789), "" when missing or refused. An empty value is
        refused unless quoted (""): `slack_channel: #prod` reads as empty, since # starts a
        YAML comment, and would silently turn the group's cards off."""
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return ""
        if node.tag == "tag:yaml.org,2002:null":
            self.fail(
                f"{path}.{key}", node,
                "is empty (a #name starts a YAML comment): use the channel id, e.g. "
                "C0123456789 from the channel's details in Slack, not its #name; write \"\" "
                "for no channel",
            )
            return ""
        try:
            validate_slack_channel(value.strip())
        except ValidationError as refusal:
            self.fail(f"{path}.{key}", node, " ".join(refusal.messages))
            return ""
        return value.strip()

    def boolean(self, items, key, path, default: bool) -> bool:
        node = items.get(key)
        value = self.scalar(node, f"{path}.{key}")
        if value is None:
            return default
        if value.lower() not in {"true", "false", "yes", "no"}:
            self.fail(f"{path}.{key}", node, "must be true or false")
            return default
        return value.lower() in {"true", "yes"}


def parse_policy_file(text: str, *, environ=os.environ) -> PolicyDocument:
    reader = _Reader()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"not valid YAML: {exc}"]) from None
    if root is None:
        raise PolicyFileError(["the file is empty"])
    top = reader.mapping(root, "file", {"approver_groups", "secrets", "policies"}, set())
    document = PolicyDocument()

    for index, node in enumerate(reader.sequence(top.get("approver_groups"), "approver_groups")):
        path = f"approver_groups[{index}]"
        items = reader.mapping(
            node, path, {"name", "members", "github_team", "slack_channel"}, {"name"}
        )
        members = None
        if "members" in items:
            members = reader.strings(
                items, "members", path, pattern=GITHUB_LOGIN, hint=" (a GitHub login)"
            )
        document.groups.append(
            GroupSpec(
                name=reader.text(
                    items, "name", path, pattern=NAME_RE, hint=NAME_HINT
                ),
                members=members,
                github_team=reader.name(
                    items, "github_team", path, rule=github_team_parts, keep_as_written=True
                ),
                slack_channel=reader.slack_channel(items, "slack_channel", path),
            )
        )

    for index, node in enumerate(reader.sequence(top.get("secrets"), "secrets")):
        path = f"secrets[{index}]"
        items = reader.mapping(
            node,
            path,
            {"name", "kind", "org", "value_from_env", "permissions"},
            {"name", "kind"},
        )
        kind = reader.text(items, "kind", path)
        if kind and kind not in SecretDefinition.Kind.values:
            reader.fail(
                f"{path}.kind",
                items["kind"],
                f"must be one of {', '.join(SecretDefinition.Kind.values)}",
            )
        org = reader.name(items, "org", path, rule=canonical_owner)
        if kind == SecretDefinition.Kind.ORGANIZATION and not org:
            reader.fail(f"{path}.org", node, "is required for an organization secret")
        elif kind == SecretDefinition.Kind.GITHUB_TOKEN and org:
            reader.fail(
                f"{path}.org",
                items["org"],
                "a github_token secret is written to the target's environment; it takes no org",
            )
        variable = reader.text(items, "value_from_env", path)
        value = None
        if variable:
            if kind == SecretDefinition.Kind.ORGANIZATION:
                reader.fail(
                    f"{path}.value_from_env",
                    items["value_from_env"],
                    "organization secrets keep their value on GitHub",
                )
            elif kind == SecretDefinition.Kind.GITHUB_TOKEN:
                reader.fail(
                    f"{path}.value_from_env",
                    items["value_from_env"],
                    "a github_token secret's value is a token minted for each grant; it "
                    "takes no value_from_env",
                )
            elif not environ.get(variable):
                reader.fail(
                    f"{path}.value_from_env",
                    items["value_from_env"],
                    f"the environment variable {variable} is not set",
                )
            else:
                value = environ[variable]
        permissions = reader.permissions(items, "permissions", path)
        if permissions is not None and kind in SecretDefinition.Kind.values:
            if refusal := secret_permissions_refusal(kind=kind, permissions=permissions):
                reader.fail(f"{path}.permissions", items.get("permissions", node), refusal)
        document.secrets.append(
            SecretSpec(
                # Kept as written: policies refer to the secret by this name.
                name=reader.name(
                    items, "name", path, rule=canonical_secret_name, keep_as_written=True
                ),
                kind=kind,
                org=org,
                value=value,
                value_from_env=variable,
                permissions=permissions or {},
            )
        )

    policy_fields = {
        "name",
        "repositories",
        "environments",
        "access",
        "secrets",
        "max_duration",
        "default_duration",
        "approvals_required",
        "approver_groups",
        "reason_min_length",
        "pending_ttl",
        "break_glass",
        "break_glass_max_duration",
        "workflow_requests",
        "slack_approvals",
        "token_permissions",
    }
    for index, node in enumerate(reader.sequence(top.get("policies"), "policies")):
        path = f"policies[{index}]"
        items = reader.mapping(
            node, path, policy_fields, {"name", "repositories", "environments", "access"}
        )
        access = reader.strings(items, "access", path, nonempty=True)
        for position, kind in enumerate(access):
            if kind not in AccessKind.values:
                reader.fail(
                    f"{path}.access[{position}]",
                    items["access"],
                    f"{kind!r} is not an access kind ({', '.join(AccessKind.values)})",
                )
        max_duration = reader.duration(items, "max_duration", path, timedelta(hours=4))
        default_duration = reader.duration(
            items, "default_duration", path, min(timedelta(hours=1), max_duration)
        )
        if refusal := default_duration_refusal(default=default_duration, maximum=max_duration):
            reader.fail(f"{path}.default_duration", items.get("default_duration"), refusal)
        secrets = reader.strings(items, "secrets", path)
        if refusal := secrets_refusal(access_kinds=access, secrets=secrets):
            reader.fail(f"{path}.secrets", items["secrets"], refusal)
        token_permissions = reader.permissions(items, "token_permissions", path)
        if token_permissions is not None:
            refusal = token_permissions_refusal(
                access_kinds=access, token_permissions=token_permissions
            )
            if refusal:
                reader.fail(
                    f"{path}.token_permissions", items.get("token_permissions", node), refusal
                )
        approvals_required = reader.integer(
            items, "approvals_required", path, 1,
            maximum=policy_number_maximum("approvals_required"),
        )
        groups = reader.strings(items, "approver_groups", path)
        refusal = approver_groups_refusal(
            approvals_required=approvals_required, approver_groups=groups
        )
        if refusal:
            reader.fail(f"{path}.approver_groups", node, refusal)
        document.policies.append(
            PolicySpec(
                name=reader.text(
                    items, "name", path, pattern=NAME_RE, hint=NAME_HINT
                ),
                repositories=reader.patterns(
                    items, "repositories", path, rule=canonical_repository_pattern
                ),
                environments=reader.patterns(
                    items, "environments", path, rule=canonical_environment_pattern
                ),
                access=access,
                secrets=secrets,
                max_duration=max_duration,
                default_duration=default_duration,
                approvals_required=approvals_required,
                approver_groups=groups,
                reason_min_length=reader.integer(
                    items, "reason_min_length", path, 10,
                    maximum=policy_number_maximum("reason_min_length"),
                ),
                pending_ttl=reader.duration(items, "pending_ttl", path, timedelta(hours=24)),
                break_glass=reader.boolean(items, "break_glass", path, False),
                break_glass_max_duration=reader.duration(
                    items, "break_glass_max_duration", path, timedelta(hours=1)
                ),
                workflow_requests=reader.boolean(items, "workflow_requests", path, False),
                slack_approvals=reader.boolean(items, "slack_approvals", path, True),
                token_permissions=token_permissions or {},
            )
        )

    _check_names(reader, document)
    if reader.problems:
        raise PolicyFileError(reader.problems)
    return document


def _check_names(reader: _Reader, document: PolicyDocument) -> None:
    for label, specs in (
        ("approver_groups", document.groups),
        ("secrets", document.secrets),
        ("policies", document.policies),
    ):
        seen = set()
        for index, spec in enumerate(specs):
            if spec.name in seen:
                reader.fail(f"{label}[{index}].name", None, f"{spec.name!r} is defined twice")
            seen.add(spec.name)
