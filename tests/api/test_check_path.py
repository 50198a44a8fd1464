"""The grant check's lean request path (portal/check_path.py): through the WSGI application
gunicorn serves, a bearer-token check skips the browser's middleware, and answers exactly
what Django's full handler answers: status, headers, body and access log line."""

import logging
from contextlib import contextmanager
from io import BytesIO
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from portal.check_path import AirlockApplication, check_path_middleware
from requests_app.tokens import api_token_create
from tests.api.conftest import active_request
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"
TARGET = {"repository": "acme/api", "environment": "production"}


@contextmanager
def connection_kept():
    # As Django's test client does: a request's start and end would otherwise close the
    # test's connection, and with it the transaction the test runs in.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def wsgi_get(application, path, query=None, *, headers=None, host="testserver"):
    """One GET through a WSGI application, as gunicorn would make it."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": urlencode(query or {}),
        "HTTP_HOST": host,
        "wsgi.url_scheme": "https",
        "wsgi.input": BytesIO(b""),
        # Fixed, so that two answers to the same request can be compared whole.
        "HTTP_X_REQUEST_ID": "check-path-test-0001",
    }
    environ.update(headers or {})
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, response_headers

    with connection_kept():
        chunks = application(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            chunks.close()
    return answer["status"], sorted(answer["headers"]), body


@pytest.fixture
def applications(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    return AirlockApplication(), WSGIHandler()


def test_the_lean_path_leaves_out_only_what_a_bearer_token_call_never_uses(settings):
    lean = check_path_middleware()
    for needed in (
        "portal.middleware.RequestIdMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "csp.middleware.CSPMiddleware",
        "django.middleware.common.CommonMiddleware",
        "portal.middleware.RefuseNulMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ):
        assert needed in lean
    for browser_only in (
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "allauth.account.middleware.AccountMiddleware",
    ):
        assert browser_only not in lean
    # In the deployment's order.
    assert lean == [m for m in settings.MIDDLEWARE if m in lean]


def _cases(oidc):
    dave = UserFactory(username="dave")
    _, api_token = api_token_create(user=dave, name="tests")
    workflow = oidc()
    return [
        ("allowed, OIDC", CHECK, {}, workflow),
        ("allowed, API token", CHECK, TARGET, api_token),
        ("no, API token", CHECK, {**TARGET, "environment": "staging"}, api_token),
        ("refused, OIDC", CHECK, {"repository": "acme/other"}, workflow),
        ("bad parameter", CHECK, {"access": "everything"}, workflow),
        ("NUL in the query", CHECK, {"repository": "acme/\x00"}, workflow),
        ("unknown API token", CHECK, TARGET, "alk_" + "x" * 43),
        ("not a token", CHECK, {}, "not.a.jwt"),
    ]


def access_lines(caplog):
    return [
        (r.getMessage(), r.method, r.path, r.status_code, r.user)
        for r in caplog.records
        if r.name == "portal.access"
    ]


def test_both_paths_give_the_same_answers_headers_and_log_lines(
    oidc, applications, caplog
):
    airlock, full = applications
    active_request("dave", approvers=["alice"])
    for label, path, query, token in _cases(oidc):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        wsgi_get(full, path, query, headers=headers)  # audit marks and JWKS set, for both
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="portal.access"):
            on_full = wsgi_get(full, path, query, headers=headers)
            full_log = access_lines(caplog)
            caplog.clear()
            on_lean = wsgi_get(airlock, path, query, headers=headers)
            lean_log = access_lines(caplog)
        assert on_lean == on_full, label
        assert lean_log == full_log and len(lean_log) == 1, label


def test_the_lean_path_still_refuses_a_host_outside_allowed_hosts(oidc, applications):
    airlock, _ = applications
    active_request("dave")
    status, _, _ = wsgi_get(
        airlock, CHECK, headers={"HTTP_AUTHORIZATION": f"Bearer {oidc()}"}, host="evil.example"
    )
    assert status.startswith("400")


def test_a_browser_s_session_still_asks_through_the_full_stack(client, applications):
    airlock, _ = applications
    active_request("dave")
    client.force_login(UserFactory(username="dave"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    status, headers, body = wsgi_get(airlock, CHECK, TARGET, headers={"HTTP_COOKIE": cookie})
    assert status.startswith("200"), body
    assert b'"allowed":true' in body
