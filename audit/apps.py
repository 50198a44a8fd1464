from django.apps import AppConfig
from django.apps import apps as global_apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from audit import checks  # noqa: F401  (registers the deploy check)
        from audit.keys import audit_keyring

        # A bad AIRLOCK_AUDIT_KEYS stops every process as it starts, not its first event.
        audit_keyring()
        post_migrate.connect(_seal_after_migrate, sender=self)


def _seal_after_migrate(apps=global_apps, **kwargs):
    # apps is the migrated state (flush sends the signal without it: then all is there).
    try:
        apps.get_model("audit", "AuditEvent")._meta.get_field("key_id")
    except (LookupError, FieldDoesNotExist):
        return  # migrated only part of the way: the next migrate seals
    from audit.services import unkeyed_events_seal

    unkeyed_events_seal()
