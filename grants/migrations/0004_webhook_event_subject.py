"""DeploymentGate.subject: what the webhook event is about, unique, so that a replay under
a new delivery id is not acted on again (grants.gates).

Gates already received get their subject from their own fields, spelled as
grants.gates.GateRequest.subject spelled it when this was written. Where replays were
acted on before (several gates, one event), the first keeps the subject and each later one
is marked as the replay it was, so that nothing is lost and the constraint holds.
"""

from django.db import migrations, models

MAX_LENGTH = 500


def _subject(gate) -> str:
    return (
        f"deployment_protection_rule.requested installation={gate.installation_id} "
        f"run={gate.run_id} deployment={gate.deployment_id or '-'} "
        f"environment={gate.environment.casefold()}"
    )


def backfill_subjects(apps, schema_editor):
    DeploymentGate = apps.get_model("grants", "DeploymentGate")
    seen = set()
    for gate in DeploymentGate.objects.order_by("pk").only(
        "pk", "delivery_id", "installation_id", "run_id", "deployment_id", "environment"
    ):
        subject = _subject(gate)
        if subject in seen:
            subject = f"replayed as delivery {gate.delivery_id}: {subject}"[:MAX_LENGTH]
        seen.add(subject)
        DeploymentGate.objects.filter(pk=gate.pk).update(subject=subject)


class Migration(migrations.Migration):

    dependencies = [
        ("grants", "0003_canonical_targets"),
    ]

    operations = [
        migrations.AddField(
            model_name="deploymentgate",
            name="subject",
            field=models.CharField(editable=False, max_length=MAX_LENGTH, null=True),
        ),
        migrations.RunPython(backfill_subjects, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="deploymentgate",
            name="subject",
            field=models.CharField(editable=False, max_length=MAX_LENGTH, unique=True),
        ),
    ]
