import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.db import transaction

import audit
from audit.models import AppendOnlyError, AuditChainHead, AuditEvent
from audit.services import log_event
from audit.verification import verify_chain
from tests.audit.factories import AuditEventFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_event_records_who_what_target_and_why():
    alice = UserFactory(username="alice")
    group = Group.objects.create(name="prod-approvers")

    event = log_event(
        action="request.approved",
        actor=alice,
        target=group,
        reason="looks right",
        detail={"approvals": 2},
    )

    event.refresh_from_db()
    assert event.seq == 1
    assert event.actor_id == alice.pk
    assert event.actor_label == "alice"
    assert event.action == "request.approved"
    assert (event.target_type, event.target_id, event.target_repr) == (
        "auth.group",
        str(group.pk),
        "prod-approvers",
    )
    assert event.reason == "looks right"
    assert event.detail == {"approvals": 2}
    assert event.prev_hash == ""
    assert len(event.hash) == 64


def test_actor_label_survives_the_user_being_renamed_and_deleted():
    bob = UserFactory(username="bob")
    event = log_event(action="request.created", actor=bob)

    bob.username = "robert"
    bob.save()
    bob.delete()

    event.refresh_from_db()
    assert event.actor_label == "bob"
    assert verify_chain().ok


def test_no_actor_is_recorded_as_the_system():
    event = log_event(action="grant.expired")

    assert event.actor_id is None
    assert event.actor_label == "system"


def test_an_explicit_actor_label_is_kept_without_a_user():
    event = log_event(action="grant.checked", actor_label="workflow acme/api@production")

    assert event.actor_label == "workflow acme/api@production"


def test_an_anonymous_visitor_is_recorded_without_a_user_id():
    event = log_event(action="signin.failed", actor=AnonymousUser())

    assert (event.actor_id, event.actor_label) == (None, "anonymous")


def test_target_can_be_given_without_a_model_instance():
    event = log_event(
        action="github.environment.updated",
        target_type="github.environment",
        target_id="acme/api:production",
        target_repr="acme/api production",
    )

    assert (event.target_type, event.target_id, event.target_repr) == (
        "github.environment",
        "acme/api:production",
        "acme/api production",
    )


def test_an_unsaved_target_is_refused():
    with pytest.raises(ValueError, match="saved first"):
        log_event(action="request.created", target=Group(name="never-saved"))


def test_a_long_target_repr_is_shortened_to_fit():
    event = log_event(action="request.created", target_repr="x" * 1000)

    event.refresh_from_db()
    assert len(event.target_repr) == 255
    assert verify_chain().ok


def test_an_action_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="action"):
        log_event(action="a" * 101)
    with pytest.raises(ValueError, match="action"):
        log_event(action="")


def test_detail_is_stored_as_plain_json_and_hashes_the_same_after_reload():
    detail = {
        "when": datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "before": {"reviewers": [{"type": "User", "id": 7}], "wait_timer": 0},
        "tuple": (1, 2),
        "numbers": [0.1, 1.5e-07, 2.0, 1e20, -0.0, True, None],
        "unicode": "Zoë — 本番 🚀",
        7: "integer keys become strings",
    }

    event = log_event(action="grant.applied", detail=detail)
    reloaded = AuditEvent.objects.get(pk=event.pk)

    assert reloaded.detail == event.detail
    assert reloaded.detail["when"] == "2025-03-01T12:30:15.123Z"
    assert reloaded.detail["amount"] == "12.50"
    assert reloaded.detail["tuple"] == [1, 2]
    assert reloaded.detail["numbers"] == [0.1, 1.5e-07, 2, 10**20, 0, True, None]
    assert reloaded.detail["7"] == "integer keys become strings"
    assert reloaded.compute_hash() == event.hash


def test_created_at_keeps_microseconds_and_hashes_the_same_after_reload():
    events = AuditEventFactory.create_batch(5)

    for event in events:
        reloaded = AuditEvent.objects.get(pk=event.pk)
        assert reloaded.created_at == event.created_at
        assert reloaded.compute_hash() == event.hash


def test_not_a_number_in_detail_is_refused():
    with pytest.raises(ValueError):
        log_event(action="grant.applied", detail={"ratio": float("nan")})


def test_each_event_links_to_the_previous_one():
    first, second, third = AuditEventFactory.create_batch(3)

    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (3, third.hash)


def test_package_level_log_event_forwards_to_the_service():
    event = audit.log_event(action="request.created", reason="via the package")

    assert AuditEvent.objects.get().pk == event.pk


@pytest.mark.django_db(transaction=True)
def test_event_is_rolled_back_with_the_change_it_records():
    log_event(action="request.created")

    with pytest.raises(RuntimeError), transaction.atomic():
        log_event(action="request.approved")
        raise RuntimeError("the change failed")
    after = log_event(action="request.cancelled")

    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "request.created",
        "request.cancelled",
    ]
    assert after.seq == 2
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_event_commits_on_its_own():
    log_event(action="request.created")

    assert transaction.get_autocommit()
    assert AuditEvent.objects.count() == 1


def test_the_orm_refuses_to_change_or_remove_events():
    event = AuditEventFactory()

    event.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().reason == "ship the hotfix"
