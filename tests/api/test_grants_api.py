"""/api/v1/grants/: listing and reading grants, and revoking one early."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission

from grants.models import Grant
from requests_app.models import AccessRequest
from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db


def test_listing_my_grants_with_their_state_on_github():
    access_request = active_request("dave")
    active_request("erin")
    response = token_client(UserFactory(username="dave")).get("/api/v1/grants/")
    assert response.status_code == 200
    (grant,) = response.json()["results"]
    assert grant["request"] == access_request.pk
    assert grant["requester"] == "dave"
    assert grant["state"] == "applied"
    assert grant["github_status"] == "applied"
    assert grant["active"] is True


def test_approvers_do_not_see_other_peoples_grants():
    policy, _, approvers = approver_setup()
    routed = active_request("dave", policy=policy)
    client = token_client(approvers["alice"])
    assert client.get("/api/v1/grants/").json()["results"] == []
    assert client.get(f"/api/v1/grants/{routed.grant.pk}/").status_code == 404


def test_platform_admins_see_every_grant():
    grants = {active_request("dave").grant.pk, active_request("erin").grant.pk}
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    response = token_client(admin).get("/api/v1/grants/")
    assert {g["id"] for g in response.json()["results"]} == grants


def test_grants_filter_by_state_target_and_active():
    in_force = active_request("dave")
    over = active_request("dave", environment="staging", expires_in=timedelta(seconds=-1))
    client = token_client(UserFactory(username="dave"))

    def requests_(query):
        response = client.get(f"/api/v1/grants/?{query}")
        assert response.status_code == 200, response.json()
        return {g["request"] for g in response.json()["results"]}

    assert requests_("active=true") == {in_force.pk}
    assert requests_("active=false") == {over.pk}
    assert requests_("environment=Staging") == {over.pk}
    assert requests_("state=applied&repository=acme/api") == {in_force.pk, over.pk}
    assert requests_("state=failed") == set()
    assert client.get("/api/v1/grants/?state=gone").status_code == 400


def test_retrieving_a_grant_and_a_404_for_others():
    mine = active_request("dave").grant
    others = active_request("erin").grant
    client = token_client(UserFactory(username="dave"))
    assert client.get(f"/api/v1/grants/{mine.pk}/").json()["id"] == mine.pk
    assert client.get(f"/api/v1/grants/{others.pk}/").status_code == 404
    assert client.get("/api/v1/grants/999999999999999999999/").status_code == 404


def test_the_requester_revokes_early_and_the_check_says_no_at_once():
    access_request = active_request("dave")
    client = token_client(UserFactory(username="dave"))
    grant = access_request.grant
    response = client.post(
        f"/api/v1/grants/{grant.pk}/revoke", {"comment": "done early"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["revoke_requested_by"] == "dave"
    assert body["github_status"] == "being revoked"
    assert body["active"] is False
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.REVOKED

    check = client.get("/api/v1/grants/check?repository=acme/api&environment=production")
    assert check.json()["allowed"] is False


def test_revoking_twice_is_a_409():
    grant = active_request("dave").grant
    client = token_client(UserFactory(username="dave"))
    assert client.post(f"/api/v1/grants/{grant.pk}/revoke", {}, format="json").status_code == 200
    response = client.post(f"/api/v1/grants/{grant.pk}/revoke", {}, format="json")
    assert response.status_code == 409
    assert "already being revoked" in response.json()["message"]


def test_someone_who_may_only_view_grants_cannot_revoke():
    grant = active_request("dave").grant
    auditor = UserFactory(username="audrey", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_grant"))
    client = token_client(auditor)
    assert client.get(f"/api/v1/grants/{grant.pk}/").status_code == 200
    response = client.post(f"/api/v1/grants/{grant.pk}/revoke", {}, format="json")
    assert response.status_code == 403
    assert "Only the requester or a platform admin" in response.json()["message"]
    assert Grant.objects.get(pk=grant.pk).revoke_requested_at is None


def test_a_view_grant_permission_without_the_staff_flag_shows_only_ones_own_grants():
    # Platform admins are staff with the permission (the admin admits only staff): a
    # permission left on an account that is not staff opens nothing, as for requests.
    grant = active_request("dave").grant
    former = UserFactory(username="frank", is_staff=False)
    former.user_permissions.add(Permission.objects.get(codename="view_grant"))
    client = token_client(former)
    assert client.get(f"/api/v1/grants/{grant.pk}/").status_code == 404
    assert grant.pk not in [g["id"] for g in client.get("/api/v1/grants/").json()["results"]]


def test_a_superuser_revokes_anyones_grant():
    grant = active_request("dave").grant
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    response = token_client(admin).post(f"/api/v1/grants/{grant.pk}/revoke", {}, format="json")
    assert response.status_code == 200
    assert response.json()["revoke_requested_by"] == "root"


def test_a_workflow_token_may_not_list_or_revoke_grants(oidc):
    grant = active_request("dave").grant
    client = oidc_client(oidc())
    assert client.get("/api/v1/grants/").status_code == 403
    assert client.post(f"/api/v1/grants/{grant.pk}/revoke", {}, format="json").status_code == 403
