"""The admin, where approvers decide and platform admins manage the rules.

Approvers are not staff: they see the requests routed to their approver groups, and may
approve or deny them, because they are members of a group right now. That is computed
from membership on every request, never stored as a permission, so leaving a group ends it.
Approver groups, policies and secret definitions are for platform admins (staff) only.

Requests are read-only here: they are made in the portal, and change state only through
the services, which hold the rules (no self-approval, distinct approvers, ...).
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.admin_changes import AuditedAdmin
from core.errors import NotAllowed, WrongState
from portal.admin_base import DateHierarchyAdmin
from requests_app import selectors
from requests_app.forms import (
    AccessPolicyAdminForm,
    BreakGlassReviewForm,
    DecisionForm,
    SecretDefinitionAdminForm,
)
from requests_app.models import (
    AccessPolicy,
    AccessRequest,
    Approval,
    ApproverGroup,
    ApproverGroupMember,
    SecretDefinition,
)
from requests_app.services import (
    access_request_approve,
    access_request_deny,
    access_request_review_break_glass,
    approver_group_sync,
)
from requests_app.views import duration_label, grant_state_template

Status = AccessRequest.Status
DECISIONS = {
    "approve": {"service": access_request_approve, "title": "Approve", "verb": "approve"},
    "deny": {"service": access_request_deny, "title": "Deny", "verb": "deny"},
}


def _is_approver(request) -> bool:
    # Asked several times per admin page; membership cannot change within one request.
    if not hasattr(request, "_airlock_is_approver"):
        request._airlock_is_approver = request.user.is_active and selectors.user_is_approver(
            user=request.user
        )
    return request._airlock_is_approver


def _sees_all_requests(request) -> bool:
    return selectors.user_sees_all_requests(user=request.user)


def can_view_request(request, access_request=None) -> bool:
    if _sees_all_requests(request):
        return True
    if not _is_approver(request):
        return False
    if access_request is None:
        return True
    routed = selectors.requests_routed_to(user=request.user)
    return routed.filter(pk=access_request.pk).exists()


# --- access requests ---------------------------------------------------------------------------


class AwaitingMyDecisionFilter(admin.SimpleListFilter):
    """Pending requests the signed-in user may still approve. Approvers land on it."""

    title = "my decision"
    parameter_name = "awaiting"
    MINE = "me"
    ALL = "all"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        # An approver opens the list to decide; a platform admin to look around.
        self.default = self.ALL if _sees_all_requests(request) else self.MINE

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


@admin.register(AccessRequest)
class AccessRequestAdmin(DateHierarchyAdmin):
    list_display = (
        "id",
        "target_column",
        "access_column",
        "requester_name",
        "status",
        "approvals_column",
        "break_glass_column",
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
        "repository",
        "environment",
    )
    search_fields = ("=id", "repository", "environment", "requester__username", "reason")
    date_hierarchy = "created_at"
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

    # Permissions: computed, never stored, for approvers; see the module docstring.

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

    def get_queryset(self, request):
        awaiting = selectors.requests_awaiting_decision_by(user=request.user)
        # Not super(): it orders by get_ordering() before the annotation exists.
        queryset = (
            AccessRequest.objects.select_related("requester", "secret", "policy")
            .annotate(
                approval_count=Count("approvals", distinct=True),
                awaiting_me=Exists(awaiting.filter(pk=OuterRef("pk"))),
            )
            .order_by(*self.get_ordering(request))
        )
        if not _sees_all_requests(request):
            routed = selectors.requests_routed_to(user=request.user)
            queryset = queryset.filter(pk__in=routed.values("pk"))
        return queryset

    def get_ordering(self, request):
        # What awaits the user's decision comes first, then newest first.
        return ["-awaiting_me", "-created_at", "-id"]

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
        return format_html(
            "Approvals required: {} (this request: {}). Approver groups: {}. "
            "Maximum duration {}, default {}. Reason at least {} characters. "
            "Break-glass {}.",
            policy.approvals_required,
            obj.approvals_required,
            groups or "none",
            duration_label(policy.max_duration),
            duration_label(policy.default_duration),
            policy.reason_min_length,
            "allowed" if policy.break_glass else "not allowed",
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

    # The change page: read-only, with the user's decision on top.

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if obj is not None:
            extra_context.update(self._decision_context(request, obj))
        return super().change_view(request, object_id, form_url, extra_context)

    def _decision_context(self, request, obj) -> dict:
        refusal = None
        if obj.status != Status.PENDING:
            refusal = f"This request is {obj.get_status_display()}; there is nothing to decide."
        else:
            refusal = selectors.request_refusal_for_decider(access_request=obj, user=request.user)
            if refusal is None and obj.approvals.filter(approver=request.user).exists():
                refusal = "You have approved this request already."
        review_refusal = None
        if obj.break_glass:
            review_refusal = selectors.request_refusal_for_reviewer(
                access_request=obj, user=request.user
            )
        return {
            "grant_template": grant_state_template(),
            "decision_refusal": refusal,
            "approve_url": reverse(f"admin:{self._url_name('approve')}", args=[obj.pk]),
            "deny_url": reverse(f"admin:{self._url_name('deny')}", args=[obj.pk]),
            "review_refusal": review_refusal,
            "review_url": reverse(f"admin:{self._url_name('review')}", args=[obj.pk]),
        }

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    # Deciding: as actions on the list, and as buttons on a request's page. Both lead to
    # the same page asking for the comment.

    def get_urls(self):
        return [
            path(
                "<path:object_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name=self._url_name("approve"),
            ),
            path(
                "<path:object_id>/deny/",
                self.admin_site.admin_view(self.deny_view),
                name=self._url_name("deny"),
            ),
            path(
                "<path:object_id>/review/",
                self.admin_site.admin_view(self.review_view),
                name=self._url_name("review"),
            ),
        ] + super().get_urls()

    # Reviewing break-glass access after the fact: an action on the list and a button on
    # the request's page, both leading to the page asking for the outcome and a comment.

    @admin.action(description="Record break-glass review…", permissions=["decide"])
    def review_break_glass_selected(self, request, queryset):
        return self._review(request, list(queryset), from_action="review_break_glass_selected")

    def review_view(self, request, object_id):
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        response = self._review(request, [obj])
        if response is None:
            return HttpResponseRedirect(
                reverse(
                    f"admin:{self._url_name('change')}",
                    args=[obj.pk],
                    current_app=self.admin_site.name,
                )
            )
        return response

    def _review(self, request, access_requests, *, from_action=None):
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = BreakGlassReviewForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            for access_request in access_requests:
                self._review_request(request, access_request, form)
            return None
        rows = [
            (
                access_request,
                selectors.request_refusal_for_reviewer(
                    access_request=access_request, user=request.user
                )
                or (
                    f"Already reviewed: {access_request.get_review_outcome_display()}."
                    if access_request.review_outcome
                    else None
                ),
            )
            for access_request in access_requests
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Record the review of break-glass access",
            "opts": self.opts,
            "rows": rows,
            "form": form,
            "from_action": from_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "single": None if from_action else access_requests[0],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/requests_app/accessrequest/review.html", context)

    def _review_request(self, request, access_request, form) -> None:
        try:
            access_request_review_break_glass(
                access_request=access_request,
                reviewer=request.user,
                outcome=form.cleaned_data["outcome"],
                comment=form.cleaned_data["comment"],
            )
        except NotAllowed as exc:
            self.message_user(request, f"Request #{access_request.pk}: {exc}", messages.ERROR)
        except (WrongState, ValidationError) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.message_user(request, f"Request #{access_request.pk}: {text}", messages.WARNING)
        else:
            self.message_user(
                request,
                f"Break-glass request #{access_request.pk}: review recorded "
                f"({access_request.get_review_outcome_display()}).",
                messages.SUCCESS,
            )

    @admin.action(description="Approve selected requests…", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._decide(request, "approve", list(queryset), from_action="approve_selected")

    @admin.action(description="Deny selected requests…", permissions=["decide"])
    def deny_selected(self, request, queryset):
        return self._decide(request, "deny", list(queryset), from_action="deny_selected")

    def approve_view(self, request, object_id):
        return self._decide_one(request, object_id, "approve")

    def deny_view(self, request, object_id):
        return self._decide_one(request, object_id, "deny")

    def _decide_one(self, request, object_id, decision):
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        response = self._decide(request, decision, [obj])
        if response is None:
            change_url = reverse(
                f"admin:{self._url_name('change')}",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
            return HttpResponseRedirect(change_url)
        return response

    def _decide(self, request, decision, access_requests, *, from_action=None):
        """Show the comment page; when it is sent, decide on each request and say how
        each went. Returns None once done (the caller redirects)."""
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = DecisionForm(request.POST if confirmed else None, decision=decision)
        if confirmed and form.is_valid():
            for access_request in access_requests:
                self._decide_request(request, decision, access_request, form)
            return None
        rows = [
            (
                access_request,
                selectors.request_refusal_for_decider(
                    access_request=access_request, user=request.user
                )
                if access_request.status == Status.PENDING
                else f"It is {access_request.get_status_display()}.",
            )
            for access_request in access_requests
        ]
        title = f"{DECISIONS[decision]['title']} access request{'s' if len(rows) != 1 else ''}"
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "decision": decision,
            "rows": rows,
            "form": form,
            "from_action": from_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "single": None if from_action else access_requests[0],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/requests_app/accessrequest/decision.html", context)

    def _decide_request(self, request, decision, access_request, form) -> None:
        service = DECISIONS[decision]["service"]
        try:
            service(
                access_request=access_request,
                approver=request.user,
                comment=form.cleaned_data["comment"],
            )
        except NotAllowed as exc:
            self.message_user(request, f"Request #{access_request.pk}: {exc}", messages.ERROR)
        except WrongState as exc:
            self.message_user(request, f"Request #{access_request.pk}: {exc}", messages.WARNING)
        else:
            self.message_user(request, _outcome(decision, access_request), messages.SUCCESS)


def _outcome(decision: str, access_request: AccessRequest) -> str:
    if decision == "deny":
        return f"Request #{access_request.pk} is denied."
    count = access_request.approvals.count()
    if access_request.status == Status.APPROVED:
        return (
            f"Request #{access_request.pk} is approved ({count} of "
            f"{access_request.approvals_required}); access will be granted."
        )
    return (
        f"Your approval of request #{access_request.pk} is recorded ({count} of "
        f"{access_request.approvals_required}); it needs more."
    )


# --- platform admins' models -------------------------------------------------------------------


class PlatformAdminOnly(AuditedAdmin, admin.ModelAdmin):
    """For staff only: approvers never see these, whatever permissions they were given.
    Changes are written to the audit log too, in the admin's transaction."""

    def has_module_permission(self, request):
        return request.user.is_staff and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.is_staff and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_staff and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_staff and super().has_delete_permission(request, obj)


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
        "sync_column",
        "policies_column",
        "updated_at",
    )
    search_fields = ("name", "description", "members__login", "github_team")
    inlines = [ApproverGroupMemberInline]
    fields = ("name", "description", "github_team", "synced_at", "sync_error")
    readonly_fields = ("synced_at", "sync_error")
    actions = ["sync_from_github_team"]

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


@admin.register(AccessPolicy)
class AccessPolicyAdmin(PlatformAdminOnly):
    form = AccessPolicyAdminForm
    list_display = (
        "name",
        "repositories_column",
        "environments_column",
        "kinds_column",
        "approvals_required",
        "max_duration",
        "break_glass",
    )
    list_filter = ("break_glass", "approvals_required")
    search_fields = ("name", "description")
    filter_horizontal = ("secrets", "approver_groups")
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            "Targets",
            {"fields": ("repository_patterns", "environment_patterns", "access_kinds", "secrets")},
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


@admin.register(SecretDefinition)
class SecretDefinitionAdmin(PlatformAdminOnly):
    form = SecretDefinitionAdminForm
    list_display = ("name", "kind", "org", "value_column", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "org")
    fields = ("name", "kind", "org", "value_column", "new_value")
    readonly_fields = ("value_column",)

    @admin.display(description="value")
    def value_column(self, obj):
        if obj.kind == SecretDefinition.Kind.ORGANIZATION:
            return "kept on GitHub (organization secret)"
        if not obj.has_value:
            return "no value"
        if obj.value_updated_at:
            return f"value set on {obj.value_updated_at:%Y-%m-%d %H:%M %Z}"
        return "value set"


# Django's user and group admin, with Airlock's rules and audit (registered on import).
from requests_app import admin_accounts  # noqa: E402, F401
