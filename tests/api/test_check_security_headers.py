"""The grant check's answers carry the portal's security headers, whichever way it answers
(allowed, no, refused, a bad token) and whoever asks (an OIDC token, an API token): the
check's lean request path (portal/check_path.py) must not lose one of them."""

import pytest

from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"
TARGET = {"repository": "acme/api", "environment": "production"}

# Every header the check's answer has, and nothing else: a new one is a decision to make
# here, not an accident.
EXPECTED_HEADERS = {
    "Allow",
    "Content-Length",
    "Content-Security-Policy",
    "Content-Type",
    "Cross-Origin-Opener-Policy",
    "Referrer-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-Request-ID",
}


@pytest.fixture
def production_security(settings):
    """HSTS as a deployment sends it (the test settings run with DEBUG's defaults)."""
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True


def assert_security_headers(response, settings):
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    policy = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["form-action"] == ["'self'", settings.GITHUB_URL]
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(response.content)
    assert len(headers["X-Request-ID"]) == 32


def test_an_allowed_answer_to_a_workflow_carries_the_security_headers(
    oidc, settings, production_security
):
    active_request("dave")
    response = oidc_client(oidc()).get(CHECK, secure=True)
    assert response.status_code == 200 and response.json()["allowed"] is True
    assert_security_headers(response, settings)
    assert set(response.headers) == EXPECTED_HEADERS


def test_a_no_to_a_person_with_an_api_token_carries_the_security_headers(
    settings, production_security
):
    response = token_client(UserFactory(username="dave")).get(CHECK, TARGET, secure=True)
    assert response.status_code == 200 and response.json()["allowed"] is False
    assert_security_headers(response, settings)
    assert set(response.headers) == EXPECTED_HEADERS


def test_a_refused_question_carries_the_security_headers(oidc, settings, production_security):
    response = oidc_client(oidc()).get(CHECK, {"repository": "acme/other"}, secure=True)
    assert response.status_code == 403
    assert_security_headers(response, settings)
    assert set(response.headers) == EXPECTED_HEADERS


def test_a_bad_token_is_a_401_with_the_security_headers(settings, production_security):
    response = oidc_client("not.a.jwt").get(CHECK, secure=True)
    assert response.status_code == 401
    assert_security_headers(response, settings)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="airlock"'
    assert set(response.headers) == EXPECTED_HEADERS | {"WWW-Authenticate"}
