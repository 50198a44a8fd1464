"""Property-based tests of the whole API from its own OpenAPI schema (schemathesis):
whatever schema-valid input it makes up, the API never answers 5xx, and every answer
matches the schema (status documented, JSON of the documented shape, headers).

In process over WSGI, authenticated with an API token of a user who has requests of their
own, an active grant, and requests routed to them as an approver, so that success paths
are reached as well as refusals. Then negative examples, input the schema refuses, on
objects that exist: every one must be a 4xx. Bounded: a few examples per operation.
(tests/property/test_no_server_errors.py fuzzes the rest of the portal, and lists this
schema's operations as fuzzed here.)
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from grants.models import Grant
from requests_app.models import AccessRequest
from requests_app.tokens import api_token_create
from tests.api.conftest import active_request
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def api_schema(db):
    from portal.wsgi import application

    # As Django's test client does: a request must not close the connection that holds
    # the test's transaction (it would on PostgreSQL, where connections persist).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_headers(db):
    policy, _, approvers = approver_setup(approvers=("alice", "bob"))
    alice = approvers["alice"]
    AccessRequestFactory(requester=alice, policy=policy)
    AccessRequestFactory(requester=UserFactory(username="dave"), policy=policy)
    active_request("alice", policy=policy)
    active_request("dave", policy=policy)
    _, raw = api_token_create(user=alice, name="schemathesis")
    return {"Authorization": f"Bearer {raw}"}


def test_the_api_keeps_to_its_schema_and_never_fails(api_schema, api_headers):
    # Each operation gets its own Hypothesis run (schemathesis' pytest integration does not
    # work with this pytest); a failure names the operation and the request that broke it.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 13

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def keeps_to_the_schema(case):
            case.call_and_validate(headers=api_headers, checks=CHECKS)

        keeps_to_the_schema()


def _existing_ids() -> dict[str, int]:
    """For each operation on one object, an object of api_headers' world it can act on,
    so that a negative example is refused for its input, not for a missing object."""
    alice_pending = AccessRequest.objects.filter(requester__username="alice", status="pending")
    dave_pending = AccessRequest.objects.filter(requester__username="dave", status="pending")
    alice_active = AccessRequest.objects.filter(requester__username="alice", status="active")
    return {
        "/api/v1/requests/{id}/": dave_pending.get().pk,
        "/api/v1/requests/{id}/approve": dave_pending.get().pk,
        "/api/v1/requests/{id}/deny": dave_pending.get().pk,
        "/api/v1/requests/{id}/cancel": alice_pending.get().pk,
        "/api/v1/requests/{id}/extend": alice_active.get().pk,
        "/api/v1/grants/{id}/": Grant.objects.get(access_request=alice_active.get()).pk,
        "/api/v1/grants/{id}/revoke": Grant.objects.get(access_request=alice_active.get()).pk,
    }


def test_input_outside_the_schema_is_refused_never_a_server_error(api_schema, api_headers):
    # Negative examples: each breaks the schema somewhere (a wrong type, a number past its
    # bound, a missing field), on an object that exists. A 4xx, never a failure.
    ids = _existing_ids()
    operations = [result.ok() for result in api_schema.get_all_operations()]

    for operation in operations:
        path_parameters = {"id": ids[operation.path]} if "{id}" in operation.path else None

        @given(
            case=operation.as_strategy(
                generation_mode=GenerationMode.NEGATIVE, path_parameters=path_parameters
            )
        )
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def is_refused(case):
            response = case.call(headers=api_headers)
            assert response.status_code < 500, (case.method, case.path, case.body, case.query)

        is_refused()
