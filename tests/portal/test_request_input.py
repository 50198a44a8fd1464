"""Input no view can store: a NUL byte in a query string or a form body.

PostgreSQL text cannot hold NUL, so a NUL that reached the ORM raised (a 500): the admin's
list filters and search pass raw GET values to it, and so does anything that reads
request.GET or request.POST itself. The portal refuses NUL before any view runs.
"""

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.api.conftest import token_client
from tests.requests_app.factories import AccessRequestFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")


def test_a_nul_in_an_admin_list_filter_is_400_on_postgres(admin_client, on_postgres):
    # Once a 500: "A string literal cannot contain NUL (0x00) characters."
    response = admin_client.get(CHANGELIST, {"status": "\x00"})
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize(
    "url, query",
    [
        (CHANGELIST, {"status": "\x00"}),
        (CHANGELIST, {"q": "acme\x00"}),
        (reverse("admin:grants_deploymentgate_changelist"), {"q": "\x00"}),
        (reverse("admin:audit_auditevent_changelist"), {"action": "x\x00y"}),
        (reverse("admin:autocomplete"), {"term": "\x00", "app_label": "requests_app"}),
        (reverse("requests_app:new"), {"repository": "acme/\x00", "environment": "p"}),
    ],
)
def test_a_nul_anywhere_in_a_query_string_is_400(admin_client, url, query):
    response = admin_client.get(url, query)
    assert response.status_code == 400
    assert response.content.decode() == "The request's query string contains a NUL character."


def test_a_nul_in_urlencoded_form_data_is_400_and_changes_nothing(admin_client):
    access_request = AccessRequestFactory(requester=UserFactory(username="dev"))
    admin_client.force_login(access_request.requester)
    response = admin_client.post(
        reverse("requests_app:cancel", args=[access_request.pk]),
        urlencode({"comment": "oops", "next": "/\x00"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.content.decode() == "The request's form data contains a NUL character."
    access_request.refresh_from_db()
    assert access_request.status == "pending"


def test_a_nul_in_an_api_query_is_400_in_the_api_error_shape(on_postgres):
    response = token_client(UserFactory(username="dave")).get(
        "/api/v1/requests/", {"repository": "\x00"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "The request's query string contains a NUL character.",
        "errors": {},
    }


def test_a_nul_in_multipart_form_data_is_400_too(admin_client):
    access_request = AccessRequestFactory(requester=UserFactory(username="dev"))
    admin_client.force_login(access_request.requester)
    response = admin_client.post(  # the test client sends multipart by default
        reverse("requests_app:cancel", args=[access_request.pk]), {"comment": "o\x00ps"}
    )
    assert response.status_code == 400
    access_request.refresh_from_db()
    assert access_request.status == "pending"


def test_a_view_that_reads_its_own_body_still_can(client, settings):
    # The webhook is csrf_exempt and reads the raw body to check its signature: form data
    # sent there is not parsed first (a multipart body could then no longer be read).
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = "s3cret"
    response = client.post(reverse("github-webhook"), {"payload": "{}"})
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["message"]
