"""The admin site, which platform admins (staff) and approvers share (who reaches what:
docs/admin.md "Who enters the admin")."""

from datetime import timedelta
from functools import wraps

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

# The admin pages an approver who is not staff may open (each ModelAdmin then limits them
# to the requests routed to that approver).
APPROVER_MODELS = frozenset({"requests_app.accessrequest", "requests_app.approval"})


def _for_approver(model) -> bool:
    return model._meta.label_lower in APPROVER_MODELS


class AirlockAdminSite(admin.AdminSite):
    site_header = "Airlock administration"
    site_title = "Airlock"
    index_title = "Access requests, policies and audit"

    @property
    def login_form(self):
        # Django's admin login form admits staff only; approvers sign in here too.
        from requests_app.forms import AdminLoginForm

        return AdminLoginForm

    def has_permission(self, request):
        from requests_app.selectors import user_is_approver

        user = request.user
        return user.is_active and (user.is_staff or user_is_approver(user=user))

    def admin_view(self, view, cacheable=False):
        model_admin = getattr(view, "__self__", None)
        if isinstance(model_admin, admin.ModelAdmin) and not _for_approver(model_admin.model):

            @wraps(view)
            def staff_only(request, *args, **kwargs):
                if not request.user.is_staff:
                    raise PermissionDenied
                return view(request, *args, **kwargs)

            return super().admin_view(staff_only, cacheable)
        return super().admin_view(view, cacheable)

    def _build_app_dict(self, request, label=None):
        # The index and app pages list what has_module_permission allows; for someone who is
        # not staff, only what admin_view lets them open.
        app_dict = super()._build_app_dict(request, label)
        if request.user.is_staff or not app_dict:
            return app_dict
        return {
            app_label: {**app, "models": models}
            for app_label, app in app_dict.items()
            if (models := [m for m in app["models"] if _for_approver(m["model"])])
        }

    def index(self, request, extra_context=None):
        extra_context = {"airlock_dashboard": dashboard(request), **(extra_context or {})}
        return super().index(request, extra_context)


# Rows shown per dashboard section; the section's link lists them all.
DASHBOARD_ROWS = 8
EXPIRING_WITHIN = timedelta(hours=1)
FAILED_WITHIN = timedelta(days=7)


def dashboard(request) -> list[dict]:
    """The sections on the admin's home page, for this user: approvers see only what is
    routed to them; overdue revocations are for those who may see grants."""
    from grants.selectors import (
        beat_entries_out_of_place,
        grants_revocation_overdue,
        user_is_grants_admin,
    )
    from requests_app.selectors import admin_dashboard_requests

    user = request.user
    now = timezone.now()
    requests = admin_dashboard_requests(
        user=user, now=now, expiring_within=EXPIRING_WITHIN, failed_since=now - FAILED_WITHIN
    )
    changelist = reverse("admin:requests_app_accessrequest_changelist")

    def section(key, title, query, *, kind="requests", style="", empty=""):
        rows = requests[key]
        return {
            "key": key,
            "title": title,
            "count": rows.count(),
            "rows": list(rows[:DASHBOARD_ROWS]),
            "link": f"{changelist}?{query}",
            "kind": kind,
            "style": style,
            "empty": empty,
        }

    sections = [
        section(
            "awaiting", "Requests awaiting my decision", "awaiting=me",
            empty="Nothing waits for you.",
        ),
        section(
            "break_glass", "Break-glass awaiting review",
            "awaiting=all&lifecycle=break_glass_review", style="break-glass",
            empty="No break-glass access left to review.",
        ),
        section(
            "expiring", "Expiring within the hour", "awaiting=all&lifecycle=expiring",
            empty="No access ends within the hour.",
        ),
        section(
            "in_force", "Active grants", "awaiting=all&lifecycle=in_force",
            empty="Nobody holds access right now.",
        ),
        section(
            "failed", "Failed grants (last 7 days)", "awaiting=all&lifecycle=failed",
            style="alert", empty="GitHub refused nothing lately.",
        ),
    ]
    if user_is_grants_admin(user=user):
        overdue = grants_revocation_overdue().select_related("access_request", "target")
        sections.insert(
            1,
            {
                "key": "overdue",
                "title": "Overdue revocations",
                "count": overdue.count(),
                "rows": list(overdue[:DASHBOARD_ROWS]),
                "link": reverse("admin:grants_grant_changelist") + "?overdue=yes",
                "kind": "grants",
                "style": "alert",
                "empty": "Every revocation is done on time.",
            },
        )
    if user.is_active and user.is_staff and user.has_perm("django_celery_beat.view_periodictask"):
        out_of_place = beat_entries_out_of_place()
        rows = [{"name": name, "problem": "missing"} for name in out_of_place["missing"]] + [
            {"name": name, "problem": "disabled"} for name in out_of_place["disabled"]
        ]
        sections.insert(
            1,
            {
                "key": "beat",
                "title": "Airlock's beat entries",
                "count": len(rows),
                "rows": rows,
                "link": reverse("admin:django_celery_beat_periodictask_changelist")
                + "?q=airlock",
                "kind": "beat",
                "style": "alert",
                "empty": "Every Airlock beat entry is installed and enabled.",
            },
        )
    if user.is_active and user.is_staff:
        sections.append(github_budget_section(now=now))
    if user.is_active and user.is_staff and user.has_perm("audit.view_auditsink"):
        sections.append(audit_forwarding_section(now=now))
    return sections


def github_budget_section(*, now) -> dict:
    """GitHub's hourly quota as each client last saw it, and what waits for its reset
    (integrations/github/budget.py); alert-styled while the engine's work is held back.
    Only the engine's quota (GITHUB_TOKEN or the App installation it uses) holds work back:
    the others are shown for what they are."""
    from integrations.github import ENGINE, github_budgets

    rows = [
        {
            "client": budget.client,
            "remaining": budget.remaining,
            "limit": budget.limit,
            "percent_left": budget.percent_left,
            "reset_at": budget.reset_at,
            "reset": now >= budget.reset_at,
            "seen_at": budget.seen_at,
            "band": budget.band(now).name.lower(),
            "waiting": budget.waiting(now) if budget.client == ENGINE else "",
        }
        for budget in github_budgets()
    ]
    held_back = any(row["waiting"] for row in rows)
    return {
        "key": "github_budget",
        "title": "GitHub's budget",
        "count": len(rows),
        "rows": rows,
        "link": reverse("admin:grants_grant_changelist"),
        "kind": "github_budget",
        "style": "alert" if held_back else "",
        "empty": "No answer from GitHub yet: nothing waits for its rate limit.",
    }


def audit_forwarding_section(*, now) -> dict:
    """Each configured sink: where it sends, how far behind it is, its last delivery and
    error, and how long it backs off; alert-styled while one is failing or stale."""
    from audit.selectors import sink_backlog_is_stale, sink_statuses

    sinks = sink_statuses()
    troubled = any(
        sink.row.failures or sink_backlog_is_stale(sink.backlog, now=now) for sink in sinks
    )
    return {
        "key": "audit_forwarding",
        "title": "Audit forwarding",
        "count": len(sinks),
        "rows": sinks,
        "link": reverse("admin:audit_auditsink_changelist"),
        "kind": "sinks",
        "style": "alert" if troubled else "",
        "empty": "No sink configured: the audit log is not forwarded (README \"Audit "
        "forwarding\").",
    }
