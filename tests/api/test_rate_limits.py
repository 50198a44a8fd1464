"""The API's request rates (DRF throttles, portal.ratelimit.ApiRateThrottle): the grant check
per workflow repository or person, the rest per person; 429 in the API's error shape."""

import pytest

from tests.api.conftest import active_request, oidc_client, token_client
from tests.requests_app.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"api": "1000/min", "check": "1000/min", **rates},
        }

    return set_rates


def assert_throttled(response):
    assert response.status_code == 429, response.content
    assert 0 < int(response["Retry-After"]) <= 60
    body = response.json()
    assert "throttled" in body["message"] and body["errors"] == {}


def test_the_check_is_limited_per_workflow_repository(oidc, rates):
    rates(check="3/min")
    active_request("dave")
    for run in range(3):  # different runs of one repository count together
        assert oidc_client(oidc(run_id=str(run))).get(CHECK).status_code == 200
    assert_throttled(oidc_client(oidc(run_id="9")).get(CHECK))
    other = oidc_client(oidc({"repository": "acme/web"})).get(CHECK)
    assert other.status_code == 200, other.content


def test_the_check_is_limited_per_person_with_an_api_token(rates):
    rates(check="2/min")
    active_request("dave")
    dave = token_client(UserFactory(username="dave"))
    query = {"repository": "acme/api", "environment": "production"}
    for _ in range(2):
        assert dave.get(CHECK, query).json()["allowed"] is True
    assert_throttled(dave.get(CHECK, query))
    assert token_client(UserFactory(username="erin")).get(CHECK, query).status_code == 200


def test_the_rest_of_the_api_has_its_own_rate(rates):
    rates(api="2/min")
    dave = token_client(UserFactory(username="dave"))
    for _ in range(2):
        assert dave.get("/api/v1/requests/").status_code == 200
    assert_throttled(dave.get("/api/v1/grants/"))
    # The check is counted on its own: a person's scripts do not starve their workflows.
    query = {"repository": "acme/api", "environment": "production"}
    assert dave.get(CHECK, query).status_code == 200
