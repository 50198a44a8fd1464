"""Transitions under real concurrency: threads with their own database connections.

On PostgreSQL these take real row locks; SQLite serializes writers, so the same tests
run there too but prove less. CI runs them on PostgreSQL (AIRLOCK_REQUIRE_POSTGRES)."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from audit.models import AuditEvent
from core.errors import NotAllowed, WrongState
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_create,
)
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def run_at_once(*actions):
    """Start every action at the same instant, each on its own connection; return what
    each returned or raised."""
    barrier = threading.Barrier(len(actions))
    outcomes = [None] * len(actions)

    def worker(index, action):
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            outcomes[index] = action()
        except Exception as exc:  # the outcome under test, reported to the assertion
            outcomes[index] = exc
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=worker, args=pair) for pair in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a transition never finished"
    return outcomes


def new_request(users):
    return access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        duration_minutes=60,
    )


def approve(access_request_id, user):
    return lambda: access_request_approve(
        access_request=AccessRequest.objects.get(pk=access_request_id), approver=user
    )


def test_two_approvers_at_the_same_instant_give_two_approvals_and_one_transition(on_postgres):
    _, _, users = approver_setup(approvals_required=2)
    access_request = new_request(users)

    outcomes = run_at_once(
        approve(access_request.pk, users["alice"]), approve(access_request.pk, users["bob"])
    )

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.APPROVED
    assert access_request.approvals.count() == 2
    approved = AuditEvent.objects.filter(
        action="request.approved", target_id=str(access_request.pk)
    )
    assert approved.count() == 1


def test_three_approvers_racing_for_two_slots_approve_once(on_postgres):
    _, _, users = approver_setup(approvals_required=2)
    access_request = new_request(users)

    outcomes = run_at_once(*(approve(access_request.pk, user) for user in users.values()))

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], WrongState), outcomes
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.APPROVED
    assert access_request.approvals.count() == 2
    assert AuditEvent.objects.filter(action="request.approved").count() == 1


def test_approval_racing_a_cancel_never_approves_a_cancelled_request(on_postgres):
    _, _, users = approver_setup(approvals_required=1)
    access_request = new_request(users)
    requester = access_request.requester

    outcomes = run_at_once(
        approve(access_request.pk, users["alice"]),
        lambda: access_request_cancel(
            access_request=AccessRequest.objects.get(pk=access_request.pk), user=requester
        ),
    )

    access_request.refresh_from_db()
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, (WrongState, NotAllowed)) for o in outcomes if o not in winners)
    if access_request.status == AccessRequest.Status.CANCELLED:
        assert access_request.approvals.count() == 0
    else:
        assert access_request.status == AccessRequest.Status.APPROVED
    assert connection.vendor == "postgresql"


def test_two_break_glass_requests_at_the_same_instant_grant_one(on_postgres):
    approver_setup(approvals_required=1, break_glass=True)
    dave = UserFactory(username="dave")

    def break_glass():
        return access_request_create(
            requester=dave,
            repository="acme/api",
            environment="production",
            access="reviewer",
            reason="Production is down (INC-999); rolling back",
            duration_minutes=30,
            break_glass=True,
        )

    outcomes = run_at_once(break_glass, break_glass)

    granted = [o for o in outcomes if isinstance(o, AccessRequest)]
    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(granted) == 1 and len(refused) == 1, outcomes
    assert f"#{granted[0].pk}" in str(refused[0])
    assert AccessRequest.objects.filter(break_glass=True).count() == 1
    assert connection.vendor == "postgresql"
