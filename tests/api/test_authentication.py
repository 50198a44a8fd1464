"""Bearer authentication: Actions OIDC tokens (verified against the issuer's JWKS) and
personal API tokens (hashed, expiring, revocable), and the pages and command that make
the latter."""

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta
from io import StringIO

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.core.management import CommandError, call_command
from django.utils import timezone
from jwt.algorithms import RSAAlgorithm
from rest_framework.test import APIClient

from audit.models import AuditEvent
from portal import authentication
from requests_app.models import ApiToken
from requests_app.tokens import api_token_create, token_digest
from tests.api.conftest import active_request, oidc_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"


def refusal(token: str) -> str:
    response = oidc_client(token).get(CHECK)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    return response.json()["message"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- OIDC --------------------------------------------------------------------------------------


def test_a_valid_oidc_token_authenticates_the_job(oidc):
    active_request("dave")
    assert oidc_client(oidc()).get(CHECK).json()["allowed"] is True


def test_alg_none_is_refused(oidc):
    forged = jwt.encode(claims_of(oidc()), None, algorithm="none")
    assert "must be signed with RS256" in refusal(forged)


def test_hs256_signed_with_the_public_key_is_refused(oidc):
    # The classic confusion attack: HMAC with the issuer's public key as the secret.
    jwks = oidc.github.oidc.jwks()
    public_key = RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    payload = json.dumps(claims_of(oidc())).encode()
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert "must be signed with RS256" in refusal(f"{signing_input}.{b64url(signature)}")


def test_a_tampered_payload_is_refused(oidc):
    header, _, signature = oidc().split(".")
    claims = {**claims_of(oidc()), "actor": "mallory"}
    forged = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    assert "signature does not verify" in refusal(forged)


def test_a_wrong_issuer_is_refused(oidc):
    assert "was not issued by" in refusal(oidc(iss="https://token.example.com"))


def test_a_wrong_audience_is_refused(oidc):
    message = refusal(oidc(aud="https://github.com/acme"))
    assert "audience is not 'https://airlock.test'" in message


def test_an_expired_token_is_refused(oidc):
    past = int(time.time()) - 3600
    assert "has expired" in refusal(oidc(iat=past - 300, nbf=past - 300, exp=past))


def test_a_token_within_the_leeway_is_accepted(oidc):
    just_now = int(time.time()) - 20
    token = oidc(iat=just_now - 300, nbf=just_now - 300, exp=just_now)
    assert oidc_client(token).get(CHECK).status_code == 200


def test_a_token_not_valid_yet_is_refused(oidc):
    later = int(time.time()) + 3600
    assert "not valid yet" in refusal(oidc(nbf=later, iat=later, exp=later + 300))


def test_a_token_without_a_usable_actor_claim_is_refused(oidc):
    assert "lacks the 'actor' claim" in refusal(oidc(actor=None))
    assert "'actor' claim is not a non-empty string" in refusal(oidc(actor=""))


def test_a_rotated_key_is_fetched_on_its_first_use(oidc):
    active_request("dave")
    assert oidc_client(oidc()).get(CHECK).status_code == 200  # caches the key set
    new_kid = oidc.github.rotate_oidc_key(keep_old=False)
    fetches_before = len([r for r in oidc.github.requests if r.path.endswith("/jwks")])
    response = oidc_client(oidc(kid=new_kid)).get(CHECK)
    assert response.status_code == 200, response.json()
    fetches_after = len([r for r in oidc.github.requests if r.path.endswith("/jwks")])
    assert fetches_after == fetches_before + 1


def test_the_key_set_is_cached(oidc):
    for _ in range(3):
        assert oidc_client(oidc()).get(CHECK).status_code == 200
    assert len([r for r in oidc.github.requests if r.path.endswith("/jwks")]) <= 1


def test_a_kid_nobody_publishes_is_refused(oidc):
    assert "is not published by" in refusal(oidc(kid="NOBODY-PUBLISHES-THIS"))


def test_an_unreachable_issuer_is_a_503(oidc, settings):
    settings.GITHUB_OIDC_ISSUER = "http://127.0.0.1:9/oidc"
    response = oidc_client(oidc(iss="http://127.0.0.1:9/oidc")).get(CHECK)
    assert response.status_code == 503
    assert "could not be fetched" in response.json()["message"]


@pytest.mark.parametrize(
    "header, words",
    [
        ("Bearer", "exactly one token"),
        ("Bearer a b", "exactly one token"),
        ("Bearer not-a-token", "neither an Airlock API token"),
        ("Bearer x.y.z", "not a well-formed JWT"),
    ],
)
def test_malformed_bearer_tokens_are_401s(header, words):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(CHECK)
    assert response.status_code == 401
    assert words in response.json()["message"]


def unsigned_jwt(header: dict, claims: dict | None = None) -> str:
    """A JWT with this header, as a forger writes it: PyJWT refuses to encode some of them."""
    parts = (json.dumps(header).encode(), json.dumps(claims or {"actor": "dave"}).encode())
    return ".".join(b64url(part) for part in parts) + "." + b64url(b"not-a-signature")


KID_NOT_A_STRING = "Key ID header parameter must be a string"  # PyJWT's words


@pytest.mark.parametrize(
    "header, words",
    [
        # PyJWT refuses a kid that is not a string with InvalidTokenError, not DecodeError.
        ({"alg": "RS256", "typ": "JWT", "kid": 5}, KID_NOT_A_STRING),
        ({"alg": "RS256", "typ": "JWT", "kid": ["a", "b"]}, KID_NOT_A_STRING),
        ({"alg": "RS256", "typ": "JWT", "kid": None}, KID_NOT_A_STRING),
        ({"alg": "RS256", "typ": "JWT", "kid": ""}, "names no signing key"),
        ({"alg": "RS256", "kid": "x", "crit": ["exp"]}, "Unsupported critical extension"),
        ({"alg": ["RS256"], "kid": "x"}, "must be signed with RS256"),
        ({"typ": "JWT"}, "must be signed with RS256"),
    ],
)
def test_a_jwt_with_a_malformed_header_is_a_401_with_a_message(header, words):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {unsigned_jwt(header)}")
    response = client.get(CHECK)
    assert response.status_code == 401, response.content
    assert words in response.json()["message"]
    assert response.json()["errors"] == {}


def test_a_jwt_whose_header_is_not_an_object_is_a_401():
    token = ".".join((b64url(b"[1, 2]"), b64url(b"{}"), b64url(b"x")))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(CHECK)
    assert response.status_code == 401
    assert "not a well-formed JWT" in response.json()["message"]


# --- API tokens -------------------------------------------------------------------------------


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_an_api_token_acts_as_its_user_and_is_stored_hashed():
    dave = UserFactory(username="dave")
    token, raw = api_token_create(user=dave, name="laptop")
    assert raw.startswith("alk_") and len(raw) > 40
    assert token.digest == token_digest(raw) and raw not in (token.digest, token.prefix)
    assert raw.startswith(token.prefix)
    response = bearer(raw).get("/api/v1/requests/")
    assert response.status_code == 200
    assert AuditEvent.objects.filter(action="api_token.created", actor_label="dave").exists()


def test_an_unknown_api_token_is_refused():
    response = bearer("alk_" + "x" * 43).get("/api/v1/requests/")
    assert response.status_code == 401
    assert response.json()["message"] == "This API token is not valid."


def test_a_revoked_api_token_is_refused():
    token, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    response = bearer(raw).get("/api/v1/requests/")
    assert response.status_code == 401
    assert "was revoked" in response.json()["message"]


def test_an_expired_api_token_is_refused():
    token, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(raw).get("/api/v1/requests/")
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_a_disabled_users_token_is_refused():
    dave = UserFactory(username="dave")
    _, raw = api_token_create(user=dave, name="laptop")
    dave.is_active = False
    dave.save()
    assert bearer(raw).get("/api/v1/requests/").status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute():
    token, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    client = bearer(raw)
    client.get("/api/v1/grants/")
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    client.get("/api/v1/grants/")
    token.refresh_from_db()
    assert token.last_used_at == first_use  # no second write within the minute
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=2))
    client.get("/api/v1/grants/")
    token.refresh_from_db()
    assert token.last_used_at > first_use - timedelta(minutes=2)


def test_createapitoken_prints_the_token_alone_on_the_last_line():
    UserFactory(username="dave")
    out = StringIO()
    call_command("createapitoken", "dave", "--expires-in", "30d", stdout=out)
    raw = out.getvalue().rstrip("\n").splitlines()[-1]
    assert raw.startswith("alk_") and " " not in raw
    token = ApiToken.objects.get(digest=token_digest(raw))
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert bearer(raw).get("/api/v1/requests/").status_code == 200


@pytest.mark.parametrize(
    "args, words",
    [
        (["nobody"], "no user"),
        (["dave", "--expires-in", "soon"], "--expires-in"),
        (["dave", "--expires-in", "900d"], "at most 366 days"),
        (["dave", "--expires-in", "99999999999d"], "--expires-in: .*longer than any"),
        (["dave", "--expires-in", "\u00b2d"], "--expires-in"),
    ],
)
def test_createapitoken_refuses_bad_input(args, words):
    UserFactory(username="dave")
    with pytest.raises(CommandError, match=words):
        call_command("createapitoken", *args, stdout=StringIO())


# --- the "API tokens" page ----------------------------------------------------------------------


def test_the_tokens_page_shows_a_new_token_once(client):
    dave = UserFactory(username="dave")
    client.force_login(dave)
    page = client.get("/account/tokens/")
    assert page.status_code == 200
    assert b"You have no API tokens yet" in page.content

    created = client.post("/account/tokens/", {"name": "deploy script", "lifetime_days": "30"})
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    token = ApiToken.objects.get(user=dave)
    raw = created.content.decode().split('id="new-token" class="token-value" value="')[1]
    raw = raw.split('"')[0]
    assert token_digest(raw) == token.digest

    again = client.get("/account/tokens/").content.decode()
    assert raw not in again
    assert token.prefix in again and "deploy script" in again


def test_the_tokens_page_revokes_a_token(client):
    dave = UserFactory(username="dave")
    token, raw = api_token_create(user=dave, name="laptop")
    client.force_login(dave)
    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert response.status_code == 200
    assert b"is revoked" in response.content
    assert bearer(raw).get("/api/v1/requests/").status_code == 401


def test_nobody_revokes_another_persons_token_on_the_page(client):
    token, _ = api_token_create(user=UserFactory(username="erin"), name="laptop")
    client.force_login(UserFactory(username="dave"))
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_tokens_page_refuses_a_nameless_token(client):
    client.force_login(UserFactory(username="dave"))
    response = client.post("/account/tokens/", {"name": "", "lifetime_days": "30"})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_the_tokens_page_needs_sign_in(client):
    assert client.get("/account/tokens/").status_code == 302


# --- verified tokens are remembered, within the same limits -------------------------------


def test_a_token_asked_with_again_is_not_verified_again(oidc, monkeypatch):
    active_request("dave")
    verified = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: verified.append(1) or real_decode(*a, **k))
    token = oidc()
    for _ in range(3):
        assert oidc_client(token).get(CHECK).json()["allowed"] is True
    assert len(verified) == 1
    assert oidc_client(oidc(run_id="another-run")).get(CHECK).status_code == 200
    assert len(verified) == 2


def test_a_remembered_token_still_expires(oidc, monkeypatch):
    active_request("dave")
    now = time.time()
    token = oidc(iat=int(now), nbf=int(now), exp=int(now) + 120)
    assert oidc_client(token).get(CHECK).status_code == 200
    # Past exp plus the leeway, the remembered answer no longer counts.
    later = now + 120 + 61
    monkeypatch.setattr(authentication.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _clock_at(later))  # PyJWT's own clock
    assert "expired" in refusal(token)


def _clock_at(timestamp: float):
    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(timestamp, tz)

    return Clock


def test_a_token_is_remembered_only_for_the_audience_it_was_verified_for(oidc, settings):
    active_request("dave")
    token = oidc()
    assert oidc_client(token).get(CHECK).status_code == 200
    settings.AIRLOCK_OIDC_AUDIENCE = "https://another-portal.test"
    assert "audience" in refusal(token)


def test_the_remembered_tokens_are_bounded(oidc, monkeypatch):
    active_request("dave")
    monkeypatch.setattr(authentication, "VERIFIED_CACHE_SIZE", 10)
    monkeypatch.setattr(authentication, "_verified", {})
    for run in range(25):
        assert oidc_client(oidc(run_id=str(run))).get(CHECK).status_code == 200
        assert len(authentication._verified) <= 10


# --- the API token's read, by hand (requests_app.tokens) --------------------------------------


def test_an_api_token_is_read_with_its_user_as_the_orm_reads_them():
    """The token and its user come from one hand-written query (the hot path): every field
    must be what the ORM gives, with the same types, on this test run's database."""
    from requests_app.tokens import api_token_authenticate

    dave = UserFactory(username="dave", first_name="Dave", email="dave@example.com")
    dave.last_login = timezone.now()
    dave.save()
    token, raw = api_token_create(user=dave, name="laptop")
    by_hand = api_token_authenticate(raw=raw)
    by_orm = ApiToken.objects.select_related("user").get(pk=token.pk)
    for mine, theirs in ((by_hand, by_orm), (by_hand.user, by_orm.user)):
        for field in type(theirs)._meta.concrete_fields:
            value, expected = getattr(mine, field.attname), getattr(theirs, field.attname)
            assert (value, type(value)) == (expected, type(expected)), field.name
    assert by_hand.user.is_authenticated and by_hand.user.pk == dave.pk
    assert not by_hand._state.adding  # a saved row, as the ORM would give it


def test_a_check_with_an_api_token_takes_two_queries(django_assert_num_queries):
    """The token's read and the check's own; no health check, no last-use write within
    the minute."""
    active_request("dave")
    _, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    client = bearer(raw)
    target = {"repository": "acme/api", "environment": "production"}
    client.get("/api/v1/grants/check", target)  # its first use is recorded, and audited
    with django_assert_num_queries(2):
        response = client.get("/api/v1/grants/check", target)
    assert response.json()["allowed"] is True


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_replaced_when_reading_the_api_token(
    on_postgres, monkeypatch
):
    """The token's read stands in for Django's SELECT 1 health check: on a connection the
    server dropped, it must reconnect and authenticate, not fail the call."""
    import psycopg
    from django.db import close_old_connections

    _, raw = api_token_create(user=UserFactory(username="dave"), name="laptop")
    client = bearer(raw)
    assert client.get("/api/v1/grants/").status_code == 200
    dropped = on_postgres.connection.info.backend_pid
    db = on_postgres.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    close_old_connections()  # what a request's start does in production
    health_checks = []
    monkeypatch.setattr(on_postgres, "is_usable", lambda: health_checks.append(1) or True)
    response = client.get("/api/v1/grants/")
    assert response.status_code == 200, response.content
    assert on_postgres.connection.info.backend_pid != dropped
    assert health_checks == []
