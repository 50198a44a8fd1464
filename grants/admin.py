"""Grants and targets in the admin: read-only records of what Airlock did on GitHub, with
retry and early revoke through the services (the beat schedule's admin: admin_beat.py)."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html

from core.errors import NotAllowed, WrongState
from grants.models import (
    DeploymentGate,
    EnvironmentSecret,
    Grant,
    MintedToken,
    OrgSecretTarget,
    Target,
    WorkflowRunDelivery,
)
from grants.services import grant_retry, grant_revoke
from grants.templatetags.grant_tokens import minted_token_permissions, minted_token_state
from portal.admin_base import DateHierarchyAdmin


class ReadOnlyAdmin(DateHierarchyAdmin):
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # Read-only: the change view is a view. Actions check their own permission.
        return False


class RevocationOverdueFilter(admin.SimpleListFilter):
    title = "revocation"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue"), ("due", "Due now (not yet done)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.revocation_overdue()
        if self.value() == "due":
            return queryset.filter(state=Grant.State.APPLIED, expires_at__lte=timezone.now())
        return queryset


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "request_link",
        "kind",
        "login",
        "target",
        "github_state",
        "applied_at",
        "expires_at",
        "revoked_at",
        "overdue",
    ]
    list_filter = [RevocationOverdueFilter, "state", "kind", "target__dry_run"]
    search_fields = ["login", "target__repository", "target__environment", "secret__name"]
    list_select_related = ["access_request", "target", "secret", "org_secret"]
    date_hierarchy = "created_at"
    actions = ["retry_now", "revoke_now"]
    readonly_fields = [
        "access_request",
        "kind",
        "target",
        "org_secret",
        "secret",
        "login",
        "github_user_id",
        "github_state",
        "overdue",
        "created_at",
        "applied_at",
        "expires_at",
        "revoke_requested_at",
        "revoke_requested_by",
        "revoked_at",
        "end_reason",
        "last_error",
        "attempts",
        "next_attempt_at",
    ]
    fields = readonly_fields

    @admin.display(description="request", ordering="access_request")
    def request_link(self, grant):
        return f"#{grant.access_request_id}"

    @admin.display(description="on GitHub", ordering="state")
    def github_state(self, grant):
        if grant.state == Grant.State.FAILED:
            return format_html("failed: <span class='airlock-refusal'>{}</span>", grant.last_error)
        if grant.state == Grant.State.PENDING and grant.last_error:
            return format_html(
                "retrying: <span class='airlock-refusal'>{}</span>", grant.last_error
            )
        return grant.github_status

    @admin.display(description="revocation overdue since", ordering="revocation_overdue_since")
    def overdue(self, grant):
        if not grant.is_revocation_overdue:
            return "-"
        return format_html(
            "<strong class='airlock-refusal'>revocation overdue since {}</strong>",
            timezone.localtime(grant.revocation_overdue_since).strftime("%Y-%m-%d %H:%M:%S %Z"),
        )

    @admin.action(description="Retry selected grants now", permissions=["manage"])
    def retry_now(self, request, queryset):
        self._act(request, queryset, "retried", lambda g: grant_retry(grant=g, user=request.user))

    @admin.action(description="Revoke selected grants now", permissions=["manage"])
    def revoke_now(self, request, queryset):
        self._act(
            request,
            queryset,
            "revoked",
            lambda g: grant_revoke(grant=g, user=request.user, comment="Revoked in the admin"),
        )

    def has_manage_permission(self, request):
        return request.user.is_active and request.user.has_perm("grants.change_grant")

    def _act(self, request, queryset, verb, service):
        done = 0
        for grant in queryset.select_related("access_request"):
            try:
                service(grant)
                done += 1
            except (NotAllowed, WrongState) as exc:
                self.message_user(request, f"Grant #{grant.pk}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{done} grant(s) {verb}; GitHub follows shortly.")


class EnvironmentSecretInline(admin.TabularInline):
    model = EnvironmentSecret
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "name",
        "baseline_present",
        "baseline_recorded_at",
        "airlock_wrote",
        "written_at",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Target)
class TargetAdmin(ReadOnlyAdmin):
    list_display = [
        "repository",
        "environment",
        "dry_run",
        "baseline_recorded_at",
        "last_reconciled_at",
        "last_checked_at",
        "last_error",
    ]
    list_filter = ["dry_run"]
    search_fields = ["repository", "environment"]
    inlines = [EnvironmentSecretInline]
    fields = readonly_fields = [
        "repository",
        "environment",
        "dry_run",
        "repository_id",
        "baseline_reviewers",
        "baseline_recorded_at",
        "airlock_reviewers",
        "observed",
        "last_reconciled_at",
        "last_checked_at",
        "last_error",
        "lease_owner",
        "lease_until",
    ]


@admin.register(OrgSecretTarget)
class OrgSecretTargetAdmin(ReadOnlyAdmin):
    list_display = ["org", "name", "dry_run", "baseline_recorded_at", "last_reconciled_at"]
    list_filter = ["dry_run"]
    search_fields = ["org", "name"]
    fields = readonly_fields = [
        "org",
        "name",
        "dry_run",
        "baseline_repository_ids",
        "baseline_recorded_at",
        "airlock_repository_ids",
        "observed",
        "last_reconciled_at",
        "last_checked_at",
        "last_error",
        "lease_owner",
        "lease_until",
    ]


@admin.register(DeploymentGate)
class DeploymentGateAdmin(ReadOnlyAdmin):
    """Deployments that waited on Airlock's protection rule: who, where, the decision, and
    whether GitHub has it yet (with GitHub's message when posting it failed)."""

    list_display = [
        "id",
        "login",
        "repository",
        "environment",
        "run_id",
        "state",
        "request_link",
        "on_github",
        "created_at",
        "decided_at",
    ]
    list_filter = ["state", ("gave_up_at", admin.EmptyFieldListFilter)]
    search_fields = ["login", "repository", "environment", "=run_id", "=delivery_id"]
    list_select_related = ["access_request"]
    date_hierarchy = "created_at"
    fields = readonly_fields = [
        "state",
        "login",
        "sender_id",
        "repository",
        "environment",
        "run_id",
        "event",
        "ref",
        "sha",
        "deployment_id",
        "installation_id",
        "delivery_id",
        "subject",
        "callback_url",
        "access_request",
        "comment",
        "created_at",
        "decided_at",
        "on_github",
        "notice_posted_at",
        "posted_at",
        "post_attempts",
        "next_attempt_at",
        "last_error",
        "gave_up_at",
    ]

    @admin.display(description="request", ordering="access_request")
    def request_link(self, gate):
        return f"#{gate.access_request_id}" if gate.access_request_id else "-"

    @admin.display(description="on GitHub")
    def on_github(self, gate):
        if gate.gave_up_at:
            return format_html(
                "refused: <span class='airlock-refusal'>{}</span>", gate.last_error
            )
        if gate.posted_at:
            return f"{gate.state} (posted)"
        if gate.state != DeploymentGate.State.PENDING:
            pending = f"{gate.state}, not posted yet"
        else:
            pending = "waiting (comment posted)" if gate.notice_posted_at else "waiting"
        if gate.last_error:
            return format_html(
                "{}: retrying: <span class='airlock-refusal'>{}</span>", pending, gate.last_error
            )
        return pending


@admin.register(WorkflowRunDelivery)
class WorkflowRunDeliveryAdmin(ReadOnlyAdmin):
    """Runs GitHub said completed (the workflow_run webhook), and what each ended."""

    list_display = [
        "received_at",
        "repository",
        "run_id",
        "run_attempt",
        "conclusion",
        "grants_ended",
        "requests_cancelled",
        "delivery_id",
    ]
    list_filter = ["conclusion"]
    search_fields = ["repository", "=run_id", "=delivery_id"]
    fields = readonly_fields = list_display


class MintedTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        not_revoked = queryset.filter(revoked_at__isnull=True)
        if self.value() == "live":
            return not_revoked.filter(erased_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return not_revoked.filter(Q(expires_at__lte=now) | Q(erased_at__isnull=False))
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(MintedToken)
class MintedTokenAdmin(ReadOnlyAdmin):
    """The GitHub tokens minted for grants: for which grant and repository, with which
    permissions, and whether revoked, expired or live. Never the value (it is kept
    encrypted only to revoke it): the digest's first characters name each one."""

    list_display = [
        "token_name",
        "grant_link",
        "purpose",
        "repository",
        "permissions_column",
        "minted_at",
        "expires_at",
        "state_column",
        "revoked_at",
        "erased_at",
        "dry_run",
    ]
    list_filter = [MintedTokenStateFilter, "purpose", "dry_run"]
    search_fields = ["repository", "=grant__id", "^digest"]
    date_hierarchy = "minted_at"
    fields = readonly_fields = [
        "token_name",
        "grant_link",
        "purpose",
        "repository",
        "permissions_column",
        "dry_run",
        "minted_at",
        "expires_at",
        "state_column",
        "revoked_at",
        "erased_at",
    ]

    @admin.display(description="token", ordering="digest")
    def token_name(self, record):
        return record.digest[:12]

    @admin.display(description="grant", ordering="grant")
    def grant_link(self, record):
        return f"#{record.grant_id}"

    @admin.display(description="permissions")
    def permissions_column(self, record):
        return minted_token_permissions(record)

    @admin.display(description="state")
    def state_column(self, record):
        return minted_token_state(record)


# django-celery-beat's admin, with Airlock's entries read-only and writes audited.
from grants import admin_beat  # noqa: E402, F401
