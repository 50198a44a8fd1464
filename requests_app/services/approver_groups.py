"""Team sync: an approver group's members made the members of its GitHub team."""

import dataclasses

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from audit.actions import AuditAction
from core.names import github_team_parts
from integrations.github import GitHubClient, GitHubError, NotFoundError, Work, github_budget
from requests_app.models import ApproverGroup, ApproverGroupMember


@dataclasses.dataclass
class GroupSyncReport:
    group: str
    synced: bool
    added: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    message: str = ""

    def __str__(self):
        if not self.synced:
            return f"{self.group}: not synced: {self.message}"
        if not (self.added or self.removed):
            return f"{self.group}: in step with {self.message} (no change)"
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        return f"{self.group}: {'; '.join(parts)} (from {self.message})"


def approver_group_sync(*, group: ApproverGroup, actor=None) -> GroupSyncReport:
    """Make the group's members the members of its GitHub team (github_team "org/slug").

    The team is read outside any transaction; the members are then replaced in one, with
    what was added and removed audited. Someone who left the team can no longer approve from
    that commit on: who may decide is read from the members at decision time. On a GitHub
    error the members are kept as they were and the error is recorded (sync_error) and
    audited. In dry-run (no credentials) nothing is read or changed, and the report says so.
    """
    report = GroupSyncReport(group=group.name, synced=False, message=group.github_team)
    if not group.github_team.strip():
        report.message = "no GitHub team set"
        return _record_sync_error(group, report, actor)
    try:
        org, slug = github_team_parts(group.github_team)
    except ValidationError as refusal:
        report.message = refusal.messages[0]
        return _record_sync_error(group, report, actor)
    if settings.AIRLOCK_DRY_RUN:
        report.message = "dry-run mode: no GitHub credentials, so the team cannot be read"
        return _record_sync_error(group, report, actor, audit_it=False)
    try:
        logins = GitHubClient().team_member_logins(org, slug)
    except NotFoundError as exc:
        report.message = (
            f"GitHub has no team {org}/{slug}, or Airlock may not read it ({exc.message})"
        )
        return _record_sync_error(group, report, actor)
    except GitHubError as exc:
        report.message = f"GitHub error reading team {org}/{slug}: {exc}"
        return _record_sync_error(group, report, actor)

    wanted = {login.lower(): login for login in logins}
    with transaction.atomic():
        locked = ApproverGroup.objects.select_for_update().get(pk=group.pk)
        current = {m.login.lower(): m for m in locked.members.all()}
        removed = sorted(m.login for key, m in current.items() if key not in wanted)
        added = sorted(login for key, login in wanted.items() if key not in current)
        if removed:
            ApproverGroupMember.objects.filter(
                pk__in=[m.pk for key, m in current.items() if key not in wanted]
            ).delete()
        if added:
            ApproverGroupMember.objects.bulk_create(
                ApproverGroupMember(group=locked, login=login) for login in added
            )
        now = timezone.now()
        ApproverGroup.objects.filter(pk=locked.pk).update(synced_at=now, sync_error="")
        if added or removed or actor is not None or locked.sync_error:
            audit.log_event(
                action=AuditAction.APPROVER_GROUP_SYNCED,
                actor=actor,
                target=locked,
                detail={
                    "github_team": f"{org}/{slug}",
                    "added": added,
                    "removed": removed,
                    "members": sorted(wanted.values(), key=str.lower),
                },
            )
    group.synced_at, group.sync_error = now, ""
    report.synced, report.added, report.removed = True, added, removed
    report.message = f"{org}/{slug}"
    return report


def _record_sync_error(group, report: GroupSyncReport, actor, *, audit_it=True):
    with transaction.atomic():
        ApproverGroup.objects.filter(pk=group.pk).update(sync_error=report.message)
        if audit_it:
            audit.log_event(
                action=AuditAction.APPROVER_GROUP_SYNC_FAILED,
                actor=actor,
                target=group,
                reason=report.message,
                detail={"github_team": group.github_team, "members_kept": group.member_logins()},
            )
    group.sync_error = report.message
    return report


def approver_groups_sync_all(*, actor=None) -> list[GroupSyncReport]:
    """Sync every group that names a GitHub team (beat, and manage.py). While GitHub's
    budget is low (integrations/github/budget.py) nothing is read: what is left goes to
    revocations and grants, the members stay as they are, and the first sync after the
    reset catches up. The reports say so; nothing is recorded as a sync error."""
    groups = ApproverGroup.objects.exclude(github_team="")
    budget = github_budget()
    if budget is not None and not budget.allows(Work.TEAM_SYNC) and not settings.AIRLOCK_DRY_RUN:
        waiting = (
            f"deferred: GitHub's budget is low ({budget.remaining} of {budget.limit} left "
            f"until {budget.reset_at:%H:%M:%S} UTC)"
        )
        return [GroupSyncReport(group=g.name, synced=False, message=waiting) for g in groups]
    return [approver_group_sync(group=group, actor=actor) for group in groups]

