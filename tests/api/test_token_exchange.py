"""POST /api/v1/tokens: a workflow's OIDC token exchanged for a GitHub App installation
token restricted to the job's repository, under a `token` grant in force for who started
the run attempt (PRODUCT.md "Minted tokens"). Minted on the local GitHub, which records
each token's scope; refusals say why, and the token's value reaches nothing but the answer.
"""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import NotAllowed
from grants.minted import minted_token_value, token_digest
from grants.models import Grant, MintedToken
from grants.services import grant_create_for_request, grant_revoke
from grants.tokens import minted_token_keep
from integrations.github.actions import WorkflowJob
from integrations.github.tokens import AppTokenClient
from requests_app.models import AccessRequest
from tests.api.conftest import active_request, oidc_client, token_client
from tests.api.test_workflow_requests import RUN, run_token, signed_in_with_github
from tests.fixtures import database_refuses
from tests.requests_app.factories import AccessPolicyFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens"
GRANTED = {"contents": "write", "packages": "read"}
# What Airlock's App holds on acme's installation.
APP_HOLDS = {"contents": "write", "packages": "write", "metadata": "read"}


@pytest.fixture
def app(github_app, settings):
    """Airlock's GitHub App installed on acme (holding APP_HOLDS), acme/api on it."""
    github_app(permissions=APP_HOLDS)
    settings.AIRLOCK_BASE_URL = "https://airlock.test"
    github_app.github.add_repo("acme/web")
    return github_app.github


@pytest.fixture
def policy():
    return AccessPolicyFactory(
        name="tokens",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions=GRANTED,
        workflow_requests=True,
    )


def token_request(policy, login="dave", **extra):
    """A token request in force, as filing and the engine leave it."""
    extra.setdefault("token_permissions", dict(policy.token_permissions))
    return active_request(login, access="token", policy=policy, **extra)


def in_force(access_request):
    """Approved and applied, as the engine leaves a token grant (nothing to write)."""
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=AccessRequest.Status.APPROVED, decided_at=timezone.now()
    )
    access_request.refresh_from_db()
    grant = grant_create_for_request(access_request=access_request)
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=AccessRequest.Status.ACTIVE, granted_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED, applied_at=now, expires_at=now + timedelta(hours=1)
    )


def exchange(token, body=None):
    return oidc_client(token).post(TOKENS, body or {}, format="json")


def minted_on_github(app, value):
    """The token as the local GitHub minted it: its repositories and permissions."""
    token = app.state.installation_token(value)
    assert token is not None, "the local GitHub minted no such token"
    return app.state.token_repositories(token), token.permissions


# --- minting ----------------------------------------------------------------------------------


def test_a_grant_in_force_mints_a_token_for_the_one_repository_with_its_permissions(
    app, oidc, policy
):
    access_request = token_request(policy)
    response = exchange(oidc())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["repository"] == "acme/api"
    assert body["permissions"] == GRANTED
    assert body["grant_id"] == access_request.grant.pk
    assert body["simulated"] is False
    assert body["grant_expires_at"]
    assert response["Cache-Control"] == "no-store"
    assert minted_on_github(app, body["token"]) == (["acme/api"], GRANTED)
    record = MintedToken.objects.get()
    assert record.grant == access_request.grant
    assert record.purpose == MintedToken.Purpose.EXCHANGE
    assert (record.repository, record.permissions, record.dry_run) == ("acme/api", GRANTED, False)
    assert bytes(record.encrypted_token) and body["token"].encode() not in bytes(
        record.encrypted_token
    )
    assert minted_token_value(record) == body["token"]
    assert record.digest == token_digest(body["token"])


def test_the_body_may_narrow_the_permissions(app, oidc, policy):
    token_request(policy)
    response = exchange(oidc(), {"permissions": {"contents": "read"}})
    assert response.status_code == 201, response.json()
    assert response.json()["permissions"] == {"contents": "read"}
    assert minted_on_github(app, response.json()["token"]) == (["acme/api"], {"contents": "read"})
    assert MintedToken.objects.get().permissions == {"contents": "read"}


@pytest.mark.parametrize(
    "asked, words",
    [
        ({"packages": "write"}, "packages: write (granted: read)"),
        ({"issues": "read"}, "issues (not granted)"),
        ({"contents": "write", "actions": "write"}, "actions (not granted)"),
    ],
)
def test_the_body_may_never_widen_them(app, oidc, policy, asked, words):
    token_request(policy)
    response = exchange(oidc(), {"permissions": asked})
    assert response.status_code == 403
    message = response.json()["message"]
    assert "may only narrow" in message and words in message
    assert "contents: write, packages: read" in message
    assert app.state.installation_tokens == []
    assert not MintedToken.objects.exists()


@pytest.mark.parametrize(
    "asked, field_words",
    [
        ({"contents": "admin"}, "contents takes read or write, not 'admin'"),
        ({"no_such_thing": "read"}, "'no_such_thing' is not a GitHub App repository permission"),
        ({"contents": "owner"}, '"owner" is not a valid choice'),
        ("contents:read", "Expected a dictionary"),
    ],
)
def test_permissions_that_are_none_are_a_400(app, oidc, policy, asked, field_words):
    token_request(policy)
    response = exchange(oidc(), {"permissions": asked})
    assert response.status_code == 400
    body = response.json()
    assert field_words in body["message"]
    assert any(name.startswith("permissions") for name in body["errors"])
    assert app.state.installation_tokens == []


def test_the_request_keeps_the_permissions_approved_when_the_policy_changes(app, oidc, policy):
    """What was approved is what the job gets: filing copies the policy's permissions."""
    dave = UserFactory(username="dave")
    filed = token_client(dave).post(
        "/api/v1/requests/",
        {
            "repository": "acme/api",
            "environment": "production",
            "access": "token",
            "reason": "Publishing the release packages",
            "duration_minutes": 30,
        },
        format="json",
    )
    assert filed.status_code == 201, filed.json()
    access_request = AccessRequest.objects.get(pk=filed.json()["id"])
    assert access_request.token_permissions == GRANTED
    created = AuditEvent.objects.get(action="request.created", target_id=str(access_request.pk))
    assert created.detail["token_permissions"] == GRANTED
    policy.token_permissions = {"contents": "write", "packages": "write", "actions": "write"}
    policy.save()
    in_force(access_request)
    response = exchange(oidc())
    assert response.status_code == 201, response.json()
    assert response.json()["permissions"] == GRANTED
    assert response.json()["grant_id"] == access_request.grant.pk


def test_a_grant_ending_within_the_hour_says_when(app, oidc, policy):
    access_request = token_request(policy, expires_in=timedelta(minutes=10))
    body = exchange(oidc()).json()
    assert body["grant_expires_at"] == access_request.expires_at.isoformat().replace(
        "+00:00", "Z"
    )
    assert body["grant_expires_at"] < body["expires_at"]
    assert "The grant ends sooner" in body["message"] and "revoked then" in body["message"]


def test_a_run_bound_grant_mints_for_its_own_run(app, oidc, policy):
    signed_in_with_github("dave", 5001)
    access_request = token_request(policy, run_id=RUN, run_attempt=1)
    response = exchange(run_token(oidc))
    assert response.status_code == 201, response.json()
    assert response.json()["grant_id"] == access_request.grant.pk


def test_a_grant_ending_while_github_mints_revokes_the_token_at_once(app, policy):
    """The token is kept under the grant's row lock, re-checking the grant: one that ended
    meanwhile (here: given back between the mint and the keep) gets no token handed out."""
    access_request = token_request(policy)
    minted = AppTokenClient().installation_token_mint(
        repository="acme/api", permissions={"contents": "read"}
    )
    grant_revoke(grant=access_request.grant, user=access_request.requester, comment="done")
    job = WorkflowJob(claims={"repository": "acme/api", "environment": "production",
                              "actor": "dave"})
    with pytest.raises(NotAllowed, match="grant ended while the token was being minted; the "
                       "token was revoked"):
        minted_token_keep(
            grant=access_request.grant, job=job, repository="acme/api", minted=minted,
            simulated=False,
        )
    assert app.state.installation_token(minted.token).revoked
    record = MintedToken.objects.get()
    assert record.is_erased and record.revoked_at is not None
    assert bytes(record.encrypted_token) == b""
    actions = list(AuditEvent.objects.filter(action__startswith="token.").values_list(
        "action", flat=True).order_by("id"))
    assert actions == ["token.minted", "token.revoked"]


# --- refusals ---------------------------------------------------------------------------------


def test_no_grant_is_refused_with_a_link_to_request_one(app, oidc, policy):
    response = exchange(oidc())
    assert response.status_code == 403
    message = response.json()["message"]
    assert "dave holds no token access to acme/api environment 'production' now." in message
    assert (
        "https://airlock.test/requests/new/?repository=acme/api&environment=production"
        "&access=token" in message
    )
    assert app.state.installation_tokens == []


def test_an_expired_grant_is_refused(app, oidc, policy):
    access_request = token_request(policy)
    past = timezone.now() - timedelta(seconds=1)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=past)
    Grant.objects.filter(access_request=access_request).update(expires_at=past)
    response = exchange(oidc())
    assert response.status_code == 403
    assert "holds no token access" in response.json()["message"]
    assert app.state.installation_tokens == []


def test_another_persons_grant_is_refused(app, oidc, policy):
    token_request(policy, login="erin")
    response = exchange(oidc(actor="dave"))
    assert response.status_code == 403
    assert "dave holds no token access" in response.json()["message"]
    assert app.state.installation_tokens == []


def test_a_reviewer_grant_is_no_token_grant(app, oidc, policy):
    active_request("dave", policy=policy)
    response = exchange(oidc())
    assert response.status_code == 403
    assert "holds no token access" in response.json()["message"]


def test_another_runs_grant_is_refused_saying_whose_it_is(app, oidc, policy):
    signed_in_with_github("dave", 5001)
    token_request(policy, run_id=RUN, run_attempt=1)
    response = exchange(run_token(oidc, run_id=RUN + 1))
    assert response.status_code == 403
    message = response.json()["message"]
    assert f"it belongs to run {RUN} of acme/api; this is run {RUN + 1}" in message
    assert app.state.installation_tokens == []


def test_a_grant_restricted_to_another_workflow_is_refused(app, oidc, policy):
    token_request(policy, workflow_ref_pattern="acme/api/.github/workflows/release.yml@*")
    response = exchange(oidc(job_workflow_ref="acme/api/.github/workflows/ci.yml@refs/heads/x"))
    assert response.status_code == 403
    assert "only workflows matching" in response.json()["message"]


def test_a_job_outside_an_environment_is_refused_saying_why(app, oidc, policy):
    token_request(policy)
    response = exchange(oidc(environment=""))
    assert response.status_code == 403
    assert "carries no environment claim" in response.json()["message"]


def test_a_person_is_refused(app, policy):
    token_request(policy)
    response = token_client(UserFactory(username="dave")).post(TOKENS, {}, format="json")
    assert response.status_code == 403
    assert "Only a workflow's OIDC token can exchange" in response.json()["message"]
    assert app.state.installation_tokens == []


def test_no_credentials_is_a_401(api):
    response = api.post(TOKENS, {}, format="json")
    assert response.status_code == 401


# --- GitHub and configuration -----------------------------------------------------------------


def test_a_permission_the_app_lacks_is_answered_with_githubs_words(app, oidc, settings):
    wide = AccessPolicyFactory(
        name="wide",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions={"contents": "read", "workflows": "write"},
    )
    token_request(wide)
    response = exchange(oidc())
    assert response.status_code == 409
    message = response.json()["message"]
    assert "GitHub refused to mint a token for acme/api" in message
    assert "not granted to this installation" in message
    assert "must itself hold every permission" in message
    assert not MintedToken.objects.exists()


def test_github_not_answering_is_a_503_to_try_again(app, oidc, policy):
    app.faults.add("POST", "/app/installations/*/access_tokens", status=502, times=None)
    token_request(policy)
    response = exchange(oidc())
    assert response.status_code == 503
    assert "GitHub did not mint the token" in response.json()["message"]
    assert "try again shortly" in response.json()["message"]
    assert not MintedToken.objects.exists()


def test_no_app_credentials_is_a_503_naming_the_settings(app, oidc, policy, settings):
    settings.GITHUB_APP_PRIVATE_KEY = ""
    token_request(policy)
    response = exchange(oidc())
    assert response.status_code == 503
    message = response.json()["message"]
    for name in ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"):
        assert name in message
    assert app.state.installation_tokens == []


def test_dry_run_simulates_without_github(github, oidc, policy, settings):
    settings.AIRLOCK_DRY_RUN = True
    settings.GITHUB_APP_ID = ""
    token_request(policy)
    response = exchange(oidc(), {"permissions": {"packages": "read"}})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["simulated"] is True
    assert body["token"].startswith("dryrun-")
    assert body["permissions"] == {"packages": "read"}
    assert body["message"].startswith("Simulated (dry-run): nothing was minted")
    assert github.state.installation_tokens == []
    record = MintedToken.objects.get()
    assert record.dry_run is True
    event = AuditEvent.objects.get(action="token.minted")
    assert event.detail["dry_run"] is True


def test_a_grant_made_in_dry_run_mints_no_real_token(app, oidc, policy, settings):
    # Dry-run is the grant's, fixed when it was made (Target.dry_run), as the engine
    # keeps it: switching the setting off does not make a simulated grant real.
    settings.AIRLOCK_DRY_RUN = True
    access_request = token_request(policy)
    assert Grant.objects.get(access_request=access_request).target.dry_run

    settings.AIRLOCK_DRY_RUN = False  # the evaluation is over; Airlock goes live
    response = exchange(oidc())

    assert not app.state.installation_tokens, (
        f"a simulated grant minted a real token (HTTP {response.status_code})"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["simulated"] is True
    assert MintedToken.objects.get().dry_run is True


def test_a_real_grant_is_never_simulated_once_dry_run_is_on(app, oidc, policy, settings):
    token_request(policy)

    settings.AIRLOCK_DRY_RUN = True
    response = exchange(oidc())

    assert response.status_code == 201, response.json()
    assert response.json()["simulated"] is False
    assert minted_on_github(app, response.json()["token"]) == (["acme/api"], GRANTED)


def refusing_to_record_tokens():
    """The database refuses every new MintedToken row, as if it went away between the
    mint and the record."""
    return database_refuses(MintedToken, on="INSERT", reason="database went away")


def test_a_token_the_exchange_could_not_record_is_revoked_at_once(app, oidc, policy):
    # A token in no row is one neither the grant's end nor the sweep would ever find.
    token_request(policy)

    with refusing_to_record_tokens():
        response = exchange(oidc())
    assert response.status_code == 500

    minted = app.state.installation_tokens
    assert len(minted) == 1
    assert MintedToken.objects.count() == 0
    assert minted[0].revoked, "a minted token no row records is live on GitHub"
    body = response.json()
    assert "minted the token but could not record it" in body["message"]
    assert "it was revoked at once" in body["message"]
    assert "token" not in body and minted[0].value not in json.dumps(body)


# --- the value goes nowhere but the answer ----------------------------------------------------


def test_the_audit_names_the_token_by_digest_and_nothing_holds_its_value(
    app, oidc, policy, caplog
):
    caplog.set_level(logging.DEBUG)
    access_request = token_request(policy)
    response = exchange(oidc(), {"permissions": {"contents": "read"}})
    assert response.status_code == 201
    value = response.json()["token"]
    event = AuditEvent.objects.get(action="token.minted")
    assert event.detail["token"] == token_digest(value)
    assert event.detail["repository"] == "acme/api"
    assert event.detail["permissions"] == {"contents": "read"}
    assert event.actor_label == "oidc:dave@acme/api"
    assert event.target_id == str(access_request.grant.pk)
    every_event = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert value not in every_event
    assert token_digest(value) in every_event
    logged = "\n".join(
        [caplog.text]
        + [json.dumps(vars(r), default=str) for r in caplog.records]
    )
    assert "POST /api/v1/tokens 201" in logged  # the access log saw the call...
    assert value not in logged  # ...and nothing logged the token
