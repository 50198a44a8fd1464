"""The approver group admin (staff only): members by GitHub login, or synced from a team."""

from django.contrib import admin, messages
from django.utils.html import format_html

from requests_app.admin.base import PlatformAdminOnly
from requests_app.models import ApproverGroup, ApproverGroupMember
from requests_app.services import approver_group_sync


class ApproverGroupMemberInline(admin.TabularInline):
    model = ApproverGroupMember
    fields = ("login", "added_at")
    readonly_fields = ("added_at",)
    extra = 1
    verbose_name = "member"
    verbose_name_plural = "members (GitHub logins)"


@admin.register(ApproverGroup)
class ApproverGroupAdmin(PlatformAdminOnly):
    list_display = (
        "name",
        "members_column",
        "github_team",
        "slack_channel_column",
        "sync_column",
        "policies_column",
        "updated_at",
    )
    search_fields = ("name", "description", "members__login", "github_team", "slack_channel")
    inlines = [ApproverGroupMemberInline]
    fields = ("name", "description", "github_team", "slack_channel", "synced_at", "sync_error")
    readonly_fields = ("synced_at", "sync_error")
    actions = ["sync_from_github_team"]

    def audit_snapshot(self, obj) -> dict:
        # The members are edited inline on the same page: who may approve is the point.
        return {
            **super().audit_snapshot(obj),
            "members": sorted(obj.members.values_list("login", flat=True)),
        }

    @admin.display(description="Slack channel", ordering="slack_channel")
    def slack_channel_column(self, obj):
        return obj.slack_channel or "-"

    @admin.display(description="team sync")
    def sync_column(self, obj):
        if not obj.github_team:
            return "-"
        if obj.sync_error:
            return format_html('<span class="airlock-refusal">{}</span>', obj.sync_error)
        if obj.synced_at:
            return f"synced {obj.synced_at:%Y-%m-%d %H:%M %Z}"
        return "not synced yet"

    @admin.action(description="Sync from GitHub team now", permissions=["change"])
    def sync_from_github_team(self, request, queryset):
        for group in queryset:
            report = approver_group_sync(group=group, actor=request.user)
            self.message_user(
                request, str(report), messages.SUCCESS if report.synced else messages.ERROR
            )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("members", "policies")

    @admin.display(description="members")
    def members_column(self, obj):
        return ", ".join(member.login for member in obj.members.all()) or "-"

    @admin.display(description="policies")
    def policies_column(self, obj):
        return ", ".join(policy.name for policy in obj.policies.all()) or "-"
