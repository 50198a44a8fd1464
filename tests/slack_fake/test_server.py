"""The local Slack over raw HTTP and through integrations.slack.SlackClient."""

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs

import pytest
import requests
from slack_sdk.signature import SignatureVerifier

from integrations.slack import SlackClient, SlackError

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Request 1*"}}
BUTTONS = {
    "type": "actions",
    "elements": [
        {
            "type": "button",
            "action_id": "approve",
            "value": "1",
            "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"},
        }
    ],
}
MODAL = {
    "type": "modal",
    "callback_id": "deny",
    "title": {"type": "plain_text", "text": "Deny"},
    "submit": {"type": "plain_text", "text": "Deny"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "reason"},
        }
    ],
}


def raw(slack, method, *, token="xoxb-local-airlock-bot", json_body=None, form=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{slack.api_url}/{method}", headers=headers, json=json_body, data=form, timeout=5
    )


# --- raw HTTP ---------------------------------------------------------------------------------


def test_post_message_json_keeps_the_message_by_ts(slack):
    answer = raw(
        slack,
        "chat.postMessage",
        json_body={"channel": slack.channel, "text": "t", "blocks": [SECTION]},
    ).json()
    assert answer["ok"] is True and answer["channel"] == slack.channel
    assert answer["message"]["blocks"] == [SECTION]
    assert [m.ts for m in slack.messages(slack.channel)] == [answer["ts"]]


def test_post_message_form_with_blocks_as_a_json_string(slack):
    answer = raw(
        slack,
        "chat.postMessage",
        form={"channel": slack.channel, "text": "t", "blocks": json.dumps([SECTION, BUTTONS])},
    ).json()
    assert answer["ok"] is True
    assert slack.message(slack.channel, answer["ts"]).blocks == [SECTION, BUTTONS]


def test_token_as_a_form_argument_is_accepted(slack):
    answer = raw(
        slack,
        "chat.postMessage",
        token="",
        form={"token": "xoxb-local-airlock-bot", "channel": slack.channel, "text": "t"},
    ).json()
    assert answer["ok"] is True
    assert "token" not in slack.calls[-1].arguments


@pytest.mark.parametrize(("token", "error"), [("", "not_authed"), ("xoxb-forged", "invalid_auth")])
def test_a_call_without_the_bot_token_is_refused(slack, token, error):
    answer = raw(
        slack, "chat.postMessage", token=token, json_body={"channel": slack.channel, "text": "t"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": error}
    assert slack.messages(slack.channel) == []


def test_unknown_channel_and_unknown_method(slack):
    assert (
        raw(slack, "chat.postMessage", json_body={"channel": "C404", "text": "t"}).json()["error"]
        == "channel_not_found"
    )
    assert raw(slack, "chat.delete", json_body={}).json()["error"] == "unknown_method"


def test_no_text_and_no_blocks_is_refused(slack):
    answer = raw(slack, "chat.postMessage", json_body={"channel": slack.channel}).json()
    assert answer["error"] == "no_text"


@pytest.mark.parametrize(
    "blocks",
    [
        {"type": "section"},
        ["not an object"],
        [{"type": "carousel"}],
        [{"type": "section", "text": {"type": "markdown", "text": "x"}}],
        [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
        [
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "A"}}],
            }
        ],
        [{"type": "actions", "elements": []}],
    ],
)
def test_malformed_blocks_are_invalid_blocks(slack, blocks):
    answer = raw(
        slack,
        "chat.postMessage",
        json_body={"channel": slack.channel, "text": "t", "blocks": blocks},
    ).json()
    assert answer["ok"] is False and answer["error"] == "invalid_blocks"
    assert slack.messages(slack.channel) == []


def test_every_call_is_recorded_with_its_arguments_and_answer(slack):
    before = time.time()
    raw(slack, "chat.postMessage", json_body={"channel": "C404", "text": "t"})
    (call,) = slack.calls_to("chat.postMessage")
    assert call.arguments == {"channel": "C404", "text": "t"}
    assert call.error == "channel_not_found" and call.status == 200
    assert call.token == "xoxb-local-airlock-bot" and call.at >= before


# --- through SlackClient ----------------------------------------------------------------------


def test_client_posts_then_updates_in_place(slack):
    client = SlackClient()
    posted = client.post_message(channel=slack.channel, text="pending", blocks=[SECTION, BUTTONS])
    updated = client.update_message(
        channel=slack.channel, ts=posted["ts"], text="approved", blocks=[SECTION]
    )
    assert updated["ts"] == posted["ts"]
    (message,) = slack.messages(slack.channel)
    assert (message.text, message.blocks) == ("approved", [SECTION])
    assert message.edits == [{"text": "pending", "blocks": [SECTION, BUTTONS]}]
    assert slack.calls_to("chat.update")[0].arguments["ts"] == posted["ts"]


def test_client_update_of_an_unknown_ts_is_message_not_found(slack):
    with pytest.raises(SlackError, match="message_not_found") as raised:
        SlackClient().update_message(channel=slack.channel, ts="1.000009", text="x", blocks=[])
    assert raised.value.transient is False


def test_client_ephemeral_reaches_only_that_user(slack):
    answer = SlackClient().post_ephemeral(channel=slack.channel, user="U1", text="not yours")
    assert answer["ok"] is True and answer["message_ts"]
    assert [m["text"] for m in slack.ephemeral_for("U1")] == ["not yours"]
    assert slack.ephemeral_for("U2") == [] and slack.messages(slack.channel) == []


def test_client_opens_a_view_once_per_trigger(slack):
    trigger = slack.new_trigger_id()
    opened = SlackClient().open_view(trigger_id=trigger, view=MODAL)
    assert opened["view"]["callback_id"] == "deny" and opened["view"]["id"]
    assert slack.views[0]["blocks"] == MODAL["blocks"]
    with pytest.raises(SlackError, match="exchanged_trigger_id"):
        SlackClient().open_view(trigger_id=trigger, view=MODAL)


def test_client_unknown_or_expired_trigger(slack):
    with pytest.raises(SlackError, match="expired_trigger_id") as raised:
        SlackClient().open_view(trigger_id="1.2.unknown", view=MODAL)
    assert raised.value.transient is False
    trigger = slack.new_trigger_id()
    slack.expire_trigger_id(trigger)
    with pytest.raises(SlackError, match="expired_trigger_id"):
        SlackClient().open_view(trigger_id=trigger, view=MODAL)
    assert slack.views == []


def test_client_malformed_view_is_invalid_arguments(slack):
    with pytest.raises(SlackError, match="invalid_arguments"):
        SlackClient().open_view(trigger_id=slack.new_trigger_id(), view={"type": "modal"})


def test_client_blocks_error_is_permanent(slack):
    with pytest.raises(SlackError, match="invalid_blocks") as raised:
        SlackClient().post_message(channel=slack.channel, text="t", blocks=[{"type": "nope"}])
    assert raised.value.transient is False


def test_client_wrong_token_is_invalid_auth(slack):
    with pytest.raises(SlackError, match="invalid_auth") as raised:
        SlackClient(token="xoxb-revoked").post_message(channel=slack.channel, text="t", blocks=[])
    assert raised.value.transient is False


# --- faults -----------------------------------------------------------------------------------


def test_429_gives_retry_after(slack):
    slack.faults.rate_limited("chat.postMessage", retry_after=17)
    with pytest.raises(SlackError) as raised:
        SlackClient().post_message(channel=slack.channel, text="t", blocks=[])
    assert (raised.value.transient, raised.value.retry_after) == (True, 17)
    assert len(slack.calls_to("chat.postMessage")) == 1  # no retry inside the client
    assert slack.messages(slack.channel) == []
    assert SlackClient().post_message(channel=slack.channel, text="t", blocks=[])["ok"]


def test_429_with_a_lowercase_retry_after_header(slack):
    slack.faults.add(
        "POST",
        "/chat.update",
        429,
        body={"ok": False, "error": "ratelimited"},
        headers={"retry-after": "3"},
    )
    with pytest.raises(SlackError) as raised:
        SlackClient().update_message(channel=slack.channel, ts="1.1", text="t", blocks=[])
    assert (raised.value.transient, raised.value.retry_after) == (True, 3)


def test_slack_level_ratelimited_is_transient(slack):
    slack.faults.slack_error("chat.postMessage", "ratelimited")
    with pytest.raises(SlackError, match="ratelimited") as raised:
        SlackClient().post_message(channel=slack.channel, text="t", blocks=[])
    assert (raised.value.transient, raised.value.retry_after) == (True, None)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_with_a_non_json_body_is_transient(slack, status):
    slack.faults.server_error("views.open", status=status)
    with pytest.raises(SlackError, match=f"HTTP {status}") as raised:
        SlackClient().open_view(trigger_id=slack.new_trigger_id(), view=MODAL)
    assert raised.value.transient is True
    assert len(slack.calls_to("views.open")) == 1  # slack_sdk's own retries are off


def test_a_slow_answer_past_the_client_timeout_is_transient(slack):
    slack.faults.slow("chat.postMessage", delay=1.0)
    with pytest.raises(SlackError, match="could not be reached") as raised:
        SlackClient(timeout=0.2).post_message(channel=slack.channel, text="t", blocks=[])
    assert raised.value.transient is True


def test_unreachable_slack_is_transient(slack, settings):
    settings.SLACK_API_URL = "http://127.0.0.1:9/api"
    with pytest.raises(SlackError, match="could not be reached") as raised:
        SlackClient().post_message(channel=slack.channel, text="t", blocks=[])
    assert raised.value.transient is True


# --- users.info -------------------------------------------------------------------------------


def test_users_info_answers_an_added_user_in_slacks_shape(slack):
    slack.add_user("U0MALLORY", "mallory", "Mallory Doe", "mal")
    user = SlackClient().user_info("U0MALLORY")["user"]
    assert (user["id"], user["team_id"], user["name"]) == ("U0MALLORY", slack.team_id, "mallory")
    assert (user["real_name"], user["deleted"], user["is_bot"]) == ("Mallory Doe", False, False)
    assert user["profile"] | {"real_name": "Mallory Doe", "display_name": "mal"} == user["profile"]
    [call] = slack.calls_to("users.info")
    assert call.arguments == {"user": "U0MALLORY"} and call.token == "xoxb-local-airlock-bot"


def test_users_info_by_form_post_and_for_deleted_and_bot_users(slack):
    slack.add_user("U0GONE", "gone", "Gone Person", deleted=True)
    slack.add_user("B0BOT", "robot", is_bot=True)
    gone = raw(slack, "users.info", form={"user": "U0GONE"}).json()["user"]
    assert (gone["deleted"], gone["is_bot"]) == (True, False)
    bot = raw(slack, "users.info", form={"user": "B0BOT"}).json()["user"]
    assert (bot["deleted"], bot["is_bot"]) == (False, True)


def test_users_info_for_an_unknown_user_is_user_not_found_and_not_transient(slack):
    with pytest.raises(SlackError, match="user_not_found") as raised:
        SlackClient().user_info("U0NOBODY")
    assert raised.value.transient is False
    assert raw(slack, "users.info", form={}).json()["error"] == "invalid_arguments"
    assert raw(slack, "users.info", token="", form={"user": "U0NOBODY"}).json() == {
        "ok": False,
        "error": "not_authed",
    }


def test_faults_reach_users_info_although_slack_sdk_gets_it(slack):
    slack.add_user("U0ALICE", "alice", "Alice")
    slack.faults.server_error("users.info")
    with pytest.raises(SlackError, match="HTTP 503") as raised:
        SlackClient().user_info("U0ALICE")
    assert raised.value.transient is True
    slack.faults.slow("users.*", delay=1.0)
    with pytest.raises(SlackError, match="could not be reached"):
        SlackClient(timeout=0.2).user_info("U0ALICE")
    assert SlackClient().user_info("U0ALICE")["user"]["name"] == "alice"  # faults used up


def test_only_reads_answer_a_get(slack):
    answer = requests.get(
        f"{slack.api_url}/chat.postMessage",
        params={"channel": slack.channel, "text": "t"},
        headers={"Authorization": "Bearer xoxb-local-airlock-bot"},
        timeout=5,
    )
    assert (answer.status_code, answer.json()["error"]) == (405, "method_not_allowed")
    assert slack.messages(slack.channel) == []


# --- what Slack POSTs to Airlock --------------------------------------------------------------


def _valid(secret, signed):
    return SignatureVerifier(secret).is_valid(signed.body, signed.timestamp, signed.signature)


def test_block_actions_is_signed_as_slack_documents(slack, settings):
    signed = slack.block_actions(
        user="U1", action_id="approve", value="42", channel=slack.channel, ts="1.000001"
    )
    base = f"v0:{signed.timestamp}:{signed.body}".encode()
    expected = hmac.new(settings.AIRLOCK_SLACK_SIGNING_SECRET.encode(), base, hashlib.sha256)
    assert signed.headers["X-Slack-Signature"] == "v0=" + expected.hexdigest()
    assert _valid(settings.AIRLOCK_SLACK_SIGNING_SECRET, signed)
    payload = json.loads(parse_qs(signed.body)["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"] == {**payload["user"], "id": "U1", "team_id": slack.team_id}
    assert payload["team"]["id"] == slack.team_id
    assert payload["channel"]["id"] == slack.channel and payload["message"]["ts"] == "1.000001"
    assert payload["actions"][0] | {"action_id": "approve", "value": "42"} == payload["actions"][0]
    assert payload["response_url"].startswith("https://")
    # the trigger it carries opens a view
    assert SlackClient().open_view(trigger_id=payload["trigger_id"], view=MODAL)["ok"]


def test_old_and_forged_requests_fail_slack_sdks_own_check(slack, settings):
    secret = settings.AIRLOCK_SLACK_SIGNING_SECRET
    old = slack.command(user="U1", text="link", timestamp=int(time.time()) - 600)
    forged = slack.command(user="U1", text="link", secret="not-the-secret")
    assert not _valid(secret, old)  # older than five minutes
    assert not _valid(secret, forged)
    assert old.timestamp == str(int(old.timestamp)) and int(old.timestamp) < time.time() - 500


def test_command_fields(slack):
    signed = slack.command(user="U1", text="link ABC123")
    fields = {k: v[0] for k, v in parse_qs(signed.body, keep_blank_values=True).items()}
    assert fields["command"] == "/airlock" and fields["text"] == "link ABC123"
    assert (fields["user_id"], fields["team_id"], fields["channel_id"]) == (
        "U1",
        slack.team_id,
        slack.channel,
    )
    assert fields["trigger_id"] in slack.trigger_ids and fields["response_url"]
    assert signed.payload == fields


def test_view_submission_payload(slack, settings):
    values = {"reason": {"reason": {"type": "plain_text_input", "value": "no"}}}
    signed = slack.view_submission(
        user="U1", callback_id="deny", values=values, private_metadata="42"
    )
    payload = json.loads(parse_qs(signed.body)["payload"][0])
    assert payload["type"] == "view_submission"
    assert payload["view"]["state"]["values"] == values
    assert payload["view"]["private_metadata"] == "42"
    assert _valid(settings.AIRLOCK_SLACK_SIGNING_SECRET, signed)
