"""Targets in canonical form (core.names): every stored request's repository and
environment, and every policy pattern, lower-cased as core.names computes it, so that the
check, the deployment gates and the grant engine can compare them by plain equality. The
check's partial index is then on the columns themselves, not on UPPER() of them.

A name outside GitHub's rules is left as it was: no lookup by a canonical name finds it,
and the grant engine refuses to grant it (grants.services.grant_create_for_request)."""

from django.db import migrations, models


def canonicalize(apps, schema_editor):
    from core.names import NameRefused, ascii_lower, canonical_target

    AccessRequest = apps.get_model("requests_app", "AccessRequest")
    rows = AccessRequest.objects.only("pk", "repository", "environment")
    for row in rows.iterator(chunk_size=2000):
        try:
            repository, environment = canonical_target(
                repository=row.repository, environment=row.environment
            )
        except NameRefused:
            continue
        if (repository, environment) != (row.repository, row.environment):
            AccessRequest.objects.filter(pk=row.pk).update(
                repository=repository, environment=environment
            )

    AccessPolicy = apps.get_model("requests_app", "AccessPolicy")
    for policy in AccessPolicy.objects.all():
        repositories = [ascii_lower(str(p).strip()) for p in policy.repository_patterns]
        environments = [ascii_lower(str(p).strip()) for p in policy.environment_patterns]
        if (repositories, environments) != (policy.repository_patterns, policy.environment_patterns):
            AccessPolicy.objects.filter(pk=policy.pk).update(
                repository_patterns=repositories, environment_patterns=environments
            )


class Migration(migrations.Migration):

    dependencies = [
        ("requests_app", "0007_approver_identity"),
    ]

    operations = [
        migrations.RunPython(canonicalize, migrations.RunPython.noop, elidable=True),
        migrations.RemoveIndex(
            model_name="accessrequest",
            name="request_in_force_target",
        ),
        migrations.AddIndex(
            model_name="accessrequest",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["repository", "environment"],
                name="request_in_force_target",
            ),
        ),
    ]
