"""Benchmark 8's own code (benchmarks/audit_throughput.py), run tiny so that `make bench`
does not break silently: its writers really write, every event ends up sealed in an intact
chain, and the report renders. No timing is asserted."""

import pytest
from django.db import connection

from audit.models import AuditEvent, AuditPendingEvent
from audit.verification import verify_chain
from benchmarks.audit_throughput import BARE_TABLE, bare_table, one_line
from benchmarks.report import _audit_throughput_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("mode", ["waiting", "passing", "unshared"])
def test_each_line_writes_events_that_all_end_up_sealed_in_one_intact_chain(
    mode, on_postgres
):
    figures = one_line(mode=mode, writers=2, seconds=0.5)

    assert figures["events"] == sum(figures["per_writer"]) > 0
    assert AuditEvent.objects.filter(target_type="bench.writer").count() == figures["events"]
    assert not AuditPendingEvent.objects.exists()
    if mode == "unshared":
        # The head was held all along: every event waited, and the sweep sealed them.
        assert figures["sealed_by_the_sweep"] == figures["events"]
    result = verify_chain()
    assert result.ok and result.checked == figures["events"]


def test_the_bare_line_writes_its_own_rows_and_no_audit_event(on_postgres):
    bare_table(create=True)
    try:
        figures = one_line(mode="bare", writers=2, seconds=0.5)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {BARE_TABLE}")
            assert cursor.fetchone()[0] == figures["events"] > 0
    finally:
        bare_table(create=False)
    assert not AuditEvent.objects.filter(target_type="bench.writer").exists()


def test_the_report_says_missed_below_three_and_met_at_it():
    def run(rate):
        return {"events_per_second": rate}

    result = {
        "events_per_second": {"waiting, 1 writer": 100, "waiting, 4 writers": 110,
                              "passing, 1 writer": 100, "passing, 4 writers": 290,
                              "unshared, 4 writers": 400, "bare, 1 writer": 300,
                              "bare, 4 writers": 900},
        "ratios": {"passing, 4 writers": 2.9, "unshared, 4 writers": 4.0},
        "passing_4_vs_waiting_4": 2.6,
        "bare_4_vs_1": 3.0,
        "ideal_sealer_vs_waiting_1": 3.5,
        "runs": {"passing, 4 writers": [{"waiting_max": 3, "waiting_age_max_seconds": 0.1,
                                         "left_waiting_after_the_writers": 0}]},
        "chain_ok": True, "chain_checked": 10, "chain_problem": "",
        "written": 10, "in_log": 10, "distinct_in_log": 10, "pending_at_end": 0,
    }
    rows = _audit_throughput_rows(result)
    assert rows[0][-1] == "**missed**" and rows[-1][-1] == "met"

    result["ratios"]["passing, 4 writers"] = 3.0
    result["in_log"] = 9  # an event lost
    rows = _audit_throughput_rows(result)
    assert rows[0][-1] == "met" and rows[-1][-1] == "**missed**"
