import logging

from django.apps import AppConfig
from django.db import DatabaseError
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


class GrantsConfig(AppConfig):
    name = "grants"
    verbose_name = "Grants"

    def ready(self):
        from celery.signals import beat_init

        from grants import receivers
        from requests_app import notifications, signals

        post_migrate.connect(_install_after_migrate, sender=self)
        beat_init.connect(_install_on_beat_start, weak=False)
        signals.access_request_approved.connect(
            receivers.start_grant_engine, dispatch_uid="grants.start_grant_engine"
        )
        signals.access_request_status_changed.connect(
            receivers.follow_deployment_gates, dispatch_uid="grants.follow_deployment_gates"
        )
        notifications.read_grants_with(receivers.grant_for_message)


def _install_after_migrate(using="default", **kwargs):
    from grants.schedule import install_beat_schedule

    try:
        install_beat_schedule()
    except DatabaseError:
        # Migrated only part of the way (django_celery_beat not yet): the next migrate,
        # or beat's start, installs it.
        logger.warning("Beat schedule not installed yet: its tables are missing")


def _install_on_beat_start(**kwargs):
    from grants.schedule import install_beat_schedule

    install_beat_schedule()
