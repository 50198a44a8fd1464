"""manage.py install_beat_schedule: put the beat schedule into the database (idempotent)."""

from django.core.management.base import BaseCommand

from grants.schedule import install_beat_schedule


class Command(BaseCommand):
    help = "Install or update Airlock's periodic tasks (sweep, drift check) for celery beat."

    def handle(self, *args, **options):
        changes = install_beat_schedule()
        for change in changes:
            self.stdout.write(change)
        if not changes:
            self.stdout.write("Beat schedule already up to date.")
