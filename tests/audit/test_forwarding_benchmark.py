"""Benchmark 6's own code (benchmarks/audit_forwarding.py), run tiny so that `make bench`
does not break silently, and its received-stream check shown to catch what it looks for
(a check that always passes would make the benchmark's "nothing lost" worthless). No timing
is asserted; the live half (the catch-up, with a real worker) runs in tests/soak/."""

import pytest

from audit.export import event_record
from benchmarks.audit_forwarding import broken, delivery_rate, received_problems, write_event

pytestmark = pytest.mark.django_db


def records(count: int) -> list[dict]:
    return [event_record(write_event(number)) for number in range(1, count + 1)]


def test_the_rate_benchmark_delivers_every_event_in_batches_and_its_checks_hold():
    records(12)

    figures = delivery_rate(batch_sizes=(5,))

    part = figures["by_batch_size"]["5"]
    assert figures["events"] == 12
    assert part["batches"] == 3
    assert part["received"]["distinct"] == 12 and part["received"]["duplicates"] == 0
    assert broken(part["received"]) == []
    assert {"forward_events_per_second", "raw_post_events_per_second",
            "ratio_to_export_plus_posts"} <= part.keys()


def test_duplicates_by_seq_are_dropped_and_are_no_problem():
    sent = records(4)

    checks = received_problems(sent[:3] + sent[1:3] + sent[3:], newest=4)

    assert checks["duplicates"] == 2 and broken(checks) == []


def test_a_missing_record_is_lost_and_breaks_the_chain():
    sent = records(4)

    checks = received_problems(sent[:1] + sent[2:], newest=4)

    assert checks["lost"] == 1 and checks["lost_examples"] == [2]
    assert "seq 3: prev_hash" in checks["chain_problem"]
    assert broken(checks)


def test_a_record_arriving_after_a_later_one_is_reordered():
    sent = records(3)

    checks = received_problems([sent[0], sent[2], sent[1]], newest=3)

    assert checks["reordered"] == 1 and checks["lost"] == 0
    assert broken(checks) == ["reordered 1"]


def test_a_record_changed_on_the_way_does_not_recompute():
    sent = records(3)
    sent[1] = {**sent[1], "actor_label": "mallory"}

    checks = received_problems(sent, newest=3)

    assert checks["chain_problem"] == "seq 2: the hash does not recompute from the record"
    assert broken(checks)


def test_records_the_log_does_not_hold_are_counted():
    sent = records(3)

    checks = received_problems(sent, newest=2)

    assert checks["beyond_newest"] == 1 and broken(checks) == ["beyond_newest 1"]
