"""The OpenAPI schema and docs, and errors that are JSON everywhere under /api/."""

import json

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient, APIRequestFactory

from portal.api_errors import api_exception_handler
from tests.api.conftest import token_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/grants/check" in target.read_text()


@pytest.fixture
def schema():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_every_operation_documents_its_errors_with_the_error_shape(schema):
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) == 13
    for path, method, operation in operations:
        responses = operation["responses"]
        assert "401" in responses and "403" in responses, (path, method)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (path, method, status)
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_request_representation_has_the_contract_fields(schema):
    properties = schema["components"]["schemas"]["AccessRequest"]["properties"]
    for name in (
        "id", "status", "repository", "environment", "access", "secret", "reason",
        "duration_minutes", "requester", "approvals_required", "approvals", "created_at",
        "starts_at", "granted_at", "expires_at", "grant",
    ):
        assert name in properties, name
    assert properties["created_at"]["format"] == "date-time"


def test_the_docs_page_loads_swagger_from_the_portal_not_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_an_unknown_api_path_is_a_json_404():
    response = APIClient().post("/api/v2/whatever", {}, format="json")
    assert response.status_code == 404
    assert response.json() == {
        "message": "There is no API endpoint at /api/v2/whatever.",
        "errors": {},
    }


def test_a_wrong_method_is_a_json_405():
    response = token_client(UserFactory(username="dave")).delete("/api/v1/requests/")
    assert response.status_code == 405
    assert response.json() == {"message": 'Method "DELETE" not allowed.', "errors": {}}


def test_an_unexpected_error_is_a_json_500_and_logged(caplog):
    request = APIRequestFactory().get("/api/v1/requests/")
    response = api_exception_handler(RuntimeError("boom"), {"view": None, "request": request})
    assert response.status_code == 500
    assert response.data == {
        "message": "Airlock hit an internal error; it has been logged.",
        "errors": {},
    }
    assert "boom" in caplog.text


def test_a_throttled_answer_keeps_the_error_shape():
    from rest_framework.exceptions import Throttled

    response = api_exception_handler(Throttled(wait=30), {"view": None})
    assert response.status_code == 429
    assert response.data["message"].startswith("Request was throttled.")
    assert response["Retry-After"] == "30"


@pytest.mark.parametrize("depth", [50_000, 101])
def test_json_nested_too_deeply_is_a_400_in_the_error_shape(depth):
    # 50,000 deep was a RecursionError in the JSON parser (a 500); anything past the bound
    # is refused before a serializer or a service walks it.
    body = "[" * depth + "]" * depth
    response = token_client(UserFactory(username="dave")).post(
        "/api/v1/requests/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "JSON parse error - nested more than 100 levels deep.",
        "errors": {},
    }


def test_json_nested_to_the_bound_is_parsed_as_usual():
    body = "[" * 100 + "]" * 100
    response = token_client(UserFactory(username="dave")).post(
        "/api/v1/requests/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid data. Expected a dictionary, but got list."
