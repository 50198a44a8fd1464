"""Lock order against the audit chain on PostgreSQL.

audit.log_event() takes the chain-head row lock and holds it until the transaction ends,
so a transaction must lock every row it will change before its first audit event. A
request service does exactly that (lock the request's row, then audit); these tests hold a
request's row the same way on one connection while the grant engine works on that request
on another, then audit. With the engine taking the chain lock first and the request's row
second, PostgreSQL finds a deadlock and aborts one side; in the right order the engine
simply waits for the row and both commit.
"""

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

import audit
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_revoke
from requests_app.models import AccessRequest
from tests.grants.factories import expire_now, reviewer_grant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LOCK_WAIT_SECONDS = 20


def _wait_until_blocked(backend: dict, thread: threading.Thread) -> None:
    """Until the other connection waits on a lock (bounded; it may also just finish)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while thread.is_alive() and time.monotonic() < deadline:
        if "pid" in backend:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                    [backend["pid"]],
                )
                row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
        time.sleep(0.02)


def while_a_request_service_holds(access_request_id: int, engine_step) -> dict:
    """Lock the request's row and audit, as a request service does, with engine_step
    running on its own connection in between; return both sides' outcomes."""
    backend, outcome = {}, {}

    def other():
        from django.db import connection as other_connection

        try:
            with other_connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend["pid"] = cursor.fetchone()[0]
            outcome["engine"] = engine_step()
        except Exception as exc:  # the outcome under test, reported to the assertion
            outcome["engine"] = exc
        finally:
            other_connection.close()

    thread = threading.Thread(target=other)
    try:
        with transaction.atomic():
            locked = AccessRequest.objects.select_for_update().get(pk=access_request_id)
            thread.start()
            _wait_until_blocked(backend, thread)
            audit.log_event(action="test.request_service", target=locked)
        outcome["service"] = "committed"
    except OperationalError as exc:
        outcome["service"] = exc
    thread.join(timeout=60)
    assert not thread.is_alive(), "the engine step never finished"
    return outcome


def test_revoking_a_grant_while_a_service_holds_its_request_does_not_deadlock(
    on_postgres, settings
):
    settings.AIRLOCK_DRY_RUN = True
    grant = reviewer_grant("dave")
    reconcile_environment(grant.target_id)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED

    outcome = while_a_request_service_holds(
        grant.access_request_id,
        lambda: grant_revoke(
            grant=Grant.objects.select_related("access_request").get(pk=grant.pk),
            user=grant.access_request.requester,
            comment="done early",
        ),
    )

    assert outcome["service"] == "committed", outcome
    assert isinstance(outcome["engine"], Grant), outcome
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == "revoked"


def test_expiring_a_grant_while_a_service_holds_its_request_does_not_deadlock(
    on_postgres, settings
):
    settings.AIRLOCK_DRY_RUN = True
    grant = reviewer_grant("dave")
    reconcile_environment(grant.target_id)
    expire_now(Grant.objects.get(pk=grant.pk))

    outcome = while_a_request_service_holds(
        grant.access_request_id, lambda: reconcile_environment(grant.target_id)
    )

    assert outcome["service"] == "committed", outcome
    assert not isinstance(outcome["engine"], Exception), outcome
    assert outcome["engine"].revoked == [grant.pk], outcome["engine"].summary()
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == "expired"
