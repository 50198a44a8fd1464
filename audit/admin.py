"""The audit log in the admin: read-only for everyone, filterable, exportable as JSON Lines,
with the log's head shown to keep outside the database; and the forwarding sinks' state,
read-only too."""

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from audit.actions import AuditAction
from audit.export import (
    JSON_LINES_CONTENT_TYPE,
    KeptHead,
    events_for_export,
    json_lines,
    log_head,
)
from audit.forwarding import configured_sink_names
from audit.models import AuditEvent, AuditSink
from audit.selectors import SinkBacklog, sink_backlog
from audit.services import audit_pending_seal, log_event
from portal.admin_base import BoundedCountAdmin, DateHierarchyAdmin, IndexedValuesFilter


class ActionFilter(admin.SimpleListFilter):
    """By action, its choices the actions Airlock writes (audit.actions), not a DISTINCT
    over the log."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return sorted((action.value, action.value) for action in AuditAction)

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(action=self.value())


class TargetTypeFilter(IndexedValuesFilter):
    # Target types are model labels and a few names of Airlock's own ("target", "account"):
    # read from the (target_type, target_id) index, one probe per type.
    title = "target type"
    field_name = "target_type"


@admin.register(AuditEvent)
class AuditEventAdmin(BoundedCountAdmin, DateHierarchyAdmin):
    """A page of the log costs what it shows, however long the log: newest first down the
    seq index, a count that stops a few pages ahead (counting a long log on every load is
    slow and tells an auditor little), filters whose choices need no DISTINCT over the log,
    and a date filter instead of the date hierarchy, whose links are a DISTINCT
    DATE_TRUNC over every event. Links with created_at__year= and the like still filter."""

    list_display = ("seq", "created_at", "actor_label", "action", "target_repr", "reason")
    list_filter = (ActionFilter, TargetTypeFilter, ("created_at", admin.DateFieldListFilter))
    ordering = ("-seq",)  # newest first on screen; exports are always oldest first
    search_fields = ("actor_label", "target_repr", "reason", "=target_id")
    actions = ["export_selected"]
    fieldsets = (
        (None, {"fields": ("seq", "created_at", "action", "actor_label", "actor_id")}),
        ("Target", {"fields": ("target_type", "target_id", "target_repr")}),
        ("Why and what", {"fields": ("reason", "pretty_detail")}),
        ("Hash chain", {"fields": ("id", "prev_hash", "hash")}),
    )
    readonly_fields = (
        "seq",
        "created_at",
        "action",
        "actor_label",
        "actor_id",
        "target_type",
        "target_id",
        "target_repr",
        "reason",
        "pretty_detail",
        "id",
        "prev_hash",
        "hash",
    )

    # Append-only: nobody, superusers included, adds, changes or deletes events here.
    # Viewing needs audit.view_auditevent (Django's default has_view_permission).
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="detail")
    def pretty_detail(self, event):
        text = json.dumps(event.detail, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    def changelist_view(self, request, extra_context=None):
        extra_context = {"log_head": log_head(), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="audit_auditevent_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request):
        """The changelist's "Export JSON Lines" button: every event the current filters,
        search and date drill-down show, not only the page on screen."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter in the export link.")
        filters = {key: request.GET.getlist(key) for key in request.GET}
        return self._export(request, changelist.get_queryset(request), {"filters": filters})

    @admin.action(description="Export selected events as JSON Lines", permissions=["view"])
    def export_selected(self, request, queryset):
        return self._export(request, queryset, {"selected": queryset.count()})

    def _export(self, request, queryset, what: dict):
        # Who took a copy of the audit log, and which part, is itself on the record. The
        # copy stops just before that record: it holds the log as it was when asked for.
        # Events committed before the export was asked for, still waiting for their seal,
        # are sealed first, so that the copy holds them.
        audit_pending_seal()
        exported = log_event(
            action=AuditAction.AUDIT_EXPORTED, actor=request.user, detail=what, sealed=True
        )
        events = events_for_export(queryset.filter(seq__lt=exported.seq))
        response = StreamingHttpResponse(json_lines(events), content_type=JSON_LINES_CONTENT_TYPE)
        filename = f"audit-log-{timezone.now():%Y%m%dT%H%M%SZ}.jsonl"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        # The log's head once the export is recorded, for whoever keeps heads elsewhere.
        response["X-Audit-Head"] = str(KeptHead.of(exported))
        return response


@admin.register(AuditSink)
class AuditSinkAdmin(admin.ModelAdmin):
    """Where the audit log is forwarded and how far each sink got; the dashboard's "Audit
    forwarding" card says the same. Rows are made and moved by audit.forwarding alone (a
    cursor is set by hand with `manage.py forward_audit_log --sink NAME --from-seq N`,
    audited), so nothing is added, changed or deleted here."""

    list_display = (
        "name",
        "target",
        "configured",
        "backlog_events",
        "backlog_age",
        "cursor",
        "last_delivered_at",
        "last_error_text",
        "last_error_at",
        "backing_off_until",
        "failures",
        "alerted_at",
    )
    readonly_fields = (*list_display, "last_error", "created_at")
    fields = (
        ("name", "target", "configured"),
        ("cursor", "backlog_events", "backlog_age"),
        "last_delivered_at",
        ("failures", "backing_off_until"),
        ("last_error_at", "last_error"),
        "alerted_at",
        "created_at",
    )
    list_display_links = ("name",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _backlog(self, sink: AuditSink) -> SinkBacklog:
        # Two indexed reads per row, once per row however many columns show it.
        if not hasattr(sink, "_admin_backlog"):
            sink._admin_backlog = sink_backlog(sink)
        return sink._admin_backlog

    @admin.display(description="configured", boolean=True)
    def configured(self, sink):
        # A row stays when its setting is removed: the cursor is kept for a return.
        # From the settings alone: building the sinks (a session, a TLS context, a name
        # lookup) for each row of the list would cost more than the list.
        return sink.name in configured_sink_names()

    @admin.display(description="backlog (events)")
    def backlog_events(self, sink):
        return self._backlog(sink).events

    @admin.display(description="oldest unaccepted")
    def backlog_age(self, sink):
        oldest_at = self._backlog(sink).oldest_at
        return f"{timesince(oldest_at)} ago" if oldest_at else "caught up"

    @admin.display(description="last error")
    def last_error_text(self, sink):
        # The receiver's words: shown as text (the admin escapes it), cut for the list.
        text = sink.last_error
        return text if len(text) <= 120 else f"{text[:119]}…"

    @admin.display(description="backing off until")
    def backing_off_until(self, sink):
        return sink.next_attempt_at if sink.failures else None
