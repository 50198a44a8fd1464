"""The access request list's filters and the approvals shown on a request's page."""

from datetime import timedelta

from django.contrib import admin
from django.utils import timezone

from requests_app import selectors
from requests_app.admin.base import can_view_request, sees_all_requests
from requests_app.models import AccessRequest, Approval

Status = AccessRequest.Status


class AwaitingMyDecisionFilter(admin.SimpleListFilter):
    """Pending requests the signed-in user may still approve. Approvers land on it."""

    title = "my decision"
    parameter_name = "awaiting"
    MINE = "me"
    ALL = "all"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        # An approver opens the list to decide; a platform admin to look around.
        self.default = self.ALL if sees_all_requests(request) else self.MINE

    def lookups(self, request, model_admin):
        return [(self.MINE, "Awaiting my decision"), (self.ALL, "All I can see")]

    def value(self):
        return super().value() or self.default

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == self.MINE:
            awaiting = selectors.requests_awaiting_decision_by(user=request.user)
            return queryset.filter(pk__in=awaiting.values("pk"))
        return queryset


class LifecycleFilter(admin.SimpleListFilter):
    """Where requests are in the life of their grant: the admin dashboard links here."""

    title = "access"
    parameter_name = "lifecycle"
    EXPIRING_WITHIN = timedelta(hours=1)

    def lookups(self, request, model_admin):
        return [
            ("in_force", "In force now"),
            ("expiring", "Expiring within the hour"),
            ("break_glass_review", "Break-glass awaiting review"),
            ("break_glass", "Break-glass (all)"),
            ("failed", "Failed on GitHub"),
            ("extensions", "Extensions"),
            ("workflow", "Filed by a workflow"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        value = self.value()
        if value == "in_force":
            return queryset.in_force(now)
        if value == "expiring":
            return queryset.in_force(now).filter(expires_at__lte=now + self.EXPIRING_WITHIN)
        if value == "break_glass_review":
            return queryset.filter(break_glass=True, review_outcome="")
        if value == "break_glass":
            return queryset.filter(break_glass=True)
        if value == "failed":
            return queryset.filter(status=Status.FAILED)
        if value == "extensions":
            return queryset.filter(extends__isnull=False)
        if value == "workflow":
            return queryset.filter(run_id__isnull=False)
        return queryset


class ApprovalInline(admin.TabularInline):
    model = Approval
    fields = ("approver_name", "created_at", "comment")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "approval so far"
    verbose_name_plural = "approvals so far"

    def has_view_permission(self, request, obj=None):
        return can_view_request(request, obj)

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="approver")
    def approver_name(self, obj):
        # Plain text: approvers may not open user pages, so a link would lead to a 403.
        return obj.approver.get_username()

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
