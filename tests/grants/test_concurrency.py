"""Two reconciles of the same environment at once, on PostgreSQL, across connections.

The environment PUT replaces the whole reviewer list. Two workers that each read the list,
add their reviewer and write it back would lose one; the target's lease makes the second
hand its change to the first, which passes again before it lets go. The control test shows
the race is real: with worker 1's lease void (its row made to look run out, as a crashed
worker's would, so worker 2 takes it), the same scenario loses a reviewer.

The scenario: alice's grant is being applied by worker 1, whose PUT is slow to reach
GitHub; carol's grant is approved meanwhile and worker 2 reconciles the same environment,
so without a lock worker 2's write lands first and worker 1's (read before it) overwrites.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from grants.models import Grant, Target
from grants.reconciler import Lease, reconcile_environment
from integrations.github import LeaseLost
from tests.grants.factories import reviewer_grant

ENVIRONMENT_PATH = "/repos/acme/api/environments/production"


def reconcile_until_done(target_id, results):
    try:
        while True:
            result = reconcile_environment(target_id)
            results.append(result)
            if not result.busy:
                return
            time.sleep(0.05)
    finally:
        connection.close()


def race(gh, *, void_the_lease=False):
    gh.add_user("alice")
    gh.add_user("carol")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    gh.faults.timeout("PUT", ENVIRONMENT_PATH, delay=0.8, times=1)  # worker 1's write
    alice = reviewer_grant("alice")
    results: list = []
    first = threading.Thread(target=reconcile_until_done, args=(alice.target_id, results))
    first.start()
    time.sleep(0.3)  # worker 1 has read the environment and is inside its slow PUT
    reviewer_grant("carol")
    if void_the_lease:
        Target.objects.filter(pk=alice.target_id).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
    second = threading.Thread(target=reconcile_until_done, args=(alice.target_id, results))
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_reconciles_of_one_environment_at_once_lose_no_reviewer(gh, on_postgres):
    results = race(gh)

    assert sorted(gh.reviewers("acme/api", "production")) == ["alice", "bob", "carol"]
    assert set(Grant.objects.values_list("state", flat=True)) == {Grant.State.APPLIED}
    assert any(r.busy for r in results), "worker 2 should have met worker 1's lease"
    gets = [r for r in gh.requests if r.method == "GET" and r.path == ENVIRONMENT_PATH]
    assert len(gets) == 1  # worker 1's second pass starts from what it wrote
    puts = [r for r in gh.requests if r.method == "PUT" and r.path == ENVIRONMENT_PATH]
    assert len(puts) == 2


@pytest.mark.django_db(transaction=True)
def test_without_the_lease_the_same_race_loses_a_reviewer(gh, on_postgres):
    race(gh, void_the_lease=True)

    reviewers = gh.reviewers("acme/api", "production")
    assert reviewers == ["bob", "alice"], f"expected carol lost without the lease: {reviewers}"
    # ... while the database believes both grants are on GitHub: the incident the lease
    # prevents.
    assert set(Grant.objects.values_list("state", flat=True)) == {Grant.State.APPLIED}


@pytest.mark.django_db
def test_the_lease_is_held_by_one_at_a_time_runs_out_and_hands_over_changes(settings):
    settings.AIRLOCK_LEASE_SECONDS = 30
    settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS = 1
    target = reviewer_grant("alice").target
    first, second = Lease(type(target), target.pk), Lease(type(target), target.pk)

    assert first.acquire()
    assert not second.acquire()
    type(target).objects.filter(pk=target.pk).update(generation=first.generation + 1)
    assert not first.release_if_unchanged()  # a reconcile was asked for: pass again
    assert first.release_if_unchanged()
    assert second.acquire()

    # A crashed holder's lease runs out (by the database's clock).
    type(target).objects.filter(pk=target.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert first.acquire()
    settings.AIRLOCK_LEASE_SECONDS = 0  # renew at once, not a third of a lease later
    with pytest.raises(LeaseLost):
        second.renew()
