"""The request card in Slack: posted once per approver group's channel when a request is
routed, updated in place (same ts) whenever the request changes, wherever it was changed;
spoken to over real HTTP, to the local Slack (tests/slack_fake)."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from grants.reconciler import reconcile_environment
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_deny,
    access_request_end_early,
    access_requests_time_out_overdue,
)
from requests_app.slack import slack_cards_due, slack_cards_sync
from requests_app.slack_models import SlackCard, SlackLink
from requests_app.tasks import slack_card_sync, slack_cards_sweep
from tests.fixtures import token_client
from tests.requests_app.factories import (
    AccessRequestFactory,
    ApproverGroupFactory,
    UserFactory,
    approver_setup,
)
from tests.requests_app.lifecycle import file_request, move_expiry

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
OPS, SECURITY = "C0OPS", "C0SECURITY"
HOSTILE = "Deploy <!channel> now & <https://evil.example|click here> <@U0BOSS> > done"


@pytest.fixture
def slack_api(slack):
    """The local Slack (Airlock pointed at it), with the approvers' channels."""
    slack.add_channel(OPS)
    slack.add_channel(SECURITY)
    return slack


@pytest.fixture
def routed():
    """A policy needing two approvals, routed to two groups with a channel each."""
    policy, group, users = approver_setup(approvers=("alice", "bob", "carol"))
    group.slack_channel = OPS
    group.save()
    other = ApproverGroupFactory(members=["erin"], slack_channel=SECURITY)
    users["erin"] = UserFactory(username="erin")
    policy.approver_groups.add(other)
    return policy, users


@pytest.fixture
def synced(eager_celery, django_capture_on_commit_callbacks):
    """Run an action, then what it enqueued after its commit (tasks run where sent)."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            result = action()
        return result

    return run


def card(slack, channel=OPS):
    [message] = slack.messages(channel)
    return message


def shown(message) -> str:
    """Everything a card's blocks say, as one string."""
    return json.dumps(message.blocks, ensure_ascii=False)


def buttons(message) -> list[dict]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def refresh(access_request):
    access_request.refresh_from_db()
    return access_request


# --- the card ----------------------------------------------------------------------------------


def test_a_routed_request_posts_one_card_per_channel_with_its_fields_and_buttons(
    slack_api, routed, synced
):
    access_request = synced(lambda: file_request("dave", duration_minutes=90))

    assert len(slack_api.calls_to("chat.postMessage")) == 2
    for channel in (OPS, SECURITY):
        message = card(slack_api, channel)
        text = shown(message)
        assert f"Access request #{access_request.pk}" in text
        assert "dave" in text and "acme/api" in text and "production" in text
        assert "reviewer" in text and "1h 30m" in text
        assert ">Deploying the hotfix for INC-1234 to production" in text
        assert "*Approvals*: 0 of 2" in text
        assert "*May still approve*: alice, bob, carol, erin" in text
        assert [(b["action_id"], b["style"], b["value"]) for b in buttons(message)] == [
            ("airlock_approve", "primary", str(access_request.pk)),
            ("airlock_deny", "danger", str(access_request.pk)),
        ]
        assert "dave" in message.text and "pending" in message.text
    cards = SlackCard.objects.filter(request=access_request).order_by("channel")
    assert [(c.channel, c.ts) for c in cards] == [
        (OPS, card(slack_api, OPS).ts), (SECURITY, card(slack_api, SECURITY).ts)
    ]
    assert all(c.posted_at and c.shown_digest and not c.last_error for c in cards)


def test_a_hostile_reason_is_quoted_and_escaped(slack_api, routed, synced):
    synced(lambda: file_request("dave", reason=HOSTILE + "\nsecond line <!here>"))

    text = card(slack_api).blocks
    [reason] = [b["text"]["text"] for b in text if "*Reason*" in b.get("text", {}).get("text", "")]
    assert reason == (
        "*Reason*\n>Deploy &lt;!channel&gt; now &amp; &lt;https://evil.example|click here&gt; "
        "&lt;@U0BOSS&gt; &gt; done\n>second line &lt;!here&gt;"
    )
    assert "<!channel>" not in shown(card(slack_api)) and "<!here>" not in shown(card(slack_api))


def test_a_token_request_shows_its_permissions(slack_api, synced):
    policy, group, _ = approver_setup(
        access_kinds=["token"], token_permissions={"contents": "write"}, approvals_required=1
    )
    group.slack_channel = OPS
    group.save()
    synced(lambda: file_request("dave", access="token"))
    assert "*Token permissions*" in shown(card(slack_api))
    assert "contents" in shown(card(slack_api))


def test_slack_approvals_off_shows_no_buttons_but_the_admin_link(slack_api, routed, synced):
    policy, _ = routed
    policy.slack_approvals = False
    policy.save()
    access_request = synced(lambda: file_request("dave"))

    [link] = buttons(card(slack_api))
    assert link["action_id"] == "airlock_open"
    assert link["url"].endswith(
        reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    )
    assert "airlock_approve" not in shown(card(slack_api))


# --- following the request ---------------------------------------------------------------------


def test_an_approval_in_the_admin_updates_the_same_message(
    slack_api, routed, synced, client
):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    ts = card(slack_api).ts
    client.force_login(users["alice"])

    synced(lambda: client.post(
        reverse("admin:requests_app_accessrequest_approve", args=[access_request.pk]),
        {"post": "yes", "comment": ""},
    ))

    message = card(slack_api)
    assert message.ts == ts and len(message.edits) == 1
    assert "*Approvals*: 1 of 2" in shown(message) and "alice" in shown(message)
    assert "*May still approve*: bob, carol, erin" in shown(message)
    assert buttons(message)[0]["action_id"] == "airlock_approve"  # still pending


def test_the_deciding_approval_over_the_api_removes_the_buttons(slack_api, routed, synced):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    ts = card(slack_api, SECURITY).ts
    url = f"/api/v1/requests/{access_request.pk}/approve"

    synced(lambda: token_client(users["alice"]).post(url, {}, format="json"))
    synced(lambda: token_client(users["erin"]).post(url, {}, format="json"))

    # Approved, then (dry run, run where sent) active at once: the card says both.
    assert refresh(access_request).status == Status.ACTIVE
    for channel in (OPS, SECURITY):
        message = card(slack_api, channel)
        assert "*active* until" in shown(message)
        assert "approved by alice, erin" in shown(message)
        assert "airlock_approve" not in shown(message)
        assert [b["action_id"] for b in buttons(message)] == ["airlock_open"]
    assert card(slack_api, SECURITY).ts == ts
    assert len(slack_api.calls_to("chat.postMessage")) == 2


def test_a_denial_shows_who_and_their_comment(slack_api, routed, synced):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    synced(lambda: access_request_deny(
        access_request=access_request, approver=users["bob"], comment="Not during <!here> freeze"
    ))
    text = shown(card(slack_api))
    assert "*denied* by bob" in text and ">Not during &lt;!here&gt; freeze" in text
    assert "airlock_deny" not in text


def test_a_cancel_updates_the_card(slack_api, routed, synced):
    access_request = synced(lambda: file_request("dave"))
    synced(lambda: access_request_cancel(access_request=access_request,
                                         user=access_request.requester))
    assert "*cancelled* by dave" in shown(card(slack_api))
    assert "airlock_approve" not in shown(card(slack_api))


def test_a_time_out_updates_the_card(slack_api, routed, synced):
    access_request = synced(lambda: file_request("dave"))
    AccessRequest.objects.filter(pk=access_request.pk).update(
        pending_until=timezone.now() - timedelta(seconds=1)
    )
    assert synced(access_requests_time_out_overdue) == 1
    assert "*timed out*" in shown(card(slack_api))
    assert "airlock_approve" not in shown(card(slack_api))


def test_approval_activation_and_expiry_update_the_card(slack_api, gh, synced):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    policy, group, users = approver_setup(approvals_required=1)
    group.slack_channel = OPS
    group.save()
    access_request = synced(lambda: file_request("dave"))

    # The approval commits, the card says approved; the engine (run where it is sent)
    # puts the access on GitHub, and the card says active.
    synced(lambda: access_request_approve(access_request=access_request,
                                          approver=users["alice"]))
    assert refresh(access_request).status == Status.ACTIVE
    message = card(slack_api)
    [pending, approved] = [json.dumps(edit["blocks"]) for edit in message.edits]
    assert "airlock_approve" in pending
    assert "*approved* by alice" in approved and "airlock_approve" not in approved
    assert "*active* until" in shown(message)

    synced(lambda: reconcile_environment(move_expiry(access_request).grant.target_id))
    assert refresh(access_request).status == Status.EXPIRED
    assert "*expired* at" in shown(card(slack_api))
    assert len(card(slack_api).edits) == 3 and len(slack_api.calls_to("chat.postMessage")) == 1


def test_an_early_revoke_updates_the_card(slack_api, gh, synced):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    policy, group, users = approver_setup(approvals_required=1)
    group.slack_channel = OPS
    group.save()
    access_request = synced(lambda: file_request("dave"))
    synced(lambda: access_request_approve(access_request=access_request,
                                          approver=users["alice"]))
    synced(lambda: access_request_end_early(
        access_request=refresh(access_request), user=access_request.requester,
        comment="done early",
    ))
    assert "*revoked* by dave" in shown(card(slack_api))
    assert ">done early" in shown(card(slack_api))


def test_an_unchanged_request_is_not_sent_again(slack_api, routed, synced):
    access_request = synced(lambda: file_request("dave"))
    slack_cards_sync(access_request.pk)
    assert slack_api.calls_to("chat.update") == []


def test_break_glass_and_auto_approved_requests_post_no_card(slack_api, synced):
    _, group, _ = approver_setup(approvals_required=0)
    group.slack_channel = OPS
    group.save()
    synced(lambda: file_request("dave"))
    assert slack_api.calls_to("chat.postMessage") == []


# --- Slack errors ------------------------------------------------------------------------------


def test_a_429_is_retried_after_slacks_retry_after(slack_api, routed, eager_celery, caplog):
    access_request = file_request("dave")  # its commit's callbacks are not run here
    slack_api.faults.rate_limited("chat.postMessage", retry_after=7)

    result = slack_card_sync.apply(kwargs={"request_id": access_request.pk})

    assert result.state == "SUCCESS"
    # The countdown the task asked for, as Celery reports it: Slack's Retry-After.
    retries = [r.getMessage() for r in caplog.records if r.name == "celery.app.trace"
               and "retry" in r.getMessage()]
    assert len(retries) == 1 and "Retry in 7s" in retries[0]
    # Celery ran the retry where it was sent: the card is posted once, in each channel.
    assert [c.status for c in slack_api.calls_to("chat.postMessage")].count(200) == 2
    assert len(slack_api.messages(OPS)) == 1 and len(slack_api.messages(SECURITY)) == 1


def test_a_permanent_error_is_recorded_and_the_decision_stands(slack_api, routed, synced):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    slack_api.faults.slack_error("chat.update", error="message_not_found", times=None)

    synced(lambda: access_request_deny(access_request=access_request, approver=users["bob"]))

    assert refresh(access_request).status == Status.DENIED
    cards = SlackCard.objects.filter(request=access_request)
    assert {c.last_error for c in cards} == {"Slack chat_update failed: message_not_found"}
    assert len(slack_api.calls_to("chat.update")) == 2  # tried once each: not retried


def test_no_token_no_calls(slack_api, routed, synced, settings):
    settings.AIRLOCK_SLACK_BOT_TOKEN = ""
    synced(lambda: file_request("dave"))
    assert slack_api.calls == []
    assert not SlackCard.objects.exists()


# --- two syncs at once -------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_syncs_at_once_post_one_card(slack_api, routed, settings, on_postgres):
    token = settings.AIRLOCK_SLACK_BOT_TOKEN
    settings.AIRLOCK_SLACK_BOT_TOKEN = ""  # filed without enqueuing: the two syncs race
    access_request = file_request("dave")
    settings.AIRLOCK_SLACK_BOT_TOKEN = token
    slack_api.faults.slow("chat.postMessage", delay=0.3)  # the first holds its card's lock
    barrier = threading.Barrier(2)
    errors = []

    def sync():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            slack_cards_sync(access_request.pk)
        except Exception as exc:  # reported to the assertion below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(slack_api.messages(OPS)) == 1 and len(slack_api.messages(SECURITY)) == 1
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    assert SlackCard.objects.filter(request=access_request).exclude(ts="").count() == 2
    assert connection.vendor == "postgresql"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_decision_synced_while_an_older_update_is_in_flight_is_what_the_card_ends_on(
    slack_api, routed, settings, on_postgres
):
    # No lock is held across the Slack call: a second sync finds the card claimed, asks for
    # another round and leaves; the claimer renders the request again and sends the newer.
    _, users = routed
    token = settings.AIRLOCK_SLACK_BOT_TOKEN

    def quietly(action):  # a change whose own after-commit sync is not sent
        settings.AIRLOCK_SLACK_BOT_TOKEN = ""
        try:
            return action()
        finally:
            settings.AIRLOCK_SLACK_BOT_TOKEN = token

    access_request = quietly(lambda: file_request("dave"))
    slack_cards_sync(access_request.pk)
    quietly(lambda: access_request_approve(access_request=access_request,
                                           approver=users["alice"]))
    slack_api.faults.slow("chat.update", delay=1.0)  # the first update holds its claim
    errors = []

    def sync():
        from django.db import connection as thread_connection

        try:
            slack_cards_sync(access_request.pk)
        except Exception as exc:  # reported to the assertion below
            errors.append(exc)
        finally:
            thread_connection.close()

    in_flight = threading.Thread(target=sync)
    in_flight.start()
    claimed = SlackCard.objects.filter(request=access_request).exclude(claimed_until=None)
    for _ in range(200):  # until the thread has claimed its first card
        if claimed.exists():
            break
        threading.Event().wait(0.01)
    quietly(lambda: access_request_deny(access_request=access_request,
                                        approver=users["bob"], comment="Not now"))
    slack_cards_sync(access_request.pk)
    in_flight.join(timeout=60)

    assert errors == []
    for channel in (OPS, SECURITY):
        assert "*denied* by bob" in shown(card(slack_api, channel))
    # In OPS the approval's update went first (in flight), then the claimer's second round.
    assert len(card(slack_api, OPS).edits) == 2
    cards = SlackCard.objects.filter(request=access_request)
    assert set(cards.values_list("shown_status", "claimed_until", "resync")) == {
        (Status.DENIED, None, False)
    }


def test_a_run_bound_request_shows_its_workflow_run_with_links(slack_api, routed):
    policy, _ = routed
    sha = "0123456789abcdef0123456789abcdef01234567"
    access_request = AccessRequestFactory(
        requester=UserFactory(username="dave"), policy=policy, run_id=1234, run_attempt=2,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main", run_sha=sha,
    )
    SlackCard.objects.create(request=access_request, channel=OPS)

    slack_cards_sync(access_request.pk)

    text = shown(card(slack_api))
    assert "*Workflow*: .github/workflows/deploy.yml" in text
    assert "*Ref*: refs/heads/main" in text
    assert access_request.run_commit_url.endswith(f"/acme/api/commit/{sha}")
    assert f"*Commit*: <{access_request.run_commit_url}|0123456>" in text
    assert access_request.run_url.endswith("/acme/api/actions/runs/1234")
    assert f"*Run*: <{access_request.run_url}|Run 1234, attempt 2>" in text
    assert "*Ends* when the run completes or releases it" in text


def test_a_failed_grant_updates_the_card_with_githubs_error(slack_api, gh, synced):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    _, group, users = approver_setup(approvals_required=1)
    group.slack_channel = OPS
    group.save()
    access_request = synced(lambda: file_request("dave"))
    gh.faults.add("PUT", "/repos/*/*/environments/*", status=422, times=None,
                  body={"message": "Validation <!channel> failed"})

    synced(lambda: access_request_approve(access_request=access_request,
                                          approver=users["alice"]))

    assert refresh(access_request).status == Status.FAILED
    text = shown(card(slack_api))
    assert "*failed*" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
    gh.faults.clear()


def test_a_signed_click_in_slack_updates_the_same_card(slack_api, routed, synced, client):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    message = card(slack_api)
    SlackLink.objects.create(user=users["alice"], team_id=slack_api.team_id,
                             slack_user_id="U0ALICE")
    clicked = slack_api.block_actions(user="U0ALICE", action_id="airlock_approve",
                                      value=str(access_request.pk), channel=OPS, ts=message.ts)

    assert synced(lambda: clicked.post(client, "/slack/interactions")).status_code == 200

    after = card(slack_api)
    assert after.ts == message.ts and "*Approvals*: 1 of 2" in shown(after)
    assert "• alice," in shown(after) and "*May still approve*: bob, carol, erin" in shown(after)


# --- the sweep: what a lost message missed ----------------------------------------------------


def test_the_sweep_posts_the_card_of_a_request_whose_message_was_lost(slack_api, routed):
    # No on-commit callbacks run here: the message the filing sent never reached a worker.
    access_request = file_request("dave")
    assert slack_api.messages(OPS) == []

    slack_cards_sweep()

    assert f"Access request #{access_request.pk}" in shown(card(slack_api, OPS))
    assert len(slack_api.calls_to("chat.postMessage")) == 2  # both groups' channels


def test_the_sweep_updates_a_card_the_decision_message_never_reached(
    slack_api, routed, synced
):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    ts = card(slack_api).ts
    access_request_deny(access_request=access_request, approver=users["alice"],
                        comment="Not during the freeze")  # its message lost

    slack_cards_sweep()

    message = card(slack_api)
    assert message.ts == ts and "*denied* by alice" in shown(message)
    assert "airlock_approve" not in shown(message) and "airlock_deny" not in shown(message)
    assert set(SlackCard.objects.values_list("shown_status", flat=True)) == {Status.DENIED}


def test_a_sweep_over_cards_that_show_their_requests_calls_slack_for_nothing(
    slack_api, routed, synced
):
    _, users = routed
    pending = synced(lambda: file_request("dave"))
    closed = synced(lambda: file_request("frank"))
    synced(lambda: access_request_cancel(access_request=closed, user=closed.requester))
    calls = len(slack_api.calls)

    slack_cards_sweep()

    assert len(slack_api.calls) == calls
    # The closed request's cards show it as it is: the sweep no longer even looks at them.
    assert slack_cards_due() == [pending.pk]


def test_the_sweep_leaves_the_rest_to_the_next_one_when_slack_says_wait(
    slack_api, routed, caplog
):
    first, second = file_request("dave"), file_request("frank")
    slack_api.faults.rate_limited("chat.postMessage", retry_after=30)

    slack_cards_sweep()

    assert f"Slack card of request #{first.pk} not synced by the sweep" in caplog.text
    assert not SlackCard.objects.filter(request=second).exists()  # not even tried
    slack_cards_sweep()
    assert len(slack_api.messages(OPS)) == 2 and len(slack_api.messages(SECURITY)) == 2
    assert not SlackCard.objects.filter(ts="").exists()


def test_a_stale_card_behind_a_sweeps_worth_of_up_to_date_ones_is_still_swept(
    slack_api, routed, synced
):
    # The sweep looks at most `limit` requests (500) and every pending or open request with
    # a card counts, stale or not. Taking the lowest ids each time means that once as many
    # open requests as the limit exist, a newer card whose message was lost is never
    # brought up to date by any sweep. Here the limit is 2, with two up-to-date cards.
    _, users = routed
    synced(lambda: file_request("dave"))
    synced(lambda: file_request("frank"))
    newest = synced(lambda: file_request("grace"))
    access_request_deny(access_request=newest, approver=users["alice"],
                        comment="Not during the freeze")  # its message lost

    for _sweep in range(2):  # what two sweeps do, each with the limit of 2
        for request_id in slack_cards_due(limit=2):
            slack_cards_sync(request_id)

    assert "*denied* by alice" in shown(card_of(slack_api, newest))
    assert set(SlackCard.objects.filter(request=newest).values_list("shown_status", flat=True)) == {
        Status.DENIED
    }


def card_of(slack, access_request, channel=OPS):
    [message] = [
        message for message in slack.messages(channel)
        if f"Access request #{access_request.pk}" in shown(message)
    ]
    return message


def test_a_sweep_during_a_slack_outage_stops_at_the_first_card_slack_failed(
    slack_api, routed, caplog
):
    # The sweep shares the airlock.notify workers with audit forwarding and the emails.
    # A 429 ends it early, but any other transient error (a 5xx, a timeout of 10 s each)
    # moves on to the next of up to 500 requests and their channels: during an outage
    # one sweep keeps a worker busy for hours, and the next beat round takes the other.
    first, second, third = file_request("dave"), file_request("frank"), file_request("grace")
    slack_api.faults.server_error("chat.postMessage", times=None)

    slack_cards_sweep()

    assert f"Slack card of request #{first.pk} not synced by the sweep" in caplog.text
    # As after a 429: the rest is left to the next sweep, not even tried.
    assert not SlackCard.objects.filter(request__in=[second, third]).exists()
    assert len(slack_api.calls_to("chat.postMessage")) == 2  # the first's two channels


def test_successive_sweeps_go_round_every_open_request_under_the_limit(
    slack_api, routed, synced
):
    # Up-to-date cards are looked at least recently checked first: with a limit of 2 and
    # three open requests, the second sweep looks at the one the first did not reach.
    first, second, third = (synced(lambda who=who: file_request(who))
                            for who in ("dave", "frank", "grace"))
    calls = len(slack_api.calls)

    looked = []
    for _sweep in range(2):
        due = slack_cards_due(limit=2)
        looked.append(due)
        for request_id in due:
            slack_cards_sync(request_id)

    assert set(looked[0]) | set(looked[1]) == {first.pk, second.pk, third.pk}
    assert len(slack_api.calls) == calls  # all up to date: no Slack call for any


def test_a_pending_request_missing_a_channels_card_comes_before_the_up_to_date_ones(
    slack_api, routed, synced
):
    synced(lambda: file_request("dave"))
    synced(lambda: file_request("frank"))
    newest = synced(lambda: file_request("grace"))
    # No card of it in one channel (as if that group's channel were set after the filing).
    SlackCard.objects.filter(request=newest, channel=SECURITY).delete()

    assert slack_cards_due(limit=1) == [newest.pk]
    slack_cards_sync(newest.pk)
    assert SlackCard.objects.get(request=newest, channel=SECURITY).ts


def test_the_due_selection_is_one_query_however_many_requests(
    slack_api, routed, synced, django_assert_max_num_queries
):
    _, users = routed
    for who in ("dave", "frank", "grace", "heidi"):
        access_request = synced(lambda who=who: file_request(who))
        access_request_deny(access_request=access_request, approver=users["alice"])
    file_request("ivan")  # never posted

    with django_assert_max_num_queries(1):
        due = slack_cards_due()
    assert len(due) == 5


def test_a_sync_finding_the_card_claimed_calls_slack_for_nothing_and_asks_for_another_round(
    slack_api, routed, synced
):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    # Another sync is calling Slack for the card (a claim that has not run out).
    SlackCard.objects.filter(request=access_request).update(
        claimed_until=timezone.now() + timedelta(seconds=30)
    )
    calls = len(slack_api.calls)

    synced(lambda: access_request_deny(access_request=access_request, approver=users["bob"]))

    assert len(slack_api.calls) == calls
    assert set(SlackCard.objects.values_list("resync", flat=True)) == {True}


def test_a_claim_left_by_a_killed_worker_runs_out_and_the_card_is_synced(
    slack_api, routed, synced
):
    _, users = routed
    access_request = synced(lambda: file_request("dave"))
    SlackCard.objects.filter(request=access_request).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )

    synced(lambda: access_request_deny(access_request=access_request, approver=users["bob"]))

    assert "*denied* by bob" in shown(card(slack_api, OPS))
    assert set(SlackCard.objects.values_list("claimed_until", "shown_status")) == {
        (None, Status.DENIED)
    }


def test_a_sweep_stopped_by_an_outage_says_what_is_left_and_releases_its_claims(
    slack_api, routed, caplog
):
    first, _second = file_request("dave"), file_request("frank")
    slack_api.faults.server_error("chat.postMessage", times=None)

    slack_cards_sweep()

    assert (f"Slack card of request #{first.pk} not synced by the sweep" in caplog.text
            and "1 requests left for the next sweep" in caplog.text)
    # The claims were released: the next sweep, once Slack is back, posts every card.
    slack_api.faults.clear()
    slack_cards_sweep()
    assert len(slack_api.messages(OPS)) == 2 and len(slack_api.messages(SECURITY)) == 2
    assert not SlackCard.objects.exclude(claimed_until=None).exists()


def test_a_card_slack_failed_goes_behind_the_other_stale_ones_for_the_next_sweep(
    slack_api, routed, synced
):
    # Each sweep stops at the first request Slack failed: were that request first again
    # every time, a card Slack keeps refusing would hold up every other stale one.
    _, users = routed
    first = synced(lambda: file_request("dave"))
    second = synced(lambda: file_request("frank"))
    for access_request in (first, second):
        access_request_deny(access_request=access_request, approver=users["alice"])  # lost
    assert slack_cards_due() == [first.pk, second.pk]
    slack_api.faults.server_error("chat.update", times=None)

    slack_cards_sweep()

    assert slack_cards_due() == [second.pk, first.pk]
    assert set(SlackCard.objects.filter(request=first).values_list("resync", flat=True)) == {
        True
    }
    slack_api.faults.clear()
    slack_cards_sweep()
    assert "*denied* by alice" in shown(card_of(slack_api, first))
    assert "*denied* by alice" in shown(card_of(slack_api, second))
    assert slack_cards_due() == []
