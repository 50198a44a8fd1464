"""Slack's endpoints and links against what a review of issue 16 tried: a timestamp too
large for the arithmetic (a 401, never a 500), and the one-time link code kept out of the
access log (masked in the logged path)."""

import re

import pytest
from django.test import Client

from requests_app.slack_models import SlackDelivery
from tests.requests_app.slack_helpers import (
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
