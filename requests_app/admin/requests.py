"""The access request admin: read-only list and page, with the user's decision and the
break-glass review on top (requests_app.admin.request_pages)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import smart_split, unescape_string_literal

from integrations.github.permissions import format_permissions
from portal.admin_base import BoundedCountAdmin, DateHierarchyAdmin
from requests_app import selectors
from requests_app.admin.base import can_view_request
from requests_app.admin.request_filters import (
    ApprovalInline,
    AwaitingMyDecisionFilter,
    EnvironmentFilter,
    LifecycleFilter,
    PolicyFilter,
    RepositoryFilter,
    RequestChangeList,
)
from requests_app.admin.request_pages import RequestPagesMixin
from requests_app.models import AccessKind, AccessRequest
from requests_app.views import duration_label

Status = AccessRequest.Status


def _unquoted(bit: str) -> str:
    if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
        return unescape_string_literal(bit)
    return bit


@admin.register(AccessRequest)
class AccessRequestAdmin(RequestPagesMixin, BoundedCountAdmin, DateHierarchyAdmin):
    """What the list costs follows the page, not the years of requests behind it: newest
    first down the created_at index, approvals counted for the rows shown
    (RequestChangeList), filters whose choices need no DISTINCT over the table, a count that
    stops a few pages ahead (BoundedCountAdmin), and a date filter instead of the date
    hierarchy, whose year and month links are a DISTINCT over every row."""

    list_display = (
        "id",
        "target_column",
        "access_column",
        "requester_name",
        "status",
        "approvals_column",
        "break_glass_column",
        "run_column",
        "created_at",
        "expires_at",
    )
    list_display_links = ("id", "target_column")
    list_filter = (
        AwaitingMyDecisionFilter,
        LifecycleFilter,
        "status",
        "access",
        "break_glass",
        RepositoryFilter,
        EnvironmentFilter,
        PolicyFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    # What the search box searches; get_search_results reads it through
    # selectors.requests_matching_search, in a form PostgreSQL's indexes serve.
    search_fields = ("=id", "repository", "environment", "requester__username", "reason")
    list_per_page = 50
    actions = ["approve_selected", "deny_selected", "review_break_glass_selected"]
    inlines = [ApprovalInline]
    fieldsets = (
        (
            "Request",
            {
                "fields": (
                    "requester_name",
                    "target_column",
                    "access",
                    "secret",
                    "reason",
                    "duration_minutes",
                    "break_glass",
                    "starts_at",
                    "workflow_ref_pattern",
                    "ref_pattern",
                )
            },
        ),
        (
            "Decision",
            {
                "fields": (
                    "status",
                    "approvals_column",
                    "pending_approvers",
                    "created_at",
                    "pending_until",
                    "decided_at",
                    "closed_by_name",
                    "close_comment",
                )
            },
        ),
        ("Access on GitHub", {"fields": ("granted_at", "expires_at", "ended_at")}),
        (
            "Extension",
            {"fields": ("extends_link", "extensions_column", "continuation_column")},
        ),
        (
            "Break-glass review",
            {
                "fields": (
                    "review_outcome",
                    "reviewed_by_name",
                    "reviewed_at",
                    "review_comment",
                )
            },
        ),
        ("Policy", {"fields": ("policy_name", "policy_summary")}),
        ("The requester's recent requests", {"fields": ("requester_history",)}),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])

    # Permissions: computed, never stored, for approvers (requests_app.admin.base).

    def has_module_permission(self, request):
        return can_view_request(request)

    def has_view_permission(self, request, obj=None):
        return can_view_request(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_decide_permission(self, request):
        # The services say, request by request, who may decide; anyone who can see
        # requests is offered the actions and told when the answer is no.
        return can_view_request(request)

    def get_changelist(self, request, **kwargs):
        return RequestChangeList

    def get_queryset(self, request):
        # Not super(): approvers see only what is routed to them (selectors).
        return selectors.requests_for_admin(user=request.user).select_related(
            "requester", "secret", "policy"
        )

    def get_search_results(self, request, queryset, search_term):
        # The terms as Django's admin splits them (quoted phrases kept whole), each matched
        # as search_fields say, without the join and the `id::text` that would make
        # PostgreSQL read every request (selectors.requests_matching_search).
        # A term repeated adds nothing to an AND but its cost: each is looked up once.
        terms = list(dict.fromkeys(_unquoted(bit) for bit in smart_split(search_term)))
        if not terms:
            return queryset, False
        return selectors.requests_matching_search(queryset, terms=terms), False

    def get_ordering(self, request):
        # Newest first, down the created_at index. What awaits the user's decision is the
        # approvers' default filter and the dashboard's first section; putting it first in
        # every list would sort every row the user may see on every load.
        return ["-created_at", "-id"]

    # Columns and read-only fields.

    @admin.display(description="target", ordering="repository")
    def target_column(self, obj):
        return format_html("<code>{}</code> · <code>{}</code>", obj.repository, obj.environment)

    @admin.display(description="access", ordering="access")
    def access_column(self, obj):
        if obj.secret_id:
            return f"{obj.get_access_display()}: {obj.secret.name}"
        return obj.get_access_display()

    # Related objects as plain text: approvers may not open user or policy pages.

    @admin.display(description="requester", ordering="requester__username")
    def requester_name(self, obj):
        return obj.requester.get_username()

    @admin.display(description="closed by")
    def closed_by_name(self, obj):
        return obj.closed_by.get_username() if obj.closed_by_id else "-"

    @admin.display(description="policy")
    def policy_name(self, obj):
        return obj.policy.name

    @admin.display(description="break-glass", ordering="break_glass")
    def break_glass_column(self, obj):
        if not obj.break_glass:
            return "-"
        if not obj.review_outcome:
            return format_html(
                '<span class="airlock-break-glass">BREAK-GLASS</span> '
                '<span class="airlock-review-due">{}</span>',
                "awaiting review",
            )
        return format_html(
            '<span class="airlock-break-glass">BREAK-GLASS</span> {}',
            obj.get_review_outcome_display(),
        )

    @admin.display(description="workflow run", ordering="run_id")
    def run_column(self, obj):
        # The whole run block is on the request's page (requests_app/_run.html).
        if not obj.is_run_bound:
            return "-"
        return format_html(
            '<span class="airlock-workflow">workflow</span> <a href="{}" '
            'rel="noopener noreferrer">Run {}</a>',
            obj.run_url,
            obj.run_id,
        )

    @admin.display(description="extends")
    def extends_link(self, obj):
        if obj.extends_id is None:
            return "-"
        return format_html(
            '<a href="{}">#{}</a>',
            reverse(f"admin:{self._url_name('change')}", args=[obj.extends_id]),
            obj.extends_id,
        )

    @admin.display(description="extended by")
    def extensions_column(self, obj):
        extensions = list(obj.extensions.order_by("pk"))
        if not extensions:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a> ({}{})',
            (
                (
                    reverse(f"admin:{self._url_name('change')}", args=[e.pk]),
                    e.pk,
                    e.get_status_display(),
                    f", until {e.expires_at:%Y-%m-%d %H:%M %Z}" if e.expires_at else "",
                )
                for e in extensions
            ),
        )

    @admin.display(description="continuation")
    def continuation_column(self, obj):
        if obj.continues_original is None:
            return "-"
        if obj.continues_original:
            return "Continued the original's access without a gap."
        return "The original had already expired; this is a new grant."

    @admin.display(description="reviewed by")
    def reviewed_by_name(self, obj):
        return obj.reviewed_by.get_username() if obj.reviewed_by_id else "-"

    @admin.display(description="approvals")
    def approvals_column(self, obj):
        count = getattr(obj, "approval_count", None)
        if count is None:
            count = obj.approvals.count()
        return f"{count} of {obj.approvals_required}"

    @admin.display(description="may still approve")
    def pending_approvers(self, obj):
        if obj.status != Status.PENDING:
            return "-"
        logins = selectors.request_pending_approvers(access_request=obj)
        return ", ".join(logins) or "nobody: the approver groups have no one else in them"

    @admin.display(description="policy rules")
    def policy_summary(self, obj):
        policy = obj.policy
        groups = format_html_join(
            "; ",
            "{} ({})",
            (
                (group.name, ", ".join(group.member_logins()) or "no members")
                for group in policy.approver_groups.all()
            ),
        )
        tokens = ""
        if obj.token_permissions:
            # What the approver lets a job's token do: the request's own permissions, copied
            # when it was filed, which the grant mints; not the policy's of today.
            granted = obj.token_permissions
            tokens = format_html(" Token permissions: {}.", format_permissions(granted))
            if obj.access == AccessKind.TOKEN and policy.token_permissions != granted:
                tokens += format_html(
                    " (The policy offers {} now; this request keeps those it was filed with.)",
                    format_permissions(policy.token_permissions or {}) or "none",
                )
        return format_html(
            "Approvals required: {} (this request: {}). Approver groups: {}. "
            "Maximum duration {}, default {}. Reason at least {} characters. "
            "Break-glass {}. Workflows {}.{}",
            policy.approvals_required,
            obj.approvals_required,
            groups or "none",
            duration_label(policy.max_duration),
            duration_label(policy.default_duration),
            policy.reason_min_length,
            "allowed" if policy.break_glass else "not allowed",
            "may file requests for their run" if policy.workflow_requests else "may not file",
            tokens,
        )

    @admin.display(description="recent requests")
    def requester_history(self, obj):
        history = list(selectors.requester_history(access_request=obj))
        if not history:
            return "This is their first request."
        rows = format_html_join(
            "",
            "<tr><td>#{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    earlier.pk,
                    earlier.target,
                    earlier.access,
                    earlier.get_status_display(),
                    earlier.created_at.strftime("%Y-%m-%d %H:%M"),
                )
                for earlier in history
            ),
        )
        return format_html(
            '<table class="airlock-history"><thead><tr><th>#</th><th>target</th>'
            "<th>access</th><th>status</th><th>created</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )
