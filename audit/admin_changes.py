"""Admin writes on the record: AuditedAdmin writes one audit event, of one shape, for every
add, change and delete made in the admin, in the admin's own transaction."""

from functools import wraps

from django.db import router, transaction

import audit
from audit.actions import admin_action
from audit.services import plain_json


class AuditedAdmin:
    """Mix in before admin.ModelAdmin. Django runs the change and delete views in a
    transaction already; the bulk delete action is wrapped here, so its events and its
    deletions commit together too."""

    def audit_snapshot(self, obj) -> dict | None:
        """What this admin tracks of obj, as plain values read from the database (None:
        only Django's change message)."""
        return None

    # Values compared to say "changed" but never written to the log.
    audit_secret_fields: tuple[str, ...] = ()

    def audit_context(self, obj) -> dict:
        """More detail to record with every event of obj."""
        return {}

    def audit(self, request, obj, verb: str, *, before=None, after=None, **detail) -> None:
        entry = {"name": str(obj), **detail, **self.audit_context(obj)}
        if before is not None and after is not None:
            changed = sorted(key for key in after if before.get(key) != after.get(key))
            entry["changed"] = changed
            entry["before"] = self._shown({k: before.get(k) for k in changed})
            entry["after"] = self._shown({k: after[k] for k in changed})
        elif before is not None:
            entry["before"] = self._shown(before)
        elif after is not None:
            entry["after"] = self._shown(after)
        audit.log_event(
            action=admin_action(self.opts.model_name, verb),
            actor=request.user,
            target=obj,
            detail=entry,
        )

    def _shown(self, values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in self.audit_secret_fields}

    # Before the change: read from the database, as the form has already been applied to
    # the object Django passes in.

    def audit_before(self, request, obj) -> None:
        if obj.pk is not None:
            fresh = type(obj)._default_manager.filter(pk=obj.pk).first()
            if fresh is not None:
                request._airlock_audit_before = self.audit_snapshot(fresh)

    def save_model(self, request, obj, form, change):
        if change:
            self.audit_before(request, obj)
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        self.audit(request, obj, "created", changes=message, after=self.audit_snapshot(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        before = getattr(request, "_airlock_audit_before", None)
        after = self.audit_snapshot(obj) if before is not None else None
        self.audit(request, obj, "changed", changes=message, before=before, after=after)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self.audit(request, obj, "deleted", changes=[], before=self.audit_snapshot(obj))
        return super().log_deletions(request, queryset)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            func, name, description = actions["delete_selected"]
            actions["delete_selected"] = (self.atomic(func), name, description)
        return actions

    def atomic(self, action):
        """An admin action run in one transaction with the audit events it writes."""

        @wraps(action)
        def run(modeladmin, request, queryset):
            with transaction.atomic(using=router.db_for_write(self.model)):
                return action(modeladmin, request, queryset)

        return run


def field_values(obj, *, exclude=()) -> dict:
    """obj's concrete fields (foreign keys as the related object's text) and many-to-many
    fields (sorted texts), as plain JSON values."""
    values = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in exclude:
            continue
        if field.is_relation:
            related = getattr(obj, field.name)
            values[field.name] = None if related is None else str(related)
        else:
            values[field.name] = _plain_value(field, obj)
    for field in obj._meta.many_to_many:
        if field.name not in exclude:
            values[field.name] = sorted(str(o) for o in getattr(obj, field.name).all())
    return plain_json(values)


def _plain_value(field, obj):
    # A third-party field may hold what JSON cannot (django_celery_beat's timezone is a
    # ZoneInfo): then the field's own text, as Django's serializers write it.
    try:
        return plain_json(field.value_from_object(obj))
    except (TypeError, ValueError):
        return field.value_to_string(obj)
