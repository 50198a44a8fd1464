"""manage.py load_demo: local demo accounts for `make run` (development only; why linking them
to the local GitHub is safe: docs/operations.md "The demo accounts")."""

import ipaddress
import json
from urllib.parse import urlsplit

from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from requests_app.signin import GITHUB

DEMO_PASSWORD = "airlock-demo"
DEMO_USERS = [
    ("dave", "requester: files requests at /requests/new/", False),
    ("alice", "approver (prod-approvers): decides at /admin/", False),
    ("bob", "approver (prod-approvers): decides at /admin/", False),
    ("carol", "approver (prod-approvers): decides at /admin/", False),
    ("admin", "platform admin (superuser): policies, groups, audit log", True),
]
# What `make github` serves.
LOCAL_GITHUB_SEED = settings.BASE_DIR / "demo" / "local-github.json"


class Command(BaseCommand):
    help = "Create the local demo accounts (refused unless DEBUG is on)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("load_demo creates accounts with a known password; DEBUG only.")
        User = get_user_model()
        self.stdout.write(f"Demo accounts (password for all: {DEMO_PASSWORD}):")
        users = []
        for username, role, superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = superuser
                user.save()
            users.append(user)
            self.stdout.write(f"  {username:<6} {role}")
        if settings.AIRLOCK_GITHUB_SSO and _is_on_this_machine(settings.GITHUB_URL):
            linked = _link_to_local_github(users)
            self.stdout.write(
                f"Sign in with GitHub ({settings.GITHUB_URL}) as: {', '.join(linked)}"
            )


def _is_on_this_machine(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _link_to_local_github(users) -> list[str]:
    """Links each demo account to the local GitHub's user of its login (the seed's id is
    the uid GitHub sign-in finds it by). An account or id linked already is left as it is.
    Returns the logins that can sign in with GitHub."""
    ids = {
        seeded["login"].lower(): seeded["id"]
        for seeded in json.loads(LOCAL_GITHUB_SEED.read_text())["users"]
        if "id" in seeded
    }
    linked = []
    for user in users:
        github_id = ids.get(user.username.lower())
        if github_id is None:
            continue
        account = SocialAccount.objects.filter(provider=GITHUB, uid=str(github_id)).first()
        has_one = SocialAccount.objects.filter(user=user, provider=GITHUB).exists()
        if account is None and not has_one:
            account = SocialAccount.objects.create(
                user=user, provider=GITHUB, uid=str(github_id),
                extra_data={"login": user.username, "id": github_id},
            )
        if account is not None and account.user_id == user.pk:
            linked.append(user.username)
    return linked
