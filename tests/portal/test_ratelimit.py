"""Brute-force limits on the two password sign-ins and on API tokens, and the API's request
rates: per account and per client address, counted in the shared cache."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEvent
from requests_app.tokens import api_token_create
from tests.requests_app.factories import ApproverGroupFactory, UserFactory

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct-horse-battery"


@pytest.fixture
def limits(settings):
    settings.AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT = 5
    settings.AIRLOCK_SIGN_IN_FAILURES_PER_ADDRESS = 8
    settings.AIRLOCK_API_TOKEN_FAILURES_PER_ADDRESS = 4
    settings.AIRLOCK_LOCKOUT_SECONDS = 900
    return settings


def admin_sign_in(client, username, password, **extra):
    return client.post(ADMIN_LOGIN, {"username": username, "password": password}, **extra)


def portal_sign_in(client, username, password, **extra):
    return client.post(
        reverse("account_login"), {"login": username, "password": password}, **extra
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def wait_message(response) -> str:
    text = re.sub(r"\s+", " ", response.content.decode())
    match = re.search(r"Too many failed sign-ins[^<]*", text)
    return match.group(0) if match else ""


# --- the admin's sign-in --------------------------------------------------------------------


def test_after_many_wrong_passwords_the_admin_refuses_even_the_right_one(client):
    # With the default limits: the review's finding was 40 wrong passwords, then a sign-in.
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    for _ in range(40):
        assert admin_sign_in(client, "root", "guess").status_code == 200
    response = admin_sign_in(client, "root", PASSWORD)
    assert response.status_code == 200
    assert not signed_in(client)
    assert "try again in" in wait_message(response)


def test_the_admin_lock_says_how_long_to_wait_and_ends(client, limits, monkeypatch):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for _ in range(5):
        admin_sign_in(client, "root", "guess")
    response = admin_sign_in(client, "root", PASSWORD)
    assert re.search(r"for this account; try again in \d+ minutes?", wait_message(response))
    assert not signed_in(client)

    from portal import ratelimit

    later = ratelimit.time.time() + 901
    monkeypatch.setattr(ratelimit.time, "time", lambda: later)
    assert admin_sign_in(client, "root", PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_limit_reached_at_the_end_of_a_counting_window_locks_for_a_whole_window(
    client, limits, monkeypatch
):
    # Counts are kept per fixed window; the lock must not end with that window (a second
    # later), or an attacker would time their guesses to a window's last moments.
    from portal import ratelimit

    UserFactory(username="root", password=PASSWORD, is_staff=True)
    window_end = (ratelimit.time.time() // 900 + 1) * 900
    clock = {"now": window_end - 2}
    monkeypatch.setattr(ratelimit.time, "time", lambda: clock["now"])
    for _ in range(5):
        admin_sign_in(client, "root", "guess")

    clock["now"] = window_end + 60  # the next counting window, a minute into it
    response = admin_sign_in(client, "root", PASSWORD)
    assert re.search(r"for this account; try again in 14 minutes", wait_message(response))
    assert not signed_in(client)

    clock["now"] = window_end + 900
    assert admin_sign_in(client, "root", PASSWORD).status_code == 302


def test_fewer_failures_than_the_limit_do_not_lock(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for _ in range(4):
        admin_sign_in(client, "root", "guess")
    assert admin_sign_in(client, "root", PASSWORD).status_code == 302


def test_the_account_is_counted_case_insensitively(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for name in ("root", "ROOT", "Root", " root", "rOOt"):
        admin_sign_in(client, name, "guess")
    assert "for this account" in wait_message(admin_sign_in(client, "root", PASSWORD))


def test_a_locked_account_does_not_lock_another_one(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    ApproverGroupFactory(members=["alice"])
    UserFactory(username="alice", password=PASSWORD)
    for _ in range(5):
        admin_sign_in(client, "root", "guess")
    assert admin_sign_in(client, "alice", PASSWORD).status_code == 302


def test_failures_from_one_address_lock_that_address_for_every_account(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for number in range(8):  # a different account each time: no account reaches its limit
        admin_sign_in(client, f"someone{number}", "guess", REMOTE_ADDR="198.51.100.7")
    refused = admin_sign_in(client, "root", PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert "from your address" in wait_message(refused)
    assert not signed_in(client)
    assert admin_sign_in(client, "root", PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_address_limit(client, limits):
    # Not behind a proxy (the default), X-Forwarded-For is whatever the client says.
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for number in range(8):
        admin_sign_in(
            client, f"someone{number}", "guess",
            REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"10.0.0.{number}",
        )
    refused = admin_sign_in(
        client, "root", PASSWORD, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="10.9.9.9"
    )
    assert "from your address" in wait_message(refused)


def test_behind_the_proxy_the_address_is_the_one_the_proxy_saw(client, limits, settings):
    settings.AIRLOCK_BEHIND_PROXY = True
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for number in range(8):
        # The client's own entries come first; the proxy appends the address it saw.
        admin_sign_in(
            client, f"someone{number}", "guess",
            HTTP_X_FORWARDED_FOR=f"1.2.3.{number}, 203.0.113.9", **proxy,
        )
    locked = admin_sign_in(
        client, "root", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy
    )
    assert "from your address" in wait_message(locked)
    other_client = admin_sign_in(
        client, "root", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.10", **proxy
    )
    assert other_client.status_code == 302


def test_a_lockout_is_audited_once(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for _ in range(7):
        admin_sign_in(client, "root", "guess", REMOTE_ADDR="198.51.100.7")
    events = AuditEvent.objects.filter(action="sign_in.locked_out")
    assert events.count() == 1
    event = events.get()
    assert event.actor_label == "anonymous"
    assert event.detail["by"] == "account"
    assert event.detail["account"] == "root"
    assert event.detail["address"] == "198.51.100.7"
    assert event.detail["failures"] == 5


# --- the portal's sign-in (allauth) ---------------------------------------------------------


def test_the_portal_sign_in_locks_the_same_way(client, limits):
    UserFactory(username="dave", password=PASSWORD)
    for _ in range(5):
        assert portal_sign_in(client, "dave", "guess").status_code == 200
    response = portal_sign_in(client, "dave", PASSWORD)
    assert response.status_code == 200
    assert "for this account; try again in" in wait_message(response)
    assert not signed_in(client)


def test_failures_on_either_sign_in_count_together(client, limits):
    UserFactory(username="root", password=PASSWORD, is_staff=True)
    for _ in range(3):
        admin_sign_in(client, "root", "guess")
    for _ in range(2):
        portal_sign_in(client, "root", "guess")
    assert "for this account" in wait_message(admin_sign_in(client, "root", PASSWORD))
    assert "for this account" in wait_message(portal_sign_in(client, "root", PASSWORD))


# --- API tokens -----------------------------------------------------------------------------


def bearer(raw: str, address: str = "198.51.100.20") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_unknown_api_tokens_lock_their_address_out_with_a_429(limits):
    _, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    for number in range(4):
        guess = bearer(f"alk_{number:043d}").get("/api/v1/requests/")
        assert guess.status_code == 401
    # Locked: the answer no longer says whether a token is real, so even dave's waits.
    refused = bearer(raw).get("/api/v1/requests/")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    body = refused.json()
    assert "Too many unknown API tokens from your address" in body["message"]
    assert body["errors"] == {}
    assert bearer(raw, address="198.51.100.21").get("/api/v1/requests/").status_code == 200
    assert AuditEvent.objects.filter(action="api_token.locked_out").count() == 1


def test_expired_or_revoked_tokens_do_not_count_as_guesses(limits):
    from django.utils import timezone

    from requests_app.models import ApiToken

    token, revoked = api_token_create(user=UserFactory(username="erin"), name="old")
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    _, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    for _ in range(6):
        assert bearer(revoked).get("/api/v1/requests/").status_code == 401
    assert bearer(raw).get("/api/v1/requests/").status_code == 200


# --- shared by every process, through Redis -------------------------------------------------

REDIS_URL = os.environ.get("AIRLOCK_TEST_CACHE_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]
# One window for the whole test, in both processes: their counts must fall in the same one.
LONG_WINDOW = 10**9

FAIL_IN_ANOTHER_PROCESS = """
import sys, django
django.setup()
from django.test import RequestFactory
from portal.ratelimit import sign_in_failed
username, address, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = RequestFactory().post("/admin/login/", REMOTE_ADDR=address)
for _ in range(times):
    # What django.contrib.auth.authenticate() sends when no backend knows the password.
    sign_in_failed(sender=None, credentials={"username": username}, request=request)
"""


@pytest.fixture
def shared_cache(settings):
    """The default cache on Redis, as CACHE_URL sets it in production."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as problem:
        pytest.skip(f"needs Redis at {REDIS_URL} (AIRLOCK_TEST_CACHE_URL): {problem}")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    settings.AIRLOCK_LOCKOUT_SECONDS = LONG_WINDOW
    return REDIS_URL


def test_failures_counted_in_another_process_lock_the_sign_in_here(client, limits, shared_cache):
    # limits: 5 per account. Four wrong passwords reach another web process (a gunicorn
    # worker with the same CACHE_URL); the fifth reaches this one and locks the account.
    limits.AIRLOCK_LOCKOUT_SECONDS = LONG_WINDOW
    name = f"shared-{uuid.uuid4().hex[:12]}"
    UserFactory(username=name, password=PASSWORD, is_staff=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "CACHE_URL": shared_cache,
        "AIRLOCK_LOCKOUT_SECONDS": str(LONG_WINDOW),
        "AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT": "5",
    }
    address = "192.0.2.77"
    try:
        other = subprocess.run(
            [sys.executable, "-c", FAIL_IN_ANOTHER_PROCESS, name, address, "4"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert other.returncode == 0, other.stderr
        assert admin_sign_in(client, name, PASSWORD, REMOTE_ADDR=address).status_code == 302
        client.logout()
        admin_sign_in(client, name, "guess", REMOTE_ADDR=address)
        refused = admin_sign_in(client, name, PASSWORD, REMOTE_ADDR=address)
        assert "for this account" in wait_message(refused)
        assert not signed_in(client)
    finally:
        from django.core.cache import cache

        from portal import ratelimit

        number = int(ratelimit.time.time() // LONG_WINDOW)
        cache.delete_many(
            [ratelimit._key("sign_in", "account", name, number),
             ratelimit._key("sign_in", "address", address, number)]
        )


def test_the_admin_form_used_without_a_request_counts_the_account_alone(limits):
    from requests_app.forms import AdminLoginForm

    UserFactory(username="root", password=PASSWORD, is_staff=True)

    def accepts(password):
        return AdminLoginForm(data={"username": "root", "password": password}).is_valid()

    assert accepts(PASSWORD)
    for _ in range(5):
        assert not accepts("guess")
    form = AdminLoginForm(data={"username": "root", "password": PASSWORD})
    assert not form.is_valid()
    assert "for this account" in form.non_field_errors()[0]
