"""Linking a Slack account: `/airlock link` (POST /slack/commands, signed) hands out a
one-time link; opening it signed in and confirming links that Slack user; the account's
Slack page shows the links and removes them."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from requests_app.slack_models import SlackLink, SlackLinkCode
from tests.requests_app.factories import UserFactory
from tests.requests_app.slack_helpers import (
    TEAM,
    command_body,
    post_signed,
    sign,
    slack_api,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.django_db
URL = "/slack/commands"
CONFIRM = "Link this Slack user to me"  # the Confirm button


@pytest.fixture
def slack(slack_api, settings):  # noqa: F811
    settings.AIRLOCK_BASE_URL = "https://airlock.example.com"
    return slack_api


def signed_in(login: str) -> Client:
    client = Client()
    client.force_login(UserFactory(username=login))
    return client


def link_path(user="U0ALICE", team=TEAM) -> str:
    response = post_signed(URL, command_body("link", user=user, team=team))
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    pattern = r"https://airlock\.example\.com(/account/slack/link/[^/\s]+/)"
    (url,) = re.findall(pattern, body["text"])
    return url


def test_the_command_answers_the_user_alone_with_a_ten_minute_one_time_link(slack):
    path = link_path()
    code = SlackLinkCode.objects.get()
    assert (code.team_id, code.slack_user_id) == (TEAM, "U0ALICE")
    raw = path.rstrip("/").rsplit("/", 1)[-1]
    assert raw not in code.digest  # only a digest is kept
    assert timedelta(minutes=9) < code.expires_at - timezone.now() <= timedelta(minutes=10)
    assert code.used_at is None


@pytest.mark.parametrize("text", ["", "help", "approve 12", "unlink"])
def test_other_texts_answer_the_usage(slack, text):
    response = post_signed(URL, command_body(text))
    assert response.json()["response_type"] == "ephemeral"
    assert "/airlock link" in response.json()["text"]
    assert not SlackLinkCode.objects.exists()


def test_an_unsigned_or_old_command_is_401_and_makes_no_code(slack):
    assert post_signed(URL, command_body(), headers={}).status_code == 401
    assert post_signed(URL, command_body(), secret="wrong").status_code == 401
    old = post_signed(URL, command_body(), timestamp=int(timezone.now().timestamp()) - 400)
    assert old.status_code == 401
    assert not SlackLinkCode.objects.exists()


@pytest.mark.parametrize("user", ["U0\x00ALICE", "", "U" * 33])
def test_a_command_from_no_slack_id_makes_no_code(slack, user):
    response = post_signed(URL, command_body("link", user=user))
    if "\x00" in user:  # the portal refuses NUL in any form before the view (400)
        assert response.status_code == 400
    else:
        assert response.json()["response_type"] == "ephemeral"
        assert "did not say who you are" in response.json()["text"]
    assert not SlackLinkCode.objects.exists()


def test_a_replayed_command_is_refused(slack):
    body = command_body()
    headers = sign(body)
    assert post_signed(URL, body, headers=headers).status_code == 200
    assert post_signed(URL, body, headers=headers).status_code == 409
    assert SlackLinkCode.objects.count() == 1


def test_opening_the_link_signed_out_asks_to_sign_in_and_comes_back(slack):
    path = link_path()
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].endswith("?next=" + path)


def test_opening_signed_in_shows_the_slack_user_and_confirming_links_it(slack):
    path = link_path()
    alice = signed_in("alice")
    page = alice.get(path)
    assert page.status_code == 200
    assert "U0ALICE" in page.content.decode() and TEAM in page.content.decode()
    assert not SlackLink.objects.exists()  # opening is not confirming

    response = alice.post(path)
    assert response.status_code == 302
    link = SlackLink.objects.get()
    assert (link.user.username, link.team_id, link.slack_user_id) == ("alice", TEAM, "U0ALICE")
    assert SlackLinkCode.objects.get().used_at is not None
    event = AuditEvent.objects.get(action="slack.linked")
    assert event.actor_label == "alice"
    assert event.detail["slack_user"] == "U0ALICE"
    assert event.detail["slack_team"] == TEAM


def test_confirming_needs_the_csrf_token(slack):
    path = link_path()
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="alice"))
    assert client.post(path).status_code == 403
    assert not SlackLink.objects.exists()


def test_a_used_code_is_refused(slack):
    path = link_path()
    signed_in("alice").post(path)
    again = signed_in("bob")
    assert again.get(path).status_code == 410
    response = again.post(path)
    assert response.status_code == 410
    assert "already been used" in response.content.decode()
    assert SlackLink.objects.get().user.username == "alice"


def test_an_expired_code_is_refused(slack):
    path = link_path()
    SlackLinkCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = signed_in("alice").post(path)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not SlackLink.objects.exists()


def test_an_unknown_code_is_404(slack):
    response = signed_in("alice").get("/account/slack/link/not-a-code/")
    assert response.status_code == 404
    assert "unknown" in response.content.decode()


def test_a_slack_user_linked_to_another_account_is_refused(slack):
    signed_in("alice").post(link_path())
    path = link_path()  # the same Slack user asks again, and someone else opens it
    response = signed_in("mallory").post(path)
    assert response.status_code == 409
    assert "already linked to another" in response.content.decode()
    assert SlackLink.objects.get().user.username == "alice"
    assert SlackLinkCode.objects.filter(used_at__isnull=True).count() == 1


def test_a_link_is_never_replaced_silently_by_another_slack_user(slack):
    # Someone who gets alice to confirm their link must not take over her existing one
    # unnoticed: she removes hers first.
    alice = signed_in("alice")
    alice.post(link_path(user="U0ALICE"))
    refused = alice.post(link_path(user="U0MALLORY"))
    assert refused.status_code == 409
    assert "already linked to Slack user U0ALICE" in refused.content.decode()
    assert list(SlackLink.objects.values_list("slack_user_id", flat=True)) == ["U0ALICE"]
    assert AuditEvent.objects.filter(action="slack.linked").count() == 1
    # The code stays unused: after removing her link she may still confirm it.
    assert SlackLinkCode.objects.filter(used_at__isnull=True).count() == 1


def test_the_account_page_shows_the_links_and_removes_one(slack):
    alice = signed_in("alice")
    alice.post(link_path())
    page = alice.get("/account/slack/")
    assert page.status_code == 200
    assert "U0ALICE" in page.content.decode()
    link = SlackLink.objects.get()

    assert alice.post(f"/account/slack/{link.pk}/remove/").status_code == 302
    assert not SlackLink.objects.exists()
    event = AuditEvent.objects.get(action="slack.unlinked")
    assert event.actor_label == "alice"
    assert event.detail == {"slack_team": TEAM, "slack_user": "U0ALICE"}


def test_nobody_removes_anothers_link(slack):
    signed_in("alice").post(link_path())
    link = SlackLink.objects.get()
    assert signed_in("mallory").post(f"/account/slack/{link.pk}/remove/").status_code == 404
    assert SlackLink.objects.exists()
    assert not AuditEvent.objects.filter(action="slack.unlinked").exists()


def test_removing_is_post_only(slack):
    signed_in("alice").post(link_path())
    link = SlackLink.objects.get()
    assert signed_in("alice").get(f"/account/slack/{link.pk}/remove/").status_code == 405


def test_the_api_tokens_page_links_to_the_slack_page(slack):
    assert 'href="/account/slack/"' in signed_in("alice").get("/account/tokens/").content.decode()


# --- the page names the Slack user (users.info), so a phished link reads as someone else's ----


def test_the_page_names_the_slack_user_from_slack(slack):
    slack.server.add_user("U0MALLORY", "mallory", "Mallory Doe", "mal")
    path = link_path(user="U0MALLORY")
    page = signed_in("alice").get(path)
    assert page.status_code == 200
    text = page.content.decode()
    assert "You are linking the Slack user <strong>Mallory Doe (@mal)</strong>" in text
    assert "to your account <strong>alice</strong>" in text
    assert "U0MALLORY" in text and TEAM in text and "mallory" in text  # ids and handle below
    assert "Slack could not say" not in text
    [call] = slack.server.calls_to("users.info")
    assert call.arguments["user"] == "U0MALLORY"


def test_without_a_display_name_the_handle_is_the_username(slack):
    slack.server.add_user("U0BOB", "bob", "")
    page = signed_in("alice").get(link_path(user="U0BOB"))
    assert "the Slack user <strong>@bob</strong>" in page.content.decode()


def test_a_hostile_slack_name_is_escaped(slack):
    slack.server.add_user("U0EVIL", "evil", "<script>alert(1)</script>", "<b>x</b>\u202eecila")
    page = signed_in("alice").get(link_path(user="U0EVIL"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "<script>alert(1)" not in text and "<b>x</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\u202e" not in text  # a right-to-left override could make a name read as another


@pytest.mark.parametrize(
    "fault",
    [
        lambda faults: faults.server_error("users.info"),
        lambda faults: faults.slack_error("users.info", "missing_scope"),
        lambda faults: faults.rate_limited("users.info"),
    ],
    ids=["503", "missing_scope", "429"],
)
def test_when_slack_cannot_say_the_page_still_renders_and_warns_plainly(slack, fault):
    slack.server.add_user("U0ALICE", "alice", "Alice Liddell")
    path = link_path()
    fault(slack.server.faults)
    page = signed_in("alice").get(path)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Slack could not say who this Slack user is" in text
    assert "Do not confirm unless you ran" in text
    assert "Alice Liddell" not in text and "U0ALICE" in text
    assert CONFIRM in text  # they may still confirm a link they just made


def test_a_slow_slack_costs_the_page_its_short_timeout_only(slack, monkeypatch):
    from requests_app import slack_account_views

    monkeypatch.setattr(slack_account_views, "LOOKUP_TIMEOUT_SECONDS", 0.2)
    slack.server.add_user("U0ALICE", "alice", "Alice Liddell")
    path = link_path()
    slack.server.faults.slow("users.info", delay=2.0)
    page = signed_in("alice").get(path)
    assert page.status_code == 200
    assert "Slack could not say who this Slack user is" in page.content.decode()


def test_an_unknown_slack_user_and_no_slack_token_also_warn(slack, settings):
    path = link_path()  # U0ALICE, whom the local Slack does not know: user_not_found
    assert "Slack could not say" in signed_in("alice").get(path).content.decode()
    settings.AIRLOCK_SLACK_BOT_TOKEN = ""
    calls = len(slack.server.calls_to("users.info"))
    assert "Slack could not say" in signed_in("bob").get(path).content.decode()
    assert len(slack.server.calls_to("users.info")) == calls  # not asked without a token


@pytest.mark.parametrize(
    ("options", "why"),
    [({"deleted": True}, "deactivated"), ({"is_bot": True}, "a bot")],
)
def test_a_deleted_or_bot_slack_user_is_refused(slack, options, why):
    slack.server.add_user("U0ODD", "odd", "Odd One", **options)
    path = link_path(user="U0ODD")
    alice = signed_in("alice")
    page = alice.get(path)
    assert page.status_code == 409
    assert why in page.content.decode() and CONFIRM not in page.content.decode()
    refused = alice.post(path)
    assert refused.status_code == 409
    assert why in refused.content.decode()
    assert not SlackLink.objects.exists()
    assert SlackLinkCode.objects.get().used_at is None


def test_a_user_deactivated_after_the_page_opened_is_refused_on_confirm(slack):
    slack.server.add_user("U0ALICE", "alice", "Alice Liddell")
    path = link_path()
    alice = signed_in("alice")
    assert alice.get(path).status_code == 200
    slack.server.add_user("U0ALICE", "alice", "Alice Liddell", deleted=True)
    assert alice.post(path).status_code == 409
    assert not SlackLink.objects.exists()


def test_confirming_names_the_slack_user_in_the_message(slack):
    slack.server.add_user("U0ALICE", "alice", "Alice Liddell", "alice.l")
    alice = signed_in("alice")
    response = alice.post(link_path(), follow=True)
    assert "Alice Liddell (@alice.l)" in response.content.decode()
    assert SlackLink.objects.get().slack_user_id == "U0ALICE"
