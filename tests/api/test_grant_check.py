"""GET /api/v1/grants/check: answered from time, scoped by the caller, audited sparingly."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from audit.models import AuditEvent
from grants.serializers import CheckApproverSerializer, CheckedGrantSerializer
from requests_app.models import AccessRequest
from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import AccessRequestFactory, UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"


def test_a_workflow_with_an_active_grant_is_allowed(oidc):
    access_request = active_request("dave", approvers=["alice", "bob"])
    response = oidc_client(oidc()).get(CHECK)
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is True
    grant = body["grant"]
    assert grant["id"] == access_request.grant.pk
    assert grant["request"] == access_request.pk
    assert grant["user"] == "dave"
    assert (grant["repository"], grant["environment"], grant["access"]) == (
        "acme/api", "production", "reviewer"
    )
    assert grant["expires_at"] and grant["granted_at"]
    assert [a["login"] for a in grant["approvers"]] == ["alice", "bob"]
    assert "dave holds reviewer access" in body["reason"]


def test_the_answer_is_written_as_the_schema_and_drf_would_write_it(oidc):
    """The check builds its JSON by hand (the hot path); it must match the documented
    serializer field for field, times written as DRF writes them."""
    access_request = active_request("dave", approvers=["alice", "bob"])
    grant = oidc_client(oidc()).get(CHECK).json()["grant"]
    assert set(grant) == set(CheckedGrantSerializer().fields)
    assert set(grant["approvers"][0]) == set(CheckApproverSerializer().fields)
    as_drf = serializers.DateTimeField().to_representation
    assert grant["granted_at"] == as_drf(access_request.granted_at)
    assert grant["expires_at"] == as_drf(access_request.expires_at)
    approvals = access_request.approvals.order_by("created_at", "id")
    assert grant["approvers"] == [
        {"login": a.approver.username, "approved_at": as_drf(a.created_at)} for a in approvals
    ]
    assert (grant["secret"], grant["break_glass"]) == (None, False)
    assert (grant["workflow_ref_pattern"], grant["ref_pattern"]) == ("", "")


def test_without_a_grant_the_answer_is_no_with_a_reason(oidc):
    response = oidc_client(oidc()).get(CHECK)
    assert response.status_code == 200
    assert response.json() == {
        "allowed": False,
        "grant": None,
        "reason": "dave holds no access to acme/api environment 'production' now.",
    }


def test_the_check_answers_from_time_not_from_the_sweep(oidc):
    # Status still says active (the sweep has not run), but the end has passed.
    access_request = active_request("dave", expires_in=timedelta(seconds=-1))
    assert access_request.status == AccessRequest.Status.ACTIVE
    assert oidc_client(oidc()).get(CHECK).json()["allowed"] is False


@pytest.mark.parametrize("status", ["approved", "revoked", "expired", "pending"])
def test_only_active_requests_count(oidc, status):
    access_request = active_request("dave")
    AccessRequest.objects.filter(pk=access_request.pk).update(status=status)
    assert oidc_client(oidc()).get(CHECK).json()["allowed"] is False


def test_another_persons_grant_does_not_count(oidc):
    active_request("erin")
    assert oidc_client(oidc()).get(CHECK).json()["allowed"] is False


def test_query_parameters_may_repeat_the_claims_in_any_case(oidc):
    active_request("dave")
    client = oidc_client(oidc())
    response = client.get(
        CHECK, {"repository": "ACME/api", "environment": "Production", "user": "DAVE"}
    )
    assert response.json()["allowed"] is True
    assert client.get(CHECK, {"access": "reviewer"}).json()["allowed"] is True
    assert client.get(CHECK, {"access": "secret"}).json()["allowed"] is False


@pytest.mark.parametrize(
    "query, words",
    [
        ({"repository": "acme/other"}, "cannot ask about acme/other"),
        ({"environment": "staging"}, "cannot ask about 'staging'"),
        ({"user": "erin"}, "cannot ask about erin"),
    ],
)
def test_query_parameters_cannot_widen_the_claims(oidc, query, words):
    active_request("erin", repository="acme/other", environment="staging")
    response = oidc_client(oidc()).get(CHECK, query)
    assert response.status_code == 403
    assert words in response.json()["message"]


def test_a_job_outside_any_environment_is_refused(oidc):
    active_request("dave")
    token = oidc(environment="")
    response = oidc_client(token).get(CHECK, {"environment": "production"})
    assert response.status_code == 403
    assert "no environment claim" in response.json()["message"]


def test_an_unknown_access_kind_is_a_400(oidc):
    response = oidc_client(oidc()).get(CHECK, {"access": "admin"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"access": ['"admin" is not a valid choice.']}


def test_bad_parameters_are_named_together_and_checked_the_same_each_time(oidc):
    client = oidc_client(oidc())
    for _ in range(2):  # the fields are shared between calls: no state may stick
        response = client.get(CHECK, {"access": "admin", "repository": "a" * 201, "user": ""})
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert set(errors) == {"access", "repository"}
        assert "no more than 200 characters" in errors["repository"][0]
    active_request("dave")
    assert client.get(CHECK, {"access": "reviewer", "user": ""}).json()["allowed"] is True


def test_the_check_takes_one_query(oidc, django_assert_num_queries):
    active_request("dave", approvers=["alice", "bob"])
    client = oidc_client(oidc())
    client.get(CHECK)  # the first answer of a run is audited (once): see below
    with django_assert_num_queries(1):
        response = client.get(CHECK)
    assert response.json()["allowed"] is True
    assert len(response.json()["grant"]["approvers"]) == 2


def test_an_allowed_answer_is_audited_once_per_workflow_run(oidc):
    access_request = active_request("dave")
    run_1 = oidc_client(oidc(run_id="101"))
    for _ in range(3):
        assert run_1.get(CHECK).json()["allowed"] is True
    events = AuditEvent.objects.filter(action="grant.checked")
    assert events.count() == 1
    event = events.get()
    assert event.target_id == str(access_request.grant.pk)
    assert event.actor_label == "oidc:dave@acme/api"
    assert event.detail["run_id"] == "101"
    assert event.detail["job_workflow_ref"].startswith("acme/api/.github/workflows/")

    oidc_client(oidc(run_id="102")).get(CHECK)
    assert events.count() == 2


def test_refused_answers_are_sampled_per_minute(oidc):
    client = oidc_client(oidc())
    for _ in range(3):
        assert client.get(CHECK).json()["allowed"] is False
    client.get(CHECK, {"repository": "acme/other"})
    refused = AuditEvent.objects.filter(action="grant.check_refused")
    assert refused.count() == 2  # one per target in the minute
    assert {e.target_repr for e in refused} == {"acme/api:production", "acme/other:production"}


# --- people (API token or session) ---------------------------------------------------------


def test_a_person_checks_their_own_grant():
    active_request("dave")
    client = token_client(UserFactory(username="dave"))
    response = client.get(CHECK, {"repository": "acme/api", "environment": "production"})
    assert response.json()["allowed"] is True
    assert AuditEvent.objects.filter(action="grant.checked", actor_label="dave").count() == 1


def test_a_person_must_name_the_target():
    response = token_client(UserFactory(username="dave")).get(CHECK, {"repository": "acme/api"})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["environment"]


def test_a_person_cannot_check_someone_elses_grant():
    active_request("erin")
    response = token_client(UserFactory(username="dave")).get(
        CHECK, {"repository": "acme/api", "environment": "production", "user": "erin"}
    )
    assert response.status_code == 403
    assert "only your own grants" in response.json()["message"]


def test_the_staff_flag_alone_cannot_check_someone_elses_grant():
    # Who sees other people's access is one rule (grants.selectors.user_sees_all_grants),
    # the same as the grant list and the admin: the staff flag alone opens none of them.
    active_request("erin")
    response = token_client(UserFactory(username="sam", is_staff=True)).get(
        CHECK, {"repository": "acme/api", "environment": "production", "user": "erin"}
    )
    assert response.status_code == 403
    assert "platform admins may check anyone's" in response.json()["message"]


@pytest.mark.parametrize("who", ["viewer", "superuser"])
def test_platform_admins_check_anyones_grant(who):
    from django.contrib.auth.models import Permission

    active_request("erin")
    if who == "viewer":
        admin = UserFactory(username="audrey", is_staff=True)
        admin.user_permissions.add(Permission.objects.get(codename="view_grant"))
    else:
        admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    response = token_client(admin).get(
        CHECK, {"repository": "acme/api", "environment": "production", "user": "erin"}
    )
    assert response.json()["allowed"] is True
    assert response.json()["grant"]["user"] == "erin"


def test_a_secret_grant_names_its_secret():
    from tests.grants.factories import environment_secret

    secret = environment_secret()
    active_request("dave", access="secret", secret=secret)
    client = token_client(UserFactory(username="dave"))
    query = {"repository": "acme/api", "environment": "production"}
    body = client.get(CHECK, {**query, "secret": "deploy_token"}).json()
    assert body["allowed"] is True and body["grant"]["secret"] == "DEPLOY_TOKEN"
    assert client.get(CHECK, {**query, "secret": "OTHER"}).json()["allowed"] is False


def test_the_longest_lasting_of_overlapping_grants_is_reported():
    active_request("dave", expires_in=timedelta(minutes=10))
    longer = active_request("dave", expires_in=timedelta(hours=2))
    AccessRequestFactory(requester=UserFactory(username="dave"))  # pending: ignored
    body = token_client(UserFactory(username="dave")).get(
        CHECK, {"repository": "acme/api", "environment": "production"}
    ).json()
    assert body["grant"]["request"] == longer.pk
    assert timezone.now() < longer.expires_at


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_replaced_within_the_check(
    oidc, on_postgres, monkeypatch
):
    """The check skips Django's SELECT 1 health check and lets its own query find a dead
    connection: it must reconnect and answer, not fail the job."""
    import psycopg
    from django.db import close_old_connections

    active_request("dave")
    client = oidc_client(oidc())
    assert client.get(CHECK).json()["allowed"] is True
    dropped = on_postgres.connection.info.backend_pid
    db = on_postgres.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    # What a request's start does in production (Django's test client skips it): the
    # connection is kept, and due a health check before its first query.
    close_old_connections()
    health_checks = []
    monkeypatch.setattr(on_postgres, "is_usable", lambda: health_checks.append(1) or True)
    response = client.get(CHECK)
    assert response.status_code == 200, response.content
    assert response.json()["allowed"] is True
    assert on_postgres.connection.info.backend_pid != dropped
    assert health_checks == []  # no SELECT 1 round trip: the query found out itself


@pytest.mark.parametrize(
    "accept, status, indented",
    [
        (None, 200, False),
        ("*/*", 200, False),
        ("application/json", 200, False),
        ("application/json; indent=2", 200, True),
        ("text/html", 406, False),
    ],
)
def test_the_answer_s_media_type_is_negotiated_as_drf_does(oidc, accept, status, indented):
    """The check skips DRF's negotiation for what callers send; the rest is DRF's."""
    active_request("dave")
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = oidc_client(oidc()).get(CHECK, **headers)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert (b'\n  "' in response.content) is indented
    if status == 200:
        assert response.json()["allowed"] is True


def test_a_format_parameter_is_still_drf_s_to_read(oidc):
    active_request("dave")
    assert oidc_client(oidc()).get(CHECK, {"format": "json"}).status_code == 200
    assert oidc_client(oidc()).get(CHECK, {"format": "xml"}).status_code == 404
