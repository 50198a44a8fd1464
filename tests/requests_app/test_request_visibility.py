"""Who sees a request: its requester, the approvers of the groups it is routed to, and
platform admins (staff with the permission to view requests, as superusers have). One rule,
the same in the API, the portal and the admin; the staff flag alone opens none of them."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def access_request():
    policy, _group, _users = approver_setup()  # routed to alice, bob and carol
    return AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)


def platform_admins():
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_accessrequest"))
    return [viewer, UserFactory(username="root", is_staff=True, is_superuser=True)]


def what_they_see(user, access_request, client) -> dict:
    api = APIClient()
    api.force_authenticate(user)
    listed = api.get("/api/v1/requests/")
    client.force_login(user)
    return {
        "api_detail": api.get(f"/api/v1/requests/{access_request.pk}/").status_code,
        "api_list": access_request.pk in [r["id"] for r in listed.json()["results"]],
        "portal": client.get(
            reverse("requests_app:detail", args=[access_request.pk])
        ).status_code,
        "admin": client.get(
            reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
        ).status_code,
    }


def test_staff_who_are_neither_requester_nor_approver_see_the_request_nowhere(
    access_request, client
):
    sam = UserFactory(username="sam", is_staff=True)

    assert what_they_see(sam, access_request, client) == {
        "api_detail": 404,
        "api_list": False,
        "portal": 404,
        "admin": 403,
    }
    api = APIClient()
    api.force_authenticate(sam)
    deny = api.post(f"/api/v1/requests/{access_request.pk}/deny", {}, format="json")
    assert deny.status_code == 404


def test_platform_admins_see_every_request_everywhere(access_request, client):
    for admin_user in platform_admins():
        assert what_they_see(admin_user, access_request, client) == {
            "api_detail": 200,
            "api_list": True,
            "portal": 200,
            "admin": 200,
        }, admin_user.username


def test_the_routed_approver_sees_it_everywhere_and_the_requester_in_the_portal_and_api(
    access_request, client
):
    seen = what_they_see(UserFactory(username="bob"), access_request, client)
    assert seen == {"api_detail": 200, "api_list": True, "portal": 200, "admin": 200}

    # The admin is for deciding; requesters follow their requests in the portal.
    seen = what_they_see(access_request.requester, access_request, client)
    assert {k: v for k, v in seen.items() if k != "admin"} == {
        "api_detail": 200,
        "api_list": True,
        "portal": 200,
    }
