"""Migrations that carry data: gates received before DeploymentGate.subject existed."""

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from grants.gates import gate_request_from_payload


def migrate(targets):
    """Migrate to targets (None: every app's latest), returning the models as they were."""
    executor = MigrationExecutor(connection)
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def before_subjects():
    """The models as they were before 0003 and 0004; every migration is applied again
    afterwards."""
    try:
        yield migrate([("grants", "0002_deploymentgate")])
    finally:
        migrate(None)


@pytest.mark.django_db(transaction=True)
def test_gates_received_before_get_their_subject_and_past_replays_stay_apart(before_subjects):
    Gate = before_subjects.get_model("grants", "DeploymentGate")
    event = dict(
        repository="acme/api",
        environment="Production",
        callback_url=f"{settings.GITHUB_API_URL}/repos/acme/api/actions/runs/7/"
        "deployment_protection_rule",
        installation_id=42,
        login="dave",
        run_id=7,
    )
    first = Gate.objects.create(delivery_id="d-1", deployment_id=31, **event)
    replay = Gate.objects.create(delivery_id="d-2", deployment_id=31, **event)  # acted on again
    no_deployment = Gate.objects.create(delivery_id="d-3", deployment_id=None, **event)

    after = migrate([("grants", "0004_webhook_event_subject")])
    gates = after.get_model("grants", "DeploymentGate").objects
    subjects = dict(gates.values_list("pk", "subject"))

    expected = (
        "deployment_protection_rule.requested installation=42 run=7 deployment=31 "
        "environment=production"
    )
    assert subjects == {
        first.pk: expected,
        replay.pk: f"replayed as delivery d-2: {expected}",
        no_deployment.pk: expected.replace("deployment=31", "deployment=-"),
    }
    # Spelled as the webhook spells a new event's subject, so a late replay is recognised.
    assert subjects[first.pk] == _subject_of(first)


def _subject_of(gate) -> str:
    payload = {
        "repository": {"full_name": gate.repository},
        "environment": gate.environment,
        "installation": {"id": gate.installation_id},
        "sender": {"login": gate.login, "id": 5001},
        "deployment": {"id": gate.deployment_id},
        "deployment_callback_url": gate.callback_url,
    }
    return gate_request_from_payload(payload).subject
