"""The canonical_targets migrations: rows stored before names were canonical are brought to
the canonical form the lookups now compare by plain equality, and a name outside GitHub's
rules is left alone (found by no lookup; the grant engine refuses to grant it)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from grants.models import DeploymentGate, Grant, Target
from grants.services import grant_create_for_request
from requests_app.models import AccessPolicy, AccessRequest
from tests.requests_app.factories import LOOKALIKE, AccessRequestFactory

BEFORE = [("requests_app", "0005_check_index"), ("grants", "0002_deploymentgate")]
# Through the canonical_targets migrations (requests_app 0008, grants 0004) to the latest,
# so that the current models read the rows.
AFTER = None


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    if targets is None:
        targets = executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_stored_targets_become_canonical_and_names_outside_the_rules_stay_as_they_were():
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    Policy = old.get_model("requests_app", "AccessPolicy")
    Request = old.get_model("requests_app", "AccessRequest")
    OldTarget = old.get_model("grants", "Target")
    Gate = old.get_model("grants", "DeploymentGate")
    dave = User.objects.create(username="migration-dave")
    policy = Policy.objects.create(
        name="mixed-case",
        repository_patterns=["Acme/*"],
        environment_patterns=["Production", "PROD-*"],
        access_kinds=["reviewer"],
    )
    later = timezone.now() + timedelta(hours=1)

    def request(repository, environment):
        return Request.objects.create(
            requester=dave, repository=repository, environment=environment,
            access="reviewer", reason="migration test", duration_minutes=60, policy=policy,
            approvals_required=1, pending_until=later,
        ).pk

    mixed, lookalike = request("Acme/API", "Production"), request("acme/api", LOOKALIKE)
    OldTarget.objects.create(repository="Acme/API", environment="Production")
    OldTarget.objects.create(repository="acme/api", environment=LOOKALIKE)
    Gate.objects.create(
        delivery_id="d-1", repository="ACME/api", environment="PRODUCTION", run_id=1,
        callback_url="x", installation_id=1, login="migration-dave",
    )

    migrate(AFTER)

    assert AccessRequest.objects.get(pk=mixed).repository == "acme/api"
    assert AccessRequest.objects.get(pk=mixed).environment == "production"
    assert AccessRequest.objects.get(pk=lookalike).environment == LOOKALIKE
    assert sorted(Target.objects.values_list("repository", "environment")) == [
        ("acme/api", "production"),
        ("acme/api", LOOKALIKE),
    ]
    gate = DeploymentGate.objects.get()
    assert (gate.repository, gate.environment) == ("acme/api", "production")
    policy = AccessPolicy.objects.get(name="mixed-case")
    assert (policy.repository_patterns, policy.environment_patterns) == (
        ["acme/*"],
        ["production", "prod-*"],
    )


@pytest.mark.django_db
def test_a_request_left_outside_the_rules_fails_instead_of_being_granted():
    left = AccessRequestFactory(
        environment=LOOKALIKE, status=AccessRequest.Status.APPROVED, decided_at=timezone.now()
    )

    assert grant_create_for_request(access_request=left) is None

    left.refresh_from_db()
    assert left.status == AccessRequest.Status.FAILED
    assert "outside GitHub's naming rules" in left.close_comment
    assert not Grant.objects.exists() and not Target.objects.exists()
