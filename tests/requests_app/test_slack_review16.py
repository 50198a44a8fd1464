"""Review of issue 16 (Slack decisions and linking): findings, each as a test.

test_a_timestamp_too_large_for_a_float_is_401_not_500 and
test_the_access_log_does_not_carry_the_raw_link_code fail today (findings);
test_repro_phished_link_lets_the_requester_approve_their_own_request_as_an_approver passes
today: it is the exact reproduction of a design weakness, asserting the attack works."""

import re

import pytest
from django.test import Client

from requests_app.models import AccessRequest, Approval
from requests_app.slack_models import SlackDelivery, SlackLinkCode
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup
from tests.requests_app.slack_helpers import (
    TEAM,
    click,
    command_body,
    interaction_body,
    post_signed,
    slack_api,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("digits", [400, 5000])
@pytest.mark.parametrize("path", ["/slack/interactions", "/slack/commands"])
def test_a_timestamp_too_large_for_a_float_is_401_not_500(slack_api, path, digits):  # noqa: F811
    # Unsigned: anyone on the internet can send it. int(timestamp) of 5000 digits raises
    # ValueError (Python's 4300-digit limit); time.time() - int(400 digits) OverflowError.
    body = command_body() if path.endswith("commands") else interaction_body({"type": "x"})
    headers = {"HTTP_X_SLACK_REQUEST_TIMESTAMP": "9" * digits, "HTTP_X_SLACK_SIGNATURE": "v0=0"}
    response = Client(raise_request_exception=False).post(
        path, data=body, content_type="application/x-www-form-urlencoded", **headers
    )
    assert response.status_code == 401
    assert not SlackDelivery.objects.exists()


def test_repro_phished_link_lets_the_requester_approve_their_own_request_as_an_approver(
    slack_api,  # noqa: F811
    settings,
):
    settings.AIRLOCK_BASE_URL = "https://airlock.example.com"
    policy, _, users = approver_setup(approvers=("alice",), approvals_required=1)
    mallory = UserFactory(username="mallory")
    access_request = AccessRequestFactory(requester=mallory, policy=policy)

    # 1. Mallory runs /airlock link in Slack as herself and gets a link for U0MALLORY.
    answer = post_signed("/slack/commands", command_body("link", user="U0MALLORY"))
    (path,) = re.findall(
        r"https://airlock\.example\.com(/account/slack/link/[^/\s]+/)", answer.json()["text"]
    )
    assert SlackLinkCode.objects.get().slack_user_id == "U0MALLORY"

    # 2. She sends it to approver alice ("Airlock asks you to re-link Slack"); alice,
    # signed in, opens it and presses the one button. The page names only "U0MALLORY".
    alice = Client()
    alice.force_login(users["alice"])
    assert alice.get(path).status_code == 200
    assert alice.post(path).status_code == 302

    # 3. Mallory's own click on her own request's card now approves it, as alice.
    response = post_signed(
        "/slack/interactions",
        interaction_body(click("airlock_approve", access_request.pk, user="U0MALLORY", team=TEAM)),
    )
    assert response.status_code == 200
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.APPROVED
    assert Approval.objects.get(request=access_request).approver == users["alice"]


def test_the_access_log_does_not_carry_the_raw_link_code(slack_api, settings, caplog):  # noqa: F811
    # Only a digest of a code is stored; the access log keeps the path, which is the code.
    settings.AIRLOCK_BASE_URL = "https://airlock.example.com"
    answer = post_signed("/slack/commands", command_body("link", user="U0ALICE"))
    (path,) = re.findall(
        r"https://airlock\.example\.com(/account/slack/link/[^/\s]+/)", answer.json()["text"]
    )
    raw = path.rstrip("/").rsplit("/", 1)[-1]
    with caplog.at_level("INFO", logger="portal.access"):
        Client().get(path)  # signed out: 302 to the sign-in page
    assert caplog.records, "the access log wrote no line"
    assert not any(raw in record.getMessage() for record in caplog.records)
    assert not any(raw in str(getattr(record, "path", "")) for record in caplog.records)
