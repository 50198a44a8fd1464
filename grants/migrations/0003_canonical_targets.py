"""The grant engine's targets in canonical form (core.names): environments and deployment
gates by repository and environment lower-cased, organization secrets by org lower-cased
and name upper-cased. The unique constraints are then on the columns themselves, not on
LOWER() of them.

A row whose names are outside GitHub's rules is left as it was, and so is one whose
canonical names another row already holds: its grants still reconcile (they point at it),
but no lookup by canonical names finds it, so nothing new is granted through it."""

from django.db import migrations, models


def _canonicalize(model, fields: tuple[str, ...], canonical, *, unique: bool) -> None:
    from core.names import NameRefused

    extra = ("dry_run",) if unique else ()
    for row in model.objects.only("pk", *fields, *extra).iterator(chunk_size=2000):
        current = {name: getattr(row, name) for name in fields}
        try:
            wanted = canonical(**current)
        except NameRefused:
            continue
        if wanted == current:
            continue
        others = model.objects.exclude(pk=row.pk)
        if unique and others.filter(dry_run=row.dry_run, **wanted).exists():
            continue
        model.objects.filter(pk=row.pk).update(**wanted)


def canonicalize(apps, schema_editor):
    from core.names import canonical_owner, canonical_secret_name, canonical_target

    def target(*, repository, environment):
        repository, environment = canonical_target(repository=repository, environment=environment)
        return {"repository": repository, "environment": environment}

    def org_secret(*, org, name):
        return {"org": canonical_owner(org, field="org"), "name": canonical_secret_name(name)}

    Target = apps.get_model("grants", "Target")
    OrgSecretTarget = apps.get_model("grants", "OrgSecretTarget")
    DeploymentGate = apps.get_model("grants", "DeploymentGate")
    _canonicalize(Target, ("repository", "environment"), target, unique=True)
    _canonicalize(OrgSecretTarget, ("org", "name"), org_secret, unique=True)
    _canonicalize(DeploymentGate, ("repository", "environment"), target, unique=False)


class Migration(migrations.Migration):

    dependencies = [
        ("grants", "0002_deploymentgate"),
    ]

    operations = [
        migrations.RunPython(canonicalize, migrations.RunPython.noop, elidable=True),
        migrations.RemoveConstraint(
            model_name="orgsecrettarget",
            name="unique_org_secret_target",
        ),
        migrations.RemoveConstraint(
            model_name="target",
            name="unique_target",
        ),
        migrations.AddConstraint(
            model_name="orgsecrettarget",
            constraint=models.UniqueConstraint(
                fields=("org", "name", "dry_run"), name="unique_org_secret_target"
            ),
        ),
        migrations.AddConstraint(
            model_name="target",
            constraint=models.UniqueConstraint(
                fields=("repository", "environment", "dry_run"), name="unique_target"
            ),
        ),
    ]
