"""Decisions from Slack: POST /slack/interactions, signed clicks on a request card's
Approve and Deny (and the deny modal's comment), through the same services as the admin."""

import itertools
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from requests_app import slack_views
from requests_app.models import AccessRequest, Approval
from requests_app.slack_models import SlackDelivery, SlackLink
from tests.fixtures import at_once
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup
from tests.requests_app.slack_helpers import (
    CHANNEL,
    TEAM,
    click,
    deny_submission,
    interaction_body,
    post_signed,
    sign,
    slack_api,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
URL = "/slack/interactions"


@pytest.fixture
def world(slack_api):  # noqa: F811
    policy, _, users = approver_setup()
    dave = UserFactory(username="dave")
    for login, slack_user in (("alice", "U0ALICE"), ("bob", "U0BOB"), ("carol", "U0CAROL")):
        SlackLink.objects.create(user=users[login], team_id=TEAM, slack_user_id=slack_user)
    SlackLink.objects.create(user=dave, team_id=TEAM, slack_user_id="U0DAVE")
    mallory = UserFactory(username="mallory")
    SlackLink.objects.create(user=mallory, team_id=TEAM, slack_user_id="U0MALLORY")
    access_request = AccessRequestFactory(requester=dave, policy=policy)
    return {"policy": policy, "request": access_request, "users": users, "slack": slack_api}


def send(payload, **signing):
    return post_signed(URL, interaction_body(payload), **signing)


def told(world, slack_user="U0ALICE") -> list[str]:
    return [
        call["text"]
        for call in world["slack"].of("chat.postEphemeral")
        if call["user"] == slack_user and call["channel"] == CHANNEL
    ]


def refusals():
    return list(AuditEvent.objects.filter(action="slack.decision_refused"))


def unchanged(access_request):
    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING
    assert not Approval.objects.filter(request=access_request).exists()


# -- approve -------------------------------------------------------------------------------


def test_two_signed_approve_clicks_approve_through_the_service_audited_with_slack(world):
    access_request = world["request"]

    assert send(click("airlock_approve", access_request.pk)).status_code == 200
    assert send(click("airlock_approve", access_request.pk, user="U0BOB")).status_code == 200

    access_request.refresh_from_db()
    assert access_request.status == Status.APPROVED
    assert set(access_request.approvals.values_list("approver__username", flat=True)) == {
        "alice",
        "bob",
    }
    added = AuditEvent.objects.filter(action="request.approval_added").order_by("id")
    assert [e.detail["slack_user"] for e in added] == ["U0ALICE", "U0BOB"]
    assert {e.detail["slack_channel"] for e in added} == {CHANNEL}
    assert {e.detail["slack_team"] for e in added} == {TEAM}
    approved = AuditEvent.objects.get(action="request.approved")
    assert approved.actor_label == "bob"
    assert approved.detail["slack_user"] == "U0BOB"
    assert world["slack"].of("chat.postEphemeral") == []


def test_a_bad_signature_is_401_and_changes_nothing(world):
    response = send(click("airlock_approve", world["request"].pk), secret="another-secret")
    assert response.status_code == 401
    assert "signature" in response.content.decode().lower()
    unchanged(world["request"])
    assert not SlackDelivery.objects.exists()


def test_a_missing_signature_is_401(world):
    body = interaction_body(click("airlock_approve", world["request"].pk))
    response = post_signed(URL, body, headers={})
    assert response.status_code == 401
    unchanged(world["request"])


def test_a_body_changed_after_signing_is_401(world):
    signed = interaction_body(click("airlock_approve", world["request"].pk, user="U0CAROL"))
    headers = sign(signed)
    changed = interaction_body(click("airlock_approve", world["request"].pk))
    assert post_signed(URL, changed, headers=headers).status_code == 401
    unchanged(world["request"])


def test_an_old_timestamp_is_401_and_changes_nothing(world):
    response = send(
        click("airlock_approve", world["request"].pk), timestamp=int(time.time()) - 6 * 60
    )
    assert response.status_code == 401
    assert "five minutes" in response.content.decode()
    unchanged(world["request"])


def test_a_replayed_click_is_refused_and_acts_once(world):
    body = interaction_body(click("airlock_approve", world["request"].pk))
    headers = sign(body)
    assert post_signed(URL, body, headers=headers).status_code == 200
    replay = post_signed(URL, body, headers=headers)
    assert replay.status_code == 409
    assert "already received" in replay.content.decode()
    assert world["request"].approvals.count() == 1
    assert AuditEvent.objects.filter(action="request.approval_added").count() == 1


def test_deliveries_older_than_any_replay_window_are_dropped(world):
    old = SlackDelivery.objects.create(digest="0" * 64)
    SlackDelivery.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(minutes=16)
    )
    send(click("airlock_approve", world["request"].pk))
    assert not SlackDelivery.objects.filter(pk=old.pk).exists()
    assert SlackDelivery.objects.count() == 1


def test_an_unlinked_slack_user_is_told_to_link_and_nothing_changes(world):
    assert send(click("airlock_approve", world["request"].pk, user="U0NOBODY")).status_code == 200
    unchanged(world["request"])
    assert told(world, "U0NOBODY") == [
        "Your Slack account is not linked to Airlock: run `/airlock link` first."
    ]
    (refusal,) = refusals()
    assert refusal.detail["slack_user"] == "U0NOBODY"
    assert refusal.detail["slack_channel"] == CHANNEL


def test_the_same_slack_id_in_another_workspace_is_not_linked(world):
    send(click("airlock_approve", world["request"].pk, team="T0OTHER"))
    unchanged(world["request"])
    assert world["slack"].of("chat.postEphemeral")[0]["text"].startswith(
        "Your Slack account is not linked"
    )


def test_the_requesters_own_click_is_refused_to_them_alone(world):
    send(click("airlock_approve", world["request"].pk, user="U0DAVE"))
    unchanged(world["request"])
    (text,) = told(world, "U0DAVE")
    assert "own request" in text.lower() or "requester" in text.lower(), text
    assert [call["user"] for call in world["slack"].of("chat.postEphemeral")] == ["U0DAVE"]
    (refusal,) = refusals()
    assert refusal.actor_id == world["request"].requester_id
    assert refusal.detail == {
        "decision": "approve",
        "slack_user": "U0DAVE",
        "slack_team": TEAM,
        "slack_channel": CHANNEL,
    }
    assert refusal.reason == text


def test_a_non_approvers_click_is_refused_to_them_alone(world):
    send(click("airlock_approve", world["request"].pk, user="U0MALLORY"))
    unchanged(world["request"])
    (text,) = told(world, "U0MALLORY")
    assert text
    assert refusals()[0].reason == text


def test_a_click_on_a_cancelled_request_is_refused(world):
    AccessRequest.objects.filter(pk=world["request"].pk).update(status=Status.CANCELLED)
    send(click("airlock_approve", world["request"].pk))
    world["request"].refresh_from_db()
    assert world["request"].status == Status.CANCELLED
    assert not world["request"].approvals.exists()
    (text,) = told(world)
    assert "cancelled" in text
    assert refusals()[0].detail["decision"] == "approve"


def test_a_second_click_by_the_same_approver_is_refused(world):
    send(click("airlock_approve", world["request"].pk))
    send(click("airlock_approve", world["request"].pk))
    assert world["request"].approvals.count() == 1
    (text,) = told(world)
    assert "already approved" in text


def test_slack_approvals_off_refuses_clicks(world):
    policy = world["policy"]
    policy.slack_approvals = False
    policy.save()
    send(click("airlock_approve", world["request"].pk))
    send(click("airlock_deny", world["request"].pk))
    send(deny_submission(world["request"].pk, "No."))
    unchanged(world["request"])
    texts = told(world)
    assert len(texts) == 3
    assert all("does not take decisions from Slack" in t for t in texts)
    assert world["slack"].of("views.open") == []


def test_an_unknown_request_is_told(world):
    send(click("airlock_approve", 999999))
    (text,) = told(world)
    assert "No request" in text


# -- deny ----------------------------------------------------------------------------------


def test_deny_opens_a_modal_and_its_submission_denies_with_the_comment(world):
    access_request = world["request"]
    trigger = world["slack"].new_trigger_id()
    assert send(click("airlock_deny", access_request.pk, trigger_id=trigger)).status_code == 200
    (opened,) = world["slack"].of("views.open")
    assert opened["trigger_id"] == trigger
    assert len(world["slack"].server.views) == 1  # the local Slack opened it
    assert told(world) == []
    view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
    assert view["callback_id"] == "airlock_deny"
    assert json.loads(view["private_metadata"]) == {
        "request": access_request.pk,
        "channel": CHANNEL,
    }
    unchanged(access_request)

    response = send(deny_submission(access_request.pk, "Not during the freeze."))
    assert response.status_code == 200
    assert response.json() == {"response_action": "clear"}
    access_request.refresh_from_db()
    assert access_request.status == Status.DENIED
    assert access_request.close_comment == "Not during the freeze."
    assert access_request.closed_by.username == "alice"
    denied = AuditEvent.objects.get(action="request.denied")
    assert denied.detail["slack_user"] == "U0ALICE"
    assert denied.detail["slack_channel"] == CHANNEL
    assert denied.reason == "Not during the freeze."


def test_when_slack_does_not_open_the_deny_form_the_clicker_is_told(world):
    send(click("airlock_deny", world["request"].pk, trigger_id="1.expired.trigger"))
    assert world["slack"].server.views == []
    (text,) = told(world)
    assert "expired_trigger_id" in text
    unchanged(world["request"])


def test_a_deny_without_a_comment_is_answered_with_the_fields_error(world):
    response = send(deny_submission(world["request"].pk, "   "))
    assert response.json() == {
        "response_action": "errors",
        "errors": {"comment": "Say why you deny, so the requester knows."},
    }
    unchanged(world["request"])


def test_the_requesters_own_deny_click_opens_no_modal(world):
    send(click("airlock_deny", world["request"].pk, user="U0DAVE"))
    assert world["slack"].of("views.open") == []
    assert len(told(world, "U0DAVE")) == 1
    unchanged(world["request"])


def test_a_deny_submitted_after_the_request_was_cancelled_is_refused_in_the_modal(world):
    trigger = world["slack"].new_trigger_id()
    send(click("airlock_deny", world["request"].pk, trigger_id=trigger))
    assert len(world["slack"].server.views) == 1
    AccessRequest.objects.filter(pk=world["request"].pk).update(status=Status.CANCELLED)
    response = send(deny_submission(world["request"].pk, "Too late."))
    body = response.json()
    assert body["response_action"] == "errors"
    assert "cancelled" in body["errors"]["comment"]
    world["request"].refresh_from_db()
    assert world["request"].status == Status.CANCELLED
    assert refusals()[0].detail["decision"] == "deny"


def test_a_non_approvers_deny_submission_is_refused(world):
    response = send(deny_submission(world["request"].pk, "Nope nope.", user="U0MALLORY"))
    assert response.json()["response_action"] == "errors"
    unchanged(world["request"])


# -- odd payloads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": "block_actions"}),
        json.dumps({"type": "block_actions", "actions": [{"action_id": "airlock_approve"}]}),
        json.dumps({"type": "block_actions", "user": "U0ALICE", "actions": "x"}),
        json.dumps({"type": "view_submission", "view": {"callback_id": "airlock_deny"}}),
    ],
)
def test_malformed_payloads_are_answered_without_a_500(world, raw):
    response = send(raw)
    assert response.status_code in (200, 400), response.content
    unchanged(world["request"])


@pytest.mark.parametrize("user", ["U0\x00ALICE", "U0 ALICE", "U" * 33, ""])
def test_a_user_that_is_no_slack_id_is_400(world, user):
    response = send(click("airlock_approve", world["request"].pk, user=user))
    assert response.status_code == 400
    assert "Slack user" in response.content.decode()
    unchanged(world["request"])


def test_a_deny_comment_with_a_nul_is_kept_without_it(world):
    response = send(deny_submission(world["request"].pk, "No\x00 way."))
    assert response.json() == {"response_action": "clear"}
    world["request"].refresh_from_db()
    assert world["request"].close_comment == "No way."


def test_a_non_numeric_value_is_told(world):
    assert send(click("airlock_approve", "12; DROP")).status_code == 200
    assert "No request" in told(world)[0]
    unchanged(world["request"])


def test_an_unknown_action_is_ignored(world):
    assert send(click("open_in_admin", world["request"].pk)).status_code == 200
    unchanged(world["request"])
    assert world["slack"].calls == []


def test_no_payload_field_is_400(world):
    response = post_signed(URL, b"nothing=here")
    assert response.status_code == 400
    assert "payload" in response.content.decode()


def test_an_oversized_body_is_413(world):
    body = b"payload=" + b"x" * (70 * 1024)
    assert post_signed(URL, body).status_code == 413


def test_without_a_signing_secret_slack_calls_are_503(world, settings):
    settings.AIRLOCK_SLACK_SIGNING_SECRET = ""
    assert send(click("airlock_approve", world["request"].pk)).status_code == 503
    unchanged(world["request"])


_unique = itertools.count()
_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["block_actions", "view_submission"]) | _json,
    user=_json | st.fixed_dictionaries({"id": _json, "team_id": _json}),
    actions=_json
    | st.lists(st.fixed_dictionaries({"action_id": st.sampled_from(
        ["airlock_approve", "airlock_deny"]) | _json, "value": _json}), max_size=2),
    view=_json
    | st.fixed_dictionaries(
        {"callback_id": st.just("airlock_deny") | _json, "private_metadata": _json,
         "state": _json}
    ),
    channel=_json | st.fixed_dictionaries({"id": _json}),
)
def test_odd_payload_shapes_are_answered_without_a_500(world, kind, user, actions, view, channel):
    payload = {
        "n": next(_unique), "type": kind, "user": user, "team": {"id": TEAM}, "actions": actions,
        "view": view, "channel": channel, "trigger_id": "t",
    }
    response = send(payload)
    assert response.status_code in (200, 400), response.content


# -- at once (PostgreSQL) ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_same_click_twice_at_once_acts_once(world, on_postgres):
    body = interaction_body(click("airlock_approve", world["request"].pk))
    headers = sign(body)
    answers = at_once(lambda: post_signed(URL, body, headers=headers).status_code)
    assert sorted(answers) == [200, 409]
    assert SlackDelivery.objects.count() == 1
    assert world["request"].approvals.count() == 1
    assert AuditEvent.objects.filter(action="request.approval_added").count() == 1


def test_a_slow_slack_holds_the_answer_no_longer_than_the_inline_timeout(world, settings):
    # The refusal's ephemeral message waits on Slack at most INLINE_TIMEOUT_SECONDS: a
    # slower chat.postEphemeral is given up (logged), and the click is still answered.
    world["slack"].server.faults.slow(
        "chat.postEphemeral", delay=slack_views.INLINE_TIMEOUT_SECONDS + 2
    )
    response = send(click("airlock_approve", world["request"].pk, user="U0DAVE"))
    assert response.status_code == 200
    unchanged(world["request"])
    assert refusals()[0].detail["slack_user"] == "U0DAVE"
