"""Benchmark 7's seeding and page loop, tiny: the rows it writes in bulk are rows the models
and the audit chain accept, it grows the same database from one size to the next, and
every page it times answers 200 (on SQLite through INSERTs, on PostgreSQL through COPY), so
`make bench` does not break silently when a column or a constraint is added."""

import pytest
from django.db.models import F

from audit.actions import AuditAction
from audit.services import log_event
from audit.verification import verify_chain
from benchmarks import growth
from grants.models import Grant
from requests_app.models import AccessRequest, Approval

pytestmark = pytest.mark.django_db

SMALL = {"requests": 400, "events": 900}
LARGE = {"requests": 700, "events": 1500}


def run_tiny():
    return growth.run(small=SMALL, large=LARGE, mine_requests=30, warmup=0, rounds=1)


def assert_seeded_and_served(result):
    granted = AccessRequest.objects.filter(status__in=growth.GRANTED).count()
    assert result["counts"] == {
        "requests": 700, "approvals": granted, "grants": granted, "events": 1500, "mine": 30,
    }
    assert granted > 0
    # Each grant belongs to its own request, on the target of that request.
    assert not Grant.objects.exclude(target__repository=F("access_request__repository")).exists()
    assert Approval.objects.filter(approver_identity="").count() == 0
    assert {row["page"] for row in result["pages"]} == {name for name, _, _ in
                                                        growth.pages(_world_stub())}
    for row in result["pages"]:
        assert tuple(row["status"]) == (200, 200), row
        assert row["queries_small"] > 0 and row["queries_large"] > 0, row
    # Seeded with contiguous seq and keyed links after what the setup itself logged.
    chain = verify_chain()
    assert chain.ok, chain.problem
    assert chain.checked >= 1500


def _world_stub():
    class Someone:
        pk = 0

    return growth.World(now=None, requesters=[], approvers=[], policies=[], targets={},
                        mine=Someone(), approver=Someone(), admin=Someone(), mine_requests=30)


def test_the_growth_benchmark_seeds_grows_and_serves_every_page():
    assert_seeded_and_served(run_tiny())


@pytest.mark.postgres
def test_the_growth_benchmark_seeds_with_copy_on_postgresql(on_postgres):
    result = run_tiny()

    assert_seeded_and_served(result)
    # The ids' sequences were moved past the copied rows, and the chain head to the last
    # event: the application's next event follows on.
    event = log_event(action=AuditAction.GRANT_CHECKED, actor_label="after the seeding")
    assert event.seq == growth.AuditEvent.objects.count()
    assert verify_chain().ok
