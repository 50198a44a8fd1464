"""Usernames are ASCII, as GitHub logins are.

Lookups that match a login to a username without regard to case (approver groups, the
grant check, deployment gates) fold case in the database, and PostgreSQL's UPPER() folds
"ı" to "I" and "ſ" to "S": a local account "ıvan" would be taken for the GitHub login
"ivan". The user admin refuses such names from now on (requests_app.forms); a database that
already holds one is not fixed silently: the migration stops and names them.
"""

from django.conf import settings
from django.db import migrations


def refuse_usernames_outside_ascii(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    outside = sorted(
        name for name in User.objects.values_list("username", flat=True) if not name.isascii()
    )
    if outside:
        raise RuntimeError(
            "Usernames must be ASCII, as GitHub logins are, but these are not: "
            f"{', '.join(repr(name) for name in outside)}. Rename or remove them in the user "
            "admin, then migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0008_canonical_targets"),
    ]

    operations = [
        migrations.RunPython(refuse_usernames_outside_ascii, migrations.RunPython.noop),
    ]
