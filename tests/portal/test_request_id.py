"""The request id: taken from X-Request-ID when sane or made up, echoed in the response,
and on every log line written while the request is handled."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_a_request_without_an_id_gets_a_fresh_one_in_the_response(client):
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_a_sane_caller_id_is_kept_and_echoed(client):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="lb-7f3a9c2e-0001")
    assert response["X-Request-ID"] == "lb-7f3a9c2e-0001"


@pytest.mark.parametrize(
    "offered",
    ["has spaces in it", "x" * 200, "quote\"or{brace}", "line\nbreak", "", "-starts-with-dash"],
)
def test_an_insane_caller_id_is_replaced(client, offered):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID=offered)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_log_lines_written_during_the_request_carry_its_id(client, capture_logs):
    logs = capture_logs()
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="trace-abc-123")
    assert response.status_code == 404
    entries = logs.lines()
    not_found = [e for e in entries if e["logger"] == "django.request"]
    access = [e for e in entries if e["logger"] == "portal.access"]
    assert not_found and not_found[0]["request_id"] == "trace-abc-123"
    assert access[0]["request_id"] == "trace-abc-123"
    assert access[0]["status_code"] == 404
    assert access[0]["path"] == "/no-such-page/"
    assert response["X-Request-ID"] == "trace-abc-123"


def test_the_access_line_leaves_out_the_query_string(client, capture_logs):
    logs = capture_logs()
    client.get("/accounts/github/login/callback/?code=oauth-one-time-code&state=xyz")
    access = [e for e in logs.lines() if e["logger"] == "portal.access"]
    assert access[0]["path"] == "/accounts/github/login/callback/"
    assert "oauth-one-time-code" not in logs.text


def test_after_the_request_no_id_lingers(client, capture_logs):
    import logging

    logs = capture_logs()
    client.get("/accounts/login/")
    logging.getLogger("portal").info("after")
    assert logs.lines()[-1]["request_id"] is None


def test_health_checks_are_not_written_to_the_access_log(client, capture_logs):
    logs = capture_logs()
    response = client.get("/healthz")
    assert response["X-Request-ID"]
    assert not [e for e in logs.lines() if e["logger"] == "portal.access"]
