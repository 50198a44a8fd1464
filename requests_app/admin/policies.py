"""The access policy admin (staff only)."""

from django.contrib import admin

from integrations.github.permissions import format_permissions
from requests_app.admin.base import PlatformAdminOnly
from requests_app.forms import AccessPolicyAdminForm
from requests_app.models import AccessPolicy


@admin.register(AccessPolicy)
class AccessPolicyAdmin(PlatformAdminOnly):
    form = AccessPolicyAdminForm
    list_display = (
        "name",
        "repositories_column",
        "environments_column",
        "kinds_column",
        "token_permissions_column",
        "approvals_required",
        "max_duration",
        "break_glass",
        "workflow_requests",
        "slack_approvals",
    )
    list_filter = ("break_glass", "workflow_requests", "slack_approvals", "approvals_required")
    search_fields = ("name", "description")
    filter_horizontal = ("secrets", "approver_groups")
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            "Targets",
            {
                "fields": (
                    "repository_patterns",
                    "environment_patterns",
                    "access_kinds",
                    "secrets",
                    "token_permissions",
                )
            },
        ),
        (
            "Approval",
            {"fields": ("approvals_required", "approver_groups", "reason_min_length")},
        ),
        (
            "Durations",
            {
                "fields": ("max_duration", "default_duration", "pending_ttl"),
                "description": "As [DD] [HH:[MM:]]ss, for example 4:00:00 for four hours.",
            },
        ),
        ("Break-glass", {"fields": ("break_glass", "break_glass_max_duration")}),
        (
            "Workflows",
            {
                "fields": ("workflow_requests",),
                "description": "A job asks with the Action's request mode. Approvers see "
                "its workflow, ref, commit and run; a release step or the run's end takes "
                "the access away, and its duration stays the backstop.",
            },
        ),
        (
            "Slack",
            {
                "fields": ("slack_approvals",),
                "description": "Requests are posted to the approver groups' Slack "
                "channels as cards. On, approvers may approve and deny from the card; off, "
                "the card links here instead.",
            },
        ),
    )

    @admin.display(description="repositories")
    def repositories_column(self, obj):
        return ", ".join(obj.repository_patterns)

    @admin.display(description="environments")
    def environments_column(self, obj):
        return ", ".join(obj.environment_patterns)

    @admin.display(description="access")
    def kinds_column(self, obj):
        return ", ".join(obj.access_kinds)

    @admin.display(description="token permissions")
    def token_permissions_column(self, obj):
        if not isinstance(obj.token_permissions, dict) or not obj.token_permissions:
            return "-"
        return format_permissions(obj.token_permissions)
