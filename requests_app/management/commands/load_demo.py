"""manage.py load_demo: local demo accounts for `make run` (development only)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEMO_PASSWORD = "airlock-demo"
DEMO_USERS = [
    ("dave", "requester: files requests at /requests/new/", False),
    ("alice", "approver (prod-approvers): decides at /admin/", False),
    ("bob", "approver (prod-approvers): decides at /admin/", False),
    ("carol", "approver (prod-approvers): decides at /admin/", False),
    ("admin", "platform admin (superuser): policies, groups, audit log", True),
]


class Command(BaseCommand):
    help = "Create the local demo accounts (refused unless DEBUG is on)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("load_demo creates accounts with a known password; DEBUG only.")
        User = get_user_model()
        self.stdout.write(f"Demo accounts (password for all: {DEMO_PASSWORD}):")
        for username, role, superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = superuser
                user.save()
            self.stdout.write(f"  {username:<6} {role}")
