"""Request transitions and refusals, at the service level."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import NotAllowed, WrongState
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_create,
    access_request_deny,
    access_request_time_out,
    access_requests_time_out_overdue,
)
from tests.requests_app.factories import (
    AccessPolicyFactory,
    ApproverGroupFactory,
    SecretDefinitionFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status


def file_request(requester, **overrides):
    values = {
        "repository": "acme/api",
        "environment": "production",
        "access": "reviewer",
        "reason": "Deploying the hotfix for INC-1234",
        "duration_minutes": 60,
    }
    values.update(overrides)
    return access_request_create(requester=requester, **values)


def actions_for(access_request):
    return list(
        AuditEvent.objects.filter(
            target_type="requests_app.accessrequest", target_id=str(access_request.pk)
        ).values_list("action", flat=True)
    )


def test_filing_a_request_routes_it_to_the_matching_policy_and_audits_it():
    policy, _, _ = approver_setup()
    dave = UserFactory(username="dave")

    access_request = file_request(dave)

    assert access_request.status == Status.PENDING
    assert access_request.policy == policy
    assert access_request.approvals_required == 2
    assert access_request.pending_until > timezone.now() + timedelta(hours=23)
    assert actions_for(access_request) == ["request.created"]


def test_two_distinct_approvals_approve_the_request_with_four_audit_events():
    _, _, users = approver_setup()
    access_request = file_request(UserFactory(username="dave"))

    access_request_approve(access_request=access_request, approver=users["alice"], comment="ok")
    assert access_request.status == Status.PENDING
    access_request_approve(access_request=access_request, approver=users["bob"])

    access_request.refresh_from_db()
    assert access_request.status == Status.APPROVED
    assert access_request.decided_at is not None
    assert access_request.approvals.count() == 2
    assert actions_for(access_request) == [
        "request.created",
        "request.approval_added",
        "request.approval_added",
        "request.approved",
    ]


def test_approving_own_request_is_refused():
    _, _, users = approver_setup()
    access_request = file_request(users["alice"])

    with pytest.raises(NotAllowed, match="your own request"):
        access_request_approve(access_request=access_request, approver=users["alice"])
    assert access_request.approvals.count() == 0


def test_a_superuser_cannot_approve_their_own_request_either():
    _, _, users = approver_setup()
    users["alice"].is_superuser = users["alice"].is_staff = True
    users["alice"].save()
    access_request = file_request(users["alice"])

    with pytest.raises(NotAllowed, match="your own request"):
        access_request_approve(access_request=access_request, approver=users["alice"])


def test_a_superuser_outside_the_approver_groups_cannot_approve():
    approver_setup()
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    access_request = file_request(UserFactory(username="dave"))

    with pytest.raises(NotAllowed, match="approver groups"):
        access_request_approve(access_request=access_request, approver=root)


def test_approval_by_a_non_member_is_refused():
    approver_setup()
    mallory = UserFactory(username="mallory")
    access_request = file_request(UserFactory(username="dave"))

    with pytest.raises(NotAllowed, match="Only members of the approver groups"):
        access_request_approve(access_request=access_request, approver=mallory)
    assert actions_for(access_request) == ["request.created"]


def test_membership_is_matched_case_insensitively_like_github_logins():
    group = ApproverGroupFactory(members=["Alice", "bob"])
    AccessPolicyFactory(approver_groups=[group])
    alice = UserFactory(username="alice")
    access_request = file_request(UserFactory(username="dave"))

    access_request_approve(access_request=access_request, approver=alice)

    assert access_request.approvals.count() == 1


def test_approving_twice_counts_once():
    _, _, users = approver_setup()
    access_request = file_request(UserFactory(username="dave"))
    access_request_approve(access_request=access_request, approver=users["alice"])

    with pytest.raises(WrongState, match="already approved"):
        access_request_approve(access_request=access_request, approver=users["alice"])
    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING
    assert access_request.approvals.count() == 1


def test_approval_after_cancel_is_refused():
    _, _, users = approver_setup()
    dave = UserFactory(username="dave")
    access_request = file_request(dave)
    access_request_cancel(access_request=access_request, user=dave, comment="not needed")

    with pytest.raises(WrongState, match="cancelled"):
        access_request_approve(access_request=access_request, approver=users["alice"])
    access_request.refresh_from_db()
    assert access_request.status == Status.CANCELLED
    assert access_request.approvals.count() == 0


def test_approval_of_a_stale_copy_after_cancel_is_refused():
    """The service re-reads under a lock: an approver holding an old page loses."""
    _, _, users = approver_setup()
    dave = UserFactory(username="dave")
    access_request = file_request(dave)
    stale_copy = AccessRequest.objects.get(pk=access_request.pk)
    access_request_cancel(access_request=access_request, user=dave)

    with pytest.raises(WrongState):
        access_request_approve(access_request=stale_copy, approver=users["alice"])


def test_deny_closes_the_request_with_the_comment():
    _, _, users = approver_setup()
    access_request = file_request(UserFactory(username="dave"))

    access_request_deny(access_request=access_request, approver=users["bob"], comment="no window")

    access_request.refresh_from_db()
    assert access_request.status == Status.DENIED
    assert access_request.closed_by == users["bob"]
    assert access_request.close_comment == "no window"
    assert actions_for(access_request)[-1] == "request.denied"
    with pytest.raises(WrongState):
        access_request_approve(access_request=access_request, approver=users["alice"])


def test_denying_own_request_is_refused():
    _, _, users = approver_setup()
    access_request = file_request(users["bob"])

    with pytest.raises(NotAllowed):
        access_request_deny(access_request=access_request, approver=users["bob"])


def test_only_the_requester_can_cancel():
    _, _, users = approver_setup()
    access_request = file_request(UserFactory(username="dave"))

    with pytest.raises(NotAllowed, match="Only the requester"):
        access_request_cancel(access_request=access_request, user=users["alice"])


def test_cancelling_an_approved_request_is_refused():
    _, _, users = approver_setup(approvals_required=1)
    dave = UserFactory(username="dave")
    access_request = file_request(dave)
    access_request_approve(access_request=access_request, approver=users["alice"])

    with pytest.raises(WrongState, match="approved"):
        access_request_cancel(access_request=access_request, user=dave)


def test_duration_above_the_policy_maximum_is_refused():
    approver_setup(max_duration=timedelta(hours=4))

    with pytest.raises(ValidationError) as refused:
        file_request(UserFactory(username="dave"), duration_minutes=5 * 60)

    assert "At most 240 minutes" in refused.value.message_dict["duration_minutes"][0]
    assert AccessRequest.objects.count() == 0


def test_duration_defaults_to_the_policys_default():
    approver_setup(default_duration=timedelta(minutes=45))

    access_request = file_request(UserFactory(username="dave"), duration_minutes=None)

    assert access_request.duration_minutes == 45


def test_a_reason_shorter_than_the_policy_minimum_is_refused():
    approver_setup(reason_min_length=20)

    with pytest.raises(ValidationError) as refused:
        file_request(UserFactory(username="dave"), reason="  deploy   ")

    assert "at least 20 characters" in refused.value.message_dict["reason"][0]


def test_a_target_no_policy_covers_is_refused_with_its_name():
    approver_setup()

    with pytest.raises(ValidationError) as refused:
        file_request(UserFactory(username="dave"), repository="other/repo")

    message = refused.value.message_dict["__all__"][0]
    assert "No access policy covers reviewer access to other/repo" in message
    assert "'production'" in message


def test_a_malformed_repository_is_refused_before_routing():
    approver_setup()

    with pytest.raises(ValidationError) as refused:
        file_request(UserFactory(username="dave"), repository="not a repo")

    assert "owner/name" in refused.value.message_dict["repository"][0]


def test_secret_access_must_name_a_secret_the_policy_allows():
    allowed = SecretDefinitionFactory(name="DEPLOY_TOKEN")
    SecretDefinitionFactory(name="OTHER_TOKEN")
    approver_setup(secrets=[allowed])
    dave = UserFactory(username="dave")

    with pytest.raises(ValidationError) as refused:
        file_request(dave, access="secret", secret_name="OTHER_TOKEN")
    assert "does not grant the secret OTHER_TOKEN" in refused.value.message_dict["secret"][0]

    access_request = file_request(dave, access="secret", secret_name="DEPLOY_TOKEN")
    assert access_request.secret == allowed


def test_a_second_identical_pending_request_is_refused():
    approver_setup()
    dave = UserFactory(username="dave")
    first = file_request(dave)

    with pytest.raises(ValidationError, match=f"pending request #{first.pk}"):
        file_request(dave)


def test_zero_approvals_required_approves_at_once_and_says_so():
    approver_setup(approvals_required=0)

    access_request = file_request(UserFactory(username="dave"))

    assert access_request.status == Status.APPROVED
    assert actions_for(access_request) == ["request.created", "request.auto_approved"]


def test_break_glass_is_refused_where_the_policy_does_not_allow_it():
    approver_setup()

    with pytest.raises(ValidationError) as refused:
        file_request(UserFactory(username="dave"), break_glass=True)

    assert "break-glass" in refused.value.message_dict["break_glass"][0]


def test_break_glass_is_approved_at_once_within_its_short_maximum():
    approver_setup(break_glass=True, break_glass_max_duration=timedelta(minutes=30))
    dave = UserFactory(username="dave")

    with pytest.raises(ValidationError):
        file_request(dave, break_glass=True, duration_minutes=60)
    access_request = file_request(dave, break_glass=True, duration_minutes=30)

    assert access_request.status == Status.APPROVED
    assert access_request.break_glass
    assert actions_for(access_request) == ["request.created", "request.break_glass"]


def test_a_request_pending_past_its_ttl_times_out_once():
    approver_setup(pending_ttl=timedelta(hours=1))
    access_request = file_request(UserFactory(username="dave"))
    AccessRequest.objects.filter(pk=access_request.pk).update(
        pending_until=timezone.now() - timedelta(seconds=1)
    )

    assert access_requests_time_out_overdue() == 1
    assert access_requests_time_out_overdue() == 0
    access_request.refresh_from_db()
    assert access_request.status == Status.TIMED_OUT
    assert actions_for(access_request)[-1] == "request.timed_out"


def test_a_request_within_its_ttl_does_not_time_out():
    approver_setup()
    access_request = file_request(UserFactory(username="dave"))

    assert access_request_time_out(access_request=access_request) is False
    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING


def test_editing_the_policy_does_not_change_what_an_open_request_needs():
    policy, _, users = approver_setup(approvals_required=1)
    access_request = file_request(UserFactory(username="dave"))
    policy.approvals_required = 3
    policy.save()

    access_request_approve(access_request=access_request, approver=users["alice"])

    access_request.refresh_from_db()
    assert access_request.status == Status.APPROVED


def test_most_specific_policy_wins():
    group_policy, _, _ = approver_setup()
    specific = AccessPolicyFactory(
        name="api-prod",
        repository_patterns=["acme/api"],
        environment_patterns=["production"],
        approvals_required=1,
    )
    dave = UserFactory(username="dave")

    assert file_request(dave).policy == specific
    assert file_request(dave, repository="acme/web").policy == group_policy


def test_every_status_is_either_open_or_closed():
    """Gates, extensions and the engine sort requests by these two groups: a new status
    must be put in one of them."""
    open_, closed = set(AccessRequest.OPEN_STATUSES), set(AccessRequest.CLOSED_STATUSES)
    assert open_ | closed == set(AccessRequest.Status) and not open_ & closed
