"""Applying a policy file: approver groups, secrets and policies made to match it."""

import dataclasses

from django.db import transaction

import audit
from audit.actions import AuditAction
from requests_app.models import AccessPolicy, ApproverGroup, ApproverGroupMember, SecretDefinition
from requests_app.policy_file import PolicyDocument, PolicyFileError


@dataclasses.dataclass
class PolicyApplyReport:
    created: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)


def policy_file_apply(*, document: PolicyDocument, actor=None) -> PolicyApplyReport:
    """Make approver groups, secrets and policies match the file, in one transaction.

    Idempotent: applying the same file twice changes nothing the second time. Objects the
    file does not name are left alone. A reference to a group or secret that exists neither
    in the file nor in the database refuses the whole file (PolicyFileError).
    """
    report = PolicyApplyReport()
    with transaction.atomic():
        groups = {spec.name: _apply_group(spec, report, actor) for spec in document.groups}
        secrets = {spec.name: _apply_secret(spec, report, actor) for spec in document.secrets}
        problems = []
        for index, spec in enumerate(document.policies):
            group_objs, secret_objs = [], []
            for name in spec.approver_groups:
                group = groups.get(name) or ApproverGroup.objects.filter(name=name).first()
                if group is None:
                    problems.append(f"policies[{index}].approver_groups: no group named {name!r}")
                group_objs.append(group)
            for name in spec.secrets:
                secret = secrets.get(name) or SecretDefinition.objects.filter(name=name).first()
                if secret is None:
                    problems.append(f"policies[{index}].secrets: no secret named {name!r}")
                secret_objs.append(secret)
            if not problems:
                _apply_policy(spec, group_objs, secret_objs, report, actor)
        if problems:
            raise PolicyFileError(problems)
    return report


def _record(report, label, created, changes, obj, actor):
    if created:
        report.created.append(label)
        action = AuditAction.POLICY_FILE_CREATED
    elif changes:
        report.changed.append(f"{label} ({', '.join(sorted(changes))})")
        action = AuditAction.POLICY_FILE_CHANGED
    else:
        report.unchanged.append(label)
        return
    audit.log_event(action=action, actor=actor, target=obj, detail={"changed": sorted(changes)})


def _assign(obj, values: dict) -> set[str]:
    changes = {name for name, value in values.items() if getattr(obj, name) != value}
    for name in changes:
        setattr(obj, name, values[name])
    return changes


def _apply_group(spec, report, actor) -> ApproverGroup:
    group, created = ApproverGroup.objects.get_or_create(name=spec.name)
    changes = _assign(
        group, {"github_team": spec.github_team, "slack_channel": spec.slack_channel}
    )
    if changes:
        group.save()
    if spec.members is not None:
        wanted = {login.lower(): login for login in spec.members}
        current = {m.login.lower(): m for m in group.members.all()}
        removed = [m.pk for key, m in current.items() if key not in wanted]
        added = [login for key, login in wanted.items() if key not in current]
        if removed:
            ApproverGroupMember.objects.filter(pk__in=removed).delete()
            changes.add("members removed")
        if added:
            ApproverGroupMember.objects.bulk_create(
                ApproverGroupMember(group=group, login=login) for login in added
            )
            changes.add("members added")
    _record(report, f"approver group {spec.name}", created, changes, group, actor)
    return group


def _apply_secret(spec, report, actor) -> SecretDefinition:
    secret = SecretDefinition.objects.filter(name=spec.name).first()
    created = secret is None
    if created:
        secret = SecretDefinition(name=spec.name)
    changes = _assign(
        secret, {"kind": spec.kind, "org": spec.org, "permissions": spec.permissions}
    )
    if spec.kind == SecretDefinition.Kind.GITHUB_TOKEN and secret.has_value:
        # Its value is minted per grant: a value kept from another kind is dropped.
        secret.encrypted_value = b""
        secret.value_updated_at = None
        changes.add("value")
    if spec.value is not None and (not secret.has_value or secret.get_value() != spec.value):
        secret.set_value(spec.value)
        changes.add("value")
    if created or changes:
        secret.save()
    _record(report, f"secret {spec.name}", created, changes, secret, actor)
    return secret


def _apply_policy(spec, groups, secrets, report, actor) -> AccessPolicy:
    policy = AccessPolicy.objects.filter(name=spec.name).first()
    created = policy is None
    if created:
        policy = AccessPolicy(name=spec.name)
    changes = _assign(
        policy,
        {
            "repository_patterns": spec.repositories,
            "environment_patterns": spec.environments,
            "access_kinds": spec.access,
            "max_duration": spec.max_duration,
            "default_duration": spec.default_duration,
            "approvals_required": spec.approvals_required,
            "reason_min_length": spec.reason_min_length,
            "pending_ttl": spec.pending_ttl,
            "break_glass": spec.break_glass,
            "break_glass_max_duration": spec.break_glass_max_duration,
            "workflow_requests": spec.workflow_requests,
            "slack_approvals": spec.slack_approvals,
            "token_permissions": spec.token_permissions,
        },
    )
    if created or changes:
        policy.save()
    if created or {g.pk for g in policy.approver_groups.all()} != {g.pk for g in groups}:
        policy.approver_groups.set(groups)
        changes.add("approver_groups")
    if created or {s.pk for s in policy.secrets.all()} != {s.pk for s in secrets}:
        policy.secrets.set(secrets)
        changes.add("secrets")
    _record(report, f"policy {spec.name}", created, changes, policy, actor)
    return policy

