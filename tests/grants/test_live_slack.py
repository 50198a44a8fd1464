"""The Slack request card as deployed: the real `celery worker` (tests/grants/test_live_stack.py's
stack: Redis, PostgreSQL, the local GitHub) posts a routed request's card into the local Slack
(tests/slack_fake); a signed click on its Approve button (POST /slack/interactions) approves
it, and the worker updates the card in place once the request is approved and in force.
(The after-commit task posts the card; beat's "airlock: slack cards" sweep would post a lost
one within a sweep, so this proves the flow end to end, whichever of the two gets there.)

Needs AIRLOCK_LIVE_BROKER_URL and a PostgreSQL DATABASE_URL, like the stack's own tests.
"""

import json

import pytest

from requests_app.models import AccessRequest
from requests_app.services import access_request_create
from requests_app.slack_models import SlackCard, SlackLink
from tests.fixtures import SLACK_BOT_TOKEN
from tests.grants.test_live_stack import stack, wait_for  # noqa: F401 - the stack fixture
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CHANNEL = "C0LIVEOPS"


@pytest.fixture
def slack_env(slack, settings, monkeypatch):
    """The worker (started after this, from os.environ) and this process both speak to the
    local Slack with the bot token."""
    slack.add_channel(CHANNEL)
    for name, value in (("AIRLOCK_SLACK_BOT_TOKEN", SLACK_BOT_TOKEN),
                        ("AIRLOCK_SLACK_SIGNING_SECRET", slack.signing_secret),
                        ("SLACK_API_URL", slack.api_url)):
        monkeypatch.setenv(name, value)
        setattr(settings, name, value)
    return slack


@pytest.fixture
def slack_stack(slack_env, stack):  # noqa: F811 - the stack, started with Slack's settings
    return stack


def test_the_worker_posts_the_card_and_a_signed_click_on_it_approves_and_updates_it(
    slack_env, slack_stack, github, client
):
    slack = slack_env
    github.add_user("dave")
    github.add_environment("acme/api", "production")
    _, group, approvers = approver_setup(approvals_required=1)
    group.slack_channel = CHANNEL
    group.save()

    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Live stack: the Slack card",
        duration_minutes=30,
    )
    wait_for(
        "the card posted by the worker",
        # Slack has the message a moment before the worker commits its ts on the card.
        lambda: len(slack.messages(CHANNEL)) == 1
        and SlackCard.objects.filter(request=access_request).exclude(ts="").exists(),
        timeout=30,
        stack=slack_stack,
        observe=lambda: [c.__dict__ for c in slack.calls],
    )
    [message] = slack.messages(CHANNEL)
    assert "airlock_approve" in json.dumps(message.blocks)
    card = SlackCard.objects.get(request=access_request)
    assert card.ts == message.ts

    # Alice, linked, clicks Approve on the card: POST /slack/interactions, signed.
    SlackLink.objects.create(user=approvers["alice"], team_id=slack.team_id,
                             slack_user_id="U0ALICE")
    [approve] = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "airlock_approve"]
    clicked = slack.block_actions(user="U0ALICE", action_id=approve["action_id"],
                                  value=approve["value"], channel=CHANNEL, ts=message.ts)
    assert clicked.post(client, "/slack/interactions").status_code == 200
    wait_for(
        "the card showing the access in force",
        lambda: "*active* until" in json.dumps(slack.message(CHANNEL, message.ts).blocks),
        timeout=30,
        stack=slack_stack,
        observe=lambda: (AccessRequest.objects.get(pk=access_request.pk).status,
                         [c.method for c in slack.calls]),
    )
    shown = json.dumps(slack.message(CHANNEL, message.ts).blocks)
    assert "approved by alice" in shown and "airlock_approve" not in shown
    assert len(slack.messages(CHANNEL)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1
