"""The grant check's lean request path (portal/check_path.py): through the WSGI application
gunicorn serves, a bearer-token check skips the browser's middleware, and answers exactly
what Django's full handler answers: status, headers, body and access log line."""

import logging
import re
from contextlib import contextmanager
from io import BytesIO
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from portal.check_path import (
    LEANER_ON_THE_CHECK_PATH,
    AirlockApplication,
    CheckPathCSPMiddleware,
    check_path_middleware,
)
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
        "portal.check_path.CheckPathCSPMiddleware",
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
    # In the deployment's order, django-csp's in its leaner form in the same place.
    assert "csp.middleware.CSPMiddleware" not in lean
    assert lean == [
        LEANER_ON_THE_CHECK_PATH.get(m, m)
        for m in settings.MIDDLEWARE
        if LEANER_ON_THE_CHECK_PATH.get(m, m) in lean
    ]


def _csp_headers(middleware, *, nonce_used=False, decorate=None):
    from django.http import JsonResponse
    from django.test import RequestFactory

    request = RequestFactory().get(CHECK)
    middleware.process_request(request)
    if nonce_used:
        str(request.csp_nonce)  # as a template using the nonce would
    response = JsonResponse({"allowed": True})
    if decorate:
        decorate(response)
    middleware.process_response(request, response)
    # Each request has its own nonce: compared as where it stands, not its value.
    return {
        h: re.sub(r"'nonce-[^']+'", "'nonce-N'", v)
        for h, v in response.items()
        if "Content-Security-Policy" in h
    }


@pytest.mark.parametrize(
    "case",
    ["plain", "nonce used", "csp_update", "csp_exempt", "report-only policy", "policy changed"],
)
def test_the_lean_csp_middleware_writes_what_django_csp_writes(case, settings):
    from csp.middleware import CSPMiddleware

    kwargs = {}
    if case == "nonce used":
        kwargs["nonce_used"] = True
    elif case == "csp_update":
        kwargs["decorate"] = lambda r: setattr(r, "_csp_update", {"img-src": ["https://x.test"]})
    elif case == "csp_exempt":
        kwargs["decorate"] = lambda r: setattr(r, "_csp_exempt", True)
    lean = CheckPathCSPMiddleware(lambda request: None)
    _csp_headers(lean)  # built and kept before the settings change below
    if case == "report-only policy":
        settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    elif case == "policy changed":
        settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    expected = _csp_headers(CSPMiddleware(lambda request: None), **kwargs)
    assert _csp_headers(lean, **kwargs) == expected
    if case in ("plain", "policy changed", "report-only policy"):
        assert expected  # a header to compare, not two empty answers
    if case == "nonce used":
        assert "'nonce-N'" in expected["Content-Security-Policy"]


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


def _match_of(handler, path=CHECK):
    from django.core.handlers.wsgi import WSGIRequest

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.input": BytesIO(b"")}
    setup_testing_defaults(environ)
    return handler.resolve_request(WSGIRequest(environ))


def _as_fields(match):
    return {k: v for k, v in vars(match).items() if k != "tried"} | {"repr": repr(match)}


def test_the_lean_path_resolves_the_check_as_django_does_and_anew_for_a_new_urlconf(settings):
    from django.urls import get_resolver

    handler = AirlockApplication().check
    first, second = _match_of(handler), _match_of(handler)
    expected = get_resolver().resolve(CHECK)
    assert _as_fields(first) == _as_fields(second) == _as_fields(expected)
    assert first.func.view_class.__name__ == "GrantCheckApi"
    # Each request its own match: what one request does to its kwargs is not the next's.
    assert first is not second and first.kwargs is not second.kwargs
    first.kwargs["changed"] = True
    assert "changed" not in _match_of(handler).kwargs
    # Another path through this handler is resolved as usual.
    assert _match_of(handler, "/api/v1/grants/").url_name == get_resolver().resolve(
        "/api/v1/grants/"
    ).url_name
    settings.ROOT_URLCONF = "benchmarks.bench_urls"
    assert _match_of(handler, CHECK).route == get_resolver().resolve(CHECK).route
    assert get_resolver().resolve(CHECK) is not expected
