"""The benchmarks' bulk seeding writes rows the models accept, so `make bench` does not
break silently when a constraint is added (it broke once on approval identities)."""

import pytest

from benchmarks.seeding import Environment, bulk_grants
from requests_app.models import AccessRequest, Approval

pytestmark = pytest.mark.django_db


def test_bulk_grants_records_the_identities_the_services_record():
    envs = [Environment("acme/api", "production", ("dave", "erin"), baseline="acme/sre")]

    count = bulk_grants(envs, status=AccessRequest.Status.ACTIVE, expires_in=(60, 120))

    assert count == 2
    assert set(AccessRequest.objects.values_list("requester_identity", flat=True)) == {
        "login:dave",
        "login:erin",
    }
    assert Approval.objects.count() == 2
    assert not Approval.objects.filter(approver_identity="").exists()
