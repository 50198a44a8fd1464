"""django-celery-beat's admin, with Airlock's rules: its own entries (grants/schedule.py) are
read-only here, every other write is audited (docs/admin.md "The beat schedule")."""

from celery.schedules import ParseException
from django import forms
from django.contrib import admin, messages
from django.db import router, transaction
from django.db.models import Q
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from audit.admin_changes import AuditedAdmin, field_values
from grants.schedule import beat_schedule, is_airlock_entry
from portal.admin_base import DateHierarchyAdmin

DECLARED_IN_CODE = (
    "Declared in code (grants/schedule.py) and installed by install_beat_schedule at every "
    "migrate and when beat starts; it cannot be changed, disabled or deleted here."
)


class PeriodicTaskForm(beat_admin.PeriodicTaskForm):
    def clean_name(self):
        name = self.cleaned_data["name"]
        if is_airlock_entry(name) and name != self.instance.name:
            raise forms.ValidationError(
                f"{name!r} is one of Airlock's beat entries, declared in code; "
                "run `manage.py install_beat_schedule` to put it back."
            )
        return name


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(AuditedAdmin, DateHierarchyAdmin, beat_admin.PeriodicTaskAdmin):
    form = PeriodicTaskForm
    list_display = ("name", "declared_in_code", *beat_admin.PeriodicTaskAdmin.list_display[1:])

    def audit_snapshot(self, obj) -> dict:
        # What beat's runs change by themselves is not an admin's write.
        return field_values(obj, exclude=("last_run_at", "total_run_count", "date_changed"))

    @admin.display(description="declared in code", boolean=True)
    def declared_in_code(self, obj):
        return is_airlock_entry(obj.name)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and is_airlock_entry(obj.name):
            return [("Declared in code", {"fields": (), "description": DECLARED_IN_CODE})] + [
                *fieldsets
            ]
        return fieldsets

    def has_change_permission(self, request, obj=None):
        if obj is not None and is_airlock_entry(obj.name):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and is_airlock_entry(obj.name):
            return False
        return super().has_delete_permission(request, obj)

    # The actions act on querysets: Airlock's entries are left out, and said so.

    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request, queryset):
        self._switch(request, queryset, lambda task: True, "enabled")

    @admin.action(description="Disable selected tasks")
    def disable_tasks(self, request, queryset):
        self._switch(request, queryset, lambda task: False, "disabled")

    @admin.action(description="Toggle activity of selected tasks")
    def toggle_tasks(self, request, queryset):
        self._switch(request, queryset, lambda task: not task.enabled, "toggled")

    def _switch(self, request, queryset, enabled, done: str) -> None:
        tasks = self._not_airlock(request, queryset)
        with transaction.atomic(using=router.db_for_write(self.model)):
            for task in tasks:
                before = self.audit_snapshot(task)
                task.enabled = enabled(task)
                if not task.enabled:
                    task.last_run_at = None  # as django-celery-beat's own action does
                # save() rather than update(): it tells beat the schedule changed.
                task.save(update_fields=["enabled", "last_run_at"])
                self.audit(request, task, "changed", before=before, after=self.audit_snapshot(task))
            if tasks:
                self.message_user(request, f"{len(tasks)} task(s) {done}.", messages.SUCCESS)

    @admin.action(description="Run selected tasks")
    def run_tasks(self, request, queryset):
        # The intent is recorded and committed before the tasks are sent.
        with transaction.atomic(using=router.db_for_write(self.model)):
            for task in queryset:
                self.audit(request, task, "run_requested", task=task.task)
        return super().run_tasks(request, queryset)

    def _not_airlock(self, request, queryset) -> list[PeriodicTask]:
        tasks = list(queryset)
        skipped = [task.name for task in tasks if is_airlock_entry(task.name)]
        if skipped:
            self.message_user(
                request,
                f"Left alone: {', '.join(skipped)}. Airlock's beat entries are declared in "
                "code (grants/schedule.py) and cannot be enabled or disabled here.",
                messages.WARNING,
            )
        return [task for task in tasks if not is_airlock_entry(task.name)]


class ScheduleAdmin(AuditedAdmin):
    """A schedule Airlock's entries run on is theirs too: editing it would change when the
    sweep runs, and deleting it would delete the sweep."""

    def audit_snapshot(self, obj) -> dict:
        return field_values(obj)

    def _runs_airlock_entry(self, obj) -> bool:
        names = Q(name__in=list(beat_schedule()))
        return obj.periodictask_set.filter(names).exists()

    def has_change_permission(self, request, obj=None):
        if obj is not None and self._runs_airlock_entry(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and self._runs_airlock_entry(obj):
            return False
        return super().has_delete_permission(request, obj)


class CrontabScheduleAdmin(ScheduleAdmin, beat_admin.CrontabScheduleAdmin):
    """django_celery_beat's page describes the crontab in words, and celery raises on a
    field it cannot parse (a minute of "-1"): the form shown back with its errors was a 500.
    The description says so instead; the fields' own validators give the form errors."""

    fields = ("described", *beat_admin.CrontabScheduleAdmin.fields[1:])
    readonly_fields = ("described",)
    list_display = ("__str__", "described")

    @admin.display(description="human readable")
    def described(self, obj):
        try:
            return obj.human_readable
        except (ParseException, ValueError):
            return "(not a crontab celery can read)"


admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, CrontabScheduleAdmin)

for model, model_admin in (
    (IntervalSchedule, beat_admin.IntervalScheduleAdmin),
    (SolarSchedule, beat_admin.SolarScheduleAdmin),
    (ClockedSchedule, beat_admin.ClockedScheduleAdmin),
):
    admin.site.unregister(model)
    admin.site.register(
        model, type(model_admin.__name__, (ScheduleAdmin, model_admin), {"__module__": __name__})
    )
