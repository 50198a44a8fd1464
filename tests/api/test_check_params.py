"""The check's query parameters (grants.api.check_params) validate as
GrantCheckQuerySerializer does, value for value and error for error, however often the
same text is asked about (valid texts are remembered)."""

import pytest
from rest_framework.exceptions import ValidationError

from grants.api import check_params
from grants.serializers import GrantCheckQuerySerializer
from tests.api.conftest import active_request, token_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"

QUERIES = [
    {"repository": "Acme/API", "environment": "Production"},
    {"repository": "acme/api", "environment": "production", "access": "reviewer"},
    {"repository": " acme/api ", "environment": "production", "user": "  dave "},
    {"repository": "acme/api", "environment": "production", "secret": "DEPLOY_KEY"},
    {"repository": "", "environment": "", "access": "", "secret": "", "user": ""},
    {"repository": "acme", "environment": "production"},
    {"repository": "acme/api.git", "environment": "x" * 300},
    {"repository": "acme/api", "environment": "prod\ud800"},
    {"repository": "acme/api", "environment": "production", "access": "everything"},
    {"repository": "a" * 500, "user": "u" * 151, "secret": "s" * 101},
]


def _as_serializer(query):
    serializer = GrantCheckQuerySerializer(data=query)
    if serializer.is_valid():
        return dict(serializer.validated_data), None
    return None, serializer.errors


def _as_check(query):
    try:
        return check_params(query), None
    except ValidationError as problem:
        return None, problem.detail


@pytest.mark.parametrize("query", QUERIES)
def test_check_params_validates_as_the_serializer_does_each_time(query):
    expected = _as_serializer(query)
    for _ in range(3):  # the first time, and remembered
        assert _as_check(query) == expected


def test_a_remembered_valid_name_does_not_hide_a_refusal_of_another(client):
    dave = UserFactory(username="dave")
    active_request("dave")
    api = token_client(dave)
    good = api.get(CHECK, {"repository": "acme/api", "environment": "production"})
    assert good.status_code == 200 and good.json()["allowed"] is True
    for _ in range(2):
        bad = api.get(CHECK, {"repository": "acme/api", "environment": "x" * 300})
        assert bad.status_code == 400
        assert set(bad.json()["errors"]) == {"environment"}
        assert bad.json()["errors"]["environment"] == _as_serializer(
            {"repository": "acme/api", "environment": "x" * 300}
        )[1]["environment"]
