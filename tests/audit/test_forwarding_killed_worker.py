"""A worker killed in the middle of a batch loses nothing and duplicates at most that batch:
`manage.py forward_audit_log` in a real process, SIGKILLed while its POST is unanswered."""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.forwarding import audit_forward, configured_sinks
from audit.forwarding.delivery import Outcome
from audit.models import AuditSink
from tests.audit.factories import AuditEventFactory
from tests.live_processes import ROOT, current_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_only_that_batch(
    siem_http, on_postgres
):
    AuditEventFactory.create_batch(5)
    hold = siem_http.hold_next()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.test_settings",
        "DATABASE_URL": current_database_url(),
        "AIRLOCK_AUDIT_STREAM_URL": siem_http.url,
        "AIRLOCK_AUDIT_FORWARD_BATCH": "2",
    }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "forward_audit_log"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert hold.arrived.wait(60), worker.stderr.read().decode() if worker.poll() else "no POST"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    # The collector took the batch in, but the dead worker never heard the answer.
    hold.release.set()
    assert hold.kept.wait(30)

    sink = configured_sinks()[0]
    state = AuditSink.objects.get(name="http")
    assert state.cursor == 0 and state.lease_owner  # the dead worker's lease is still live
    assert audit_forward(sink=sink).outcome == Outcome.LEASED
    # Once the lease runs out (moved into the past here rather than waited for):
    AuditSink.objects.update(leased_until=timezone.now() - timedelta(seconds=1))

    report = audit_forward(sink=sink, batch_size=2)

    assert report.outcome == Outcome.CAUGHT_UP
    assert [record["seq"] for record in siem_http.records()] == [1, 2, 1, 2, 3, 4, 5]
