"""The access request list's filters, its change list, and the approvals shown on a
request's page."""

from datetime import timedelta

from django.contrib import admin
from django.utils import timezone

from portal.admin_base import CalendarChangeList, IndexedValuesFilter, distinct_values
from requests_app import selectors
from requests_app.admin.base import can_view_request, sees_all_requests
from requests_app.models import AccessPolicy, AccessRequest, Approval

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


class _RequestValuesFilter(IndexedValuesFilter):
    """Choices from the requests the user may see: an approver is not told the names of
    repositories routed to others."""

    def choice_values(self, request, model_admin) -> list:
        within = None
        if not sees_all_requests(request):
            within = (
                "policy",
                selectors.policies_routed_to(user=request.user).values_list("pk", flat=True),
            )
        return distinct_values(AccessRequest, self.field_name, limit=self.limit, within=within)


class RepositoryFilter(_RequestValuesFilter):
    title = "repository"
    field_name = "repository"


class EnvironmentFilter(_RequestValuesFilter):
    title = "environment"
    field_name = "environment"


class PolicyFilter(admin.SimpleListFilter):
    """By policy, its choices from the policies table (those routed to an approver)."""

    title = "policy"
    parameter_name = "policy"

    def lookups(self, request, model_admin):
        policies = AccessPolicy.objects.order_by("name")
        if not sees_all_requests(request):
            policies = selectors.policies_routed_to(user=request.user).order_by("name")
        return [(str(pk), name) for pk, name in policies.values_list("pk", "name")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        value = self.value()
        # A policy id, or no policy: nothing else reaches the database (a huge number
        # would overflow its integer column).
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            return queryset.none()
        return queryset.filter(policy_id=int(value))


class RequestChangeList(CalendarChangeList):
    """The request list, with each shown row's approval count read in one query for the
    page, instead of a COUNT joined to every row the user may see."""

    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list)
        counts = selectors.request_approval_counts(access_requests=rows)
        for row in rows:
            row.approval_count = counts[row.pk]
        self.result_list = rows


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
