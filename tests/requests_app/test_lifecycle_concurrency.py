"""Lifecycle steps under real concurrency (threads with their own connections; real row
locks on PostgreSQL, where CI runs them)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.errors import WrongState
from requests_app.models import AccessRequest
from requests_app.services import access_request_extend, access_request_review_break_glass
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup
from tests.requests_app.test_concurrency import run_at_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_two_extensions_filed_at_once_make_one_extension(on_postgres):
    policy, _, _ = approver_setup(approvals_required=1)
    now = timezone.now()
    original = AccessRequestFactory(
        requester=UserFactory(username="dave"),
        policy=policy,
        status=AccessRequest.Status.ACTIVE,
        granted_at=now,
        expires_at=now + timedelta(hours=1),
    )

    def extend():
        return access_request_extend(
            original=AccessRequest.objects.get(pk=original.pk),
            requester=original.requester,
            reason="The migration needs another half hour",
            duration_minutes=30,
        )

    outcomes = run_at_once(extend, extend)

    made = [o for o in outcomes if isinstance(o, AccessRequest)]
    refused = [o for o in outcomes if isinstance(o, (WrongState, ValidationError))]
    assert len(made) == 1 and len(refused) == 1, outcomes
    assert AccessRequest.objects.filter(extends=original).count() == 1


def test_two_reviews_at_once_record_one(on_postgres):
    policy, _, users = approver_setup(approvals_required=1, break_glass=True)
    access_request = AccessRequestFactory(
        requester=UserFactory(username="dave"),
        policy=policy,
        status=AccessRequest.Status.ACTIVE,
        break_glass=True,
        approvals_required=0,
        granted_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=30),
    )

    def review(user, outcome):
        return lambda: access_request_review_break_glass(
            access_request=AccessRequest.objects.get(pk=access_request.pk),
            reviewer=user,
            outcome=outcome,
            comment="looked at it",
        )

    outcomes = run_at_once(
        review(users["alice"], "acknowledged"), review(users["bob"], "escalated")
    )

    assert sum(isinstance(o, WrongState) for o in outcomes) == 1, outcomes
    access_request.refresh_from_db()
    assert access_request.review_outcome in ("acknowledged", "escalated")
