"""Shortened benchmarks 2, 5 and 6 (benchmarks/RESULTS.md) on the live stack, for CI.

They fail on a broken invariant only, never on a timing figure: the lag and lateness
figures are printed for the log (run with -s to see them, or read the benchmark results).
"""

import json

import pytest

from benchmarks import audit_forwarding
from benchmarks.scenarios import broken_invariants, fault_soak, revocation_lag

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _report(name: str, figures: dict) -> None:
    shown = {k: v for k, v in figures.items() if k != "invariants"}
    print(f"\n{name}: {json.dumps(shown, default=str)}")


def test_grants_with_staggered_expiries_are_all_revoked_once_and_nothing_else_changes(
    live_harness,
):
    figures = revocation_lag(
        live_harness, prefix="ci-lag", environments=4, per_env=5, window_seconds=15
    )
    _report("revocation lag", figures)
    assert figures["grants"] == 20, figures
    assert figures["not_removed"] == 0, figures
    assert broken_invariants(figures["invariants"]) == [], figures["invariants"]


def test_under_github_faults_a_worker_kill_and_a_redis_restart_nothing_is_lost_or_doubled(
    live_harness,
):
    figures = fault_soak(
        live_harness,
        prefix="ci-soak",
        environments=8,
        per_env=5,
        fault_seconds=20,
        kill_at=6,
        redis_at=12,
        expiry_spread=8,
    )
    _report("fault soak", figures)
    assert figures["worker_kills"] == 1 and figures["redis_restarts"] == 1, figures
    assert sum(figures["faults_served"].values()) > 0, figures
    assert broken_invariants(figures["invariants"]) == [], figures["invariants"]


def test_the_audit_backlog_written_during_an_outage_of_the_collector_all_arrives_in_order(
    live_harness,
):
    figures = audit_forwarding.run(
        live_harness, events=100, outage_seconds=3, batch_sizes=(20,), forward_seconds=1
    )
    catch_up, rate = figures["catch_up"], figures["rate"]
    _report("audit forwarding", {"catch_up": catch_up, "rate": rate})
    assert catch_up["refused_posts_during_outage"] >= 1, catch_up
    assert catch_up["backlog_at_recovery"] == 100, catch_up
    assert audit_forwarding.broken(catch_up["received"]) == [], catch_up["received"]
    assert catch_up["received"]["duplicates"] == 0, catch_up["received"]
    assert audit_forwarding.broken(rate["by_batch_size"]["20"]["received"]) == [], rate
