"""/api/v1/requests/: filing, listing, reading and deciding requests through the API, with
the same services (and so the same rules) as the web and the admin."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from requests_app.models import AccessRequest
from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db

REASON = "Deploying the hotfix for INC-1234"


@pytest.fixture
def routed():
    """A policy for acme/* production needing two of alice, bob and carol."""
    policy, group, approvers = approver_setup()
    return policy, approvers


def file_request(client, **overrides):
    body = {
        "repository": "acme/api",
        "environment": "production",
        "access": "reviewer",
        "reason": REASON,
        "duration_minutes": 60,
        **overrides,
    }
    return client.post("/api/v1/requests/", body, format="json")


def test_filing_a_request_answers_201_with_the_contract_fields(routed):
    dave = UserFactory(username="dave")
    response = file_request(token_client(dave))
    assert response.status_code == 201, response.json()
    body = response.json()
    for name in (
        "id", "status", "repository", "environment", "access", "secret", "reason",
        "duration_minutes", "requester", "approvals_required", "approvals", "created_at",
        "starts_at", "granted_at", "expires_at", "grant",
    ):
        assert name in body, name
    assert body["status"] == "pending"
    assert body["requester"] == "dave"
    assert body["approvals_required"] == 2
    assert body["approvals"] == [] and body["grant"] is None and body["secret"] is None
    # ISO 8601 with a time zone
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert AuditEvent.objects.filter(action="request.created", target_id=str(body["id"])).exists()


def test_filing_with_a_start_keeps_it(routed):
    starts_at = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    response = file_request(
        token_client(UserFactory(username="dave")), starts_at=starts_at.isoformat()
    )
    assert response.status_code == 201
    assert datetime.fromisoformat(response.json()["starts_at"]) == starts_at


def test_a_duration_above_the_policy_maximum_is_a_400_on_that_field(routed):
    response = file_request(token_client(UserFactory(username="dave")), duration_minutes=10_000)
    assert response.status_code == 400
    body = response.json()
    assert "duration_minutes" in body["errors"]
    assert "At most 240 minutes" in body["errors"]["duration_minutes"][0]
    assert "duration_minutes" in body["message"]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"access": "admin"}, "access"),
        ({"duration_minutes": "an hour"}, "duration_minutes"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": 10**30}, "duration_minutes"),
        ({"repository": "not a repository"}, "repository"),
        ({"reason": "short"}, "reason"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"secret": "DEPLOY_TOKEN"}, "secret"),
        ({"break_glass": "sometimes"}, "break_glass"),
        ({"reason": None}, "reason"),
    ],
)
def test_bad_input_is_a_400_with_field_errors(routed, overrides, field):
    response = file_request(token_client(UserFactory(username="dave")), **overrides)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_a_target_no_policy_covers_is_a_400_saying_so(routed):
    response = file_request(token_client(UserFactory(username="dave")), repository="other/api")
    assert response.status_code == 400
    body = response.json()
    assert "No access policy covers" in body["message"]
    assert "non_field_errors" in body["errors"]


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(routed, payload):
    client = token_client(UserFactory(username="dave"))
    response = client.post("/api/v1/requests/", payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"]


def test_a_form_encoded_body_is_a_415(routed):
    client = token_client(UserFactory(username="dave"))
    response = client.post("/api/v1/requests/", {"repository": "acme/api"})
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["message"]


def test_listing_shows_own_requests_and_those_routed_to_me(routed):
    policy, approvers = routed
    mine = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    someone_elses = AccessRequestFactory(requester=UserFactory(username="erin"), policy=policy)
    unrouted = AccessRequestFactory(requester=UserFactory(username="frank"))

    as_dave = token_client(UserFactory(username="dave")).get("/api/v1/requests/").json()
    assert [r["id"] for r in as_dave["results"]] == [mine.pk]

    as_alice = token_client(approvers["alice"]).get("/api/v1/requests/").json()
    ids = {r["id"] for r in as_alice["results"]}
    assert ids == {mine.pk, someone_elses.pk}
    assert unrouted.pk not in ids


def test_listing_filters_by_status_target_and_active(routed):
    policy, _ = routed
    dave = UserFactory(username="dave")
    pending = AccessRequestFactory(requester=dave, policy=policy)
    other_env = AccessRequestFactory(requester=dave, policy=policy, environment="staging")
    in_force = active_request("dave", policy=policy)
    ended = active_request("dave", policy=policy, expires_in=timedelta(seconds=-1))
    client = token_client(dave)

    def ids(query):
        response = client.get(f"/api/v1/requests/?{query}")
        assert response.status_code == 200, response.json()
        return {r["id"] for r in response.json()["results"]}

    assert ids("status=pending") == {pending.pk, other_env.pk}
    assert ids("environment=STAGING") == {other_env.pk}
    assert ids("repository=acme/api&environment=production&status=pending") == {pending.pk}
    assert ids("active=true") == {in_force.pk}
    assert ids("active=false") == {pending.pk, other_env.pk, ended.pk}


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=approvedish", "status"),
        ("active=maybe", "active"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
    ],
)
def test_bad_filters_and_pages_are_400s(query, field):
    response = token_client(UserFactory(username="dave")).get(f"/api/v1/requests/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_listing_is_paginated(routed):
    policy, _ = routed
    dave = UserFactory(username="dave")
    for environment in ("a", "b", "c"):
        AccessRequestFactory(requester=dave, policy=policy, environment=environment)
    page = token_client(dave).get("/api/v1/requests/?limit=2&offset=1").json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["previous"] and page["next"] is None


def test_retrieving_a_request_i_may_not_see_is_a_404(routed):
    strangers = AccessRequestFactory(requester=UserFactory(username="erin"))
    client = token_client(UserFactory(username="dave"))
    response = client.get(f"/api/v1/requests/{strangers.pk}/")
    assert response.status_code == 404
    assert response.json() == {"message": "Not found.", "errors": {}}
    assert client.get(f"/api/v1/requests/{strangers.pk}/").status_code == 404


def test_retrieving_my_request(routed):
    policy, _ = routed
    mine = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(UserFactory(username="dave")).get(f"/api/v1/requests/{mine.pk}/")
    assert response.status_code == 200
    assert response.json()["id"] == mine.pk


def test_two_approvals_approve_a_request(routed):
    policy, approvers = routed
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    url = f"/api/v1/requests/{request_.pk}/approve"

    first = token_client(approvers["alice"]).post(url, {"comment": "ok"}, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "pending"
    assert first.json()["approvals"][0]["approver"] == "alice"

    second = token_client(approvers["bob"]).post(url, {}, format="json")
    assert second.status_code == 200
    body = second.json()
    assert body["status"] == "approved"
    assert [a["approver"] for a in body["approvals"]] == ["alice", "bob"]
    assert all(datetime.fromisoformat(a["approved_at"]).tzinfo for a in body["approvals"])


def test_approving_own_request_is_refused_with_403(routed):
    policy, approvers = routed
    own = AccessRequestFactory(requester=approvers["alice"], policy=policy)
    response = token_client(approvers["alice"]).post(
        f"/api/v1/requests/{own.pk}/approve", {}, format="json"
    )
    assert response.status_code == 403
    assert "own request" in response.json()["message"]
    assert not own.approvals.exists()


def test_approving_twice_is_a_409(routed):
    policy, approvers = routed
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    client = token_client(approvers["alice"])
    url = f"/api/v1/requests/{request_.pk}/approve"
    assert client.post(url, {}, format="json").status_code == 200
    response = client.post(url, {}, format="json")
    assert response.status_code == 409
    assert "already approved" in response.json()["message"]


def test_approving_a_cancelled_request_is_a_409(routed):
    policy, approvers = routed
    dave = UserFactory(username="dave")
    request_ = AccessRequestFactory(requester=dave, policy=policy)
    cancel = token_client(dave).post(f"/api/v1/requests/{request_.pk}/cancel", {}, format="json")
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"

    response = token_client(approvers["alice"]).post(
        f"/api/v1/requests/{request_.pk}/approve", {}, format="json"
    )
    assert response.status_code == 409
    assert "cancelled" in response.json()["message"]


def test_an_approver_of_another_group_cannot_see_the_request(routed):
    policy, _ = routed
    _, _, others = approver_setup(approvers=("zoe",), name="other-policy")
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(others["zoe"]).post(
        f"/api/v1/requests/{request_.pk}/approve", {}, format="json"
    )
    assert response.status_code == 404


def test_platform_admins_who_are_not_approvers_get_403_deciding(routed):
    policy, _ = routed
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(admin).post(f"/api/v1/requests/{request_.pk}/deny", {}, format="json")
    assert response.status_code == 403
    assert "approver groups" in response.json()["message"]


def test_denying_a_request(routed):
    policy, approvers = routed
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(approvers["carol"]).post(
        f"/api/v1/requests/{request_.pk}/deny", {"comment": "not now"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "denied"
    assert response.json()["closed_by"] == "carol"
    assert response.json()["close_comment"] == "not now"


def test_only_the_requester_may_cancel(routed):
    policy, approvers = routed
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(approvers["alice"]).post(
        f"/api/v1/requests/{request_.pk}/cancel", {}, format="json"
    )
    assert response.status_code == 403
    assert "Only the requester" in response.json()["message"]


def test_a_comment_that_is_not_text_is_a_400(routed):
    policy, approvers = routed
    request_ = AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    response = token_client(approvers["alice"]).post(
        f"/api/v1/requests/{request_.pk}/approve", {"comment": {"a": 1}}, format="json"
    )
    assert response.status_code == 400
    assert "comment" in response.json()["errors"]


def test_without_credentials_the_api_answers_401_in_json():
    response = APIClient().get("/api/v1/requests/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["message"] == "Authentication credentials were not provided."


def test_a_browser_session_works_and_needs_the_csrf_token(routed):
    dave = UserFactory(username="dave")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(dave)
    assert client.get("/api/v1/requests/").status_code == 200
    refused = file_request(client)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]


def test_a_workflow_token_may_not_list_requests_nor_file_one_for_a_stranger(oidc):
    client = oidc_client(oidc())
    listed = client.get("/api/v1/requests/")
    assert listed.status_code == 403
    assert "only call the grant check" in listed.json()["message"]
    # dave has no portal account: the run cannot file under his name.
    filed = file_request(client)
    assert filed.status_code == 403
    assert "dave has no Airlock account" in filed.json()["message"]
    assert "/accounts/login/" in filed.json()["message"]
    assert not AccessRequest.objects.exists()
