"""Usernames are unique without regard to case, in the database.

Usernames are GitHub logins, which ignore case, and approver groups match them without
regard to case, so `Bob` beside `bob` would be one approver counted twice. Django's user
model takes no constraint from us: this adds a unique index on LOWER(username) to its table.
Logins are ASCII, so LOWER means the same on SQLite and PostgreSQL.

A database that already holds case variants is not fixed silently (which account is the
person's is a decision for a platform admin): the migration stops and names them.
"""

from django.conf import settings
from django.db import migrations
from django.db.models import Count
from django.db.models.functions import Lower

INDEX_NAME = "airlock_username_casefold_uniq"


def _user_model(apps):
    return apps.get_model(settings.AUTH_USER_MODEL)


def refuse_case_variants(apps, schema_editor):
    User = _user_model(apps)
    folded = (
        User.objects.annotate(folded=Lower("username"))
        .values("folded")
        .annotate(count=Count("pk"))
        .filter(count__gt=1)
        .values_list("folded", flat=True)
    )
    clashes = [
        ", ".join(
            repr(name)
            for name in sorted(
                User.objects.annotate(folded=Lower("username"))
                .filter(folded=name)
                .values_list("username", flat=True)
            )
        )
        for name in sorted(folded)
    ]
    if clashes:
        raise RuntimeError(
            "Usernames must be unique without regard to case, but these differ only in "
            f"case: {'; '.join(clashes)}. Rename or remove all but one of each in the user "
            "admin (usernames are GitHub logins), then migrate again."
        )


def create_index_sql(schema_editor, model) -> str:
    quote = schema_editor.quote_name
    column = model._meta.get_field("username").column
    return (
        f"CREATE UNIQUE INDEX {quote(INDEX_NAME)} ON {quote(model._meta.db_table)} "
        f"(LOWER({quote(column)}))"
    )


def drop_index_sql(quote_name) -> str:
    return f"DROP INDEX {quote_name(INDEX_NAME)}"


def create_index(apps, schema_editor):
    refuse_case_variants(apps, schema_editor)
    schema_editor.execute(create_index_sql(schema_editor, _user_model(apps)))


def drop_index(apps, schema_editor):
    schema_editor.execute(drop_index_sql(schema_editor.quote_name))


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0005_check_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        # After every change Django makes to its user table: on SQLite an AlterField there
        # rebuilds the table and would drop this index.
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
