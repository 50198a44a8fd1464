"""Properties of target names, drawn by Hypothesis from spellings of real targets: case
variants, look-alike letters (dotless ı, Cyrillic а, the Kelvin sign ...), dots, spaces,
slashes and control characters, and arbitrary text.

- Names that reach the same target are routed by the same policy. "The same target" is
  what the database answers, not what core.names says: a request filed (through the real
  service, so routed and stored as in production) under one spelling is in force, and the
  grant check, with its hand-written SQL on this test run's database (PostgreSQL in CI),
  is asked about the other spelling. When it answers allowed, both spellings must route to
  the request's policy; and two spellings with one canonical form must reach one target.
- A name refused by one way in is refused by every way in: the service, the API's
  serializers (request and check), the request form, the check's scope (person and OIDC
  claims), the deployment webhook's payload, policy routing and the grant engine's
  target lookup all accept or refuse each repository and environment alike.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError as ApiValidationError

from core.errors import NotAllowed
from core.names import NameRefused, canonical_environment, canonical_repository
from grants.api import check_params
from grants.check import grant_check, grant_check_scope
from grants.gates import gate_request_from_payload
from grants.services import target_for
from portal.authentication import OidcPrincipal
from requests_app.forms import AccessRequestForm
from requests_app.models import AccessRequest
from requests_app.policies import policy_for_target
from requests_app.serializers import AccessRequestCreateSerializer
from requests_app.services import access_request_create
from tests.requests_app.factories import AccessPolicyFactory, UserFactory, approver_setup

pytestmark = pytest.mark.django_db

REASON = "Property test: deploying a scripted change"
FIELDS = ("repository", "environment")

# Letters and what can stand in for them: look-alikes in other scripts, and characters
# that some case folding (Python's, PostgreSQL's, SQLite's) turns into ASCII.
LOOKALIKES = {
    "a": "\u0430\u00e1\u00e0\u0251",
    "c": "\u0441\u217d",
    "d": "\u0501",
    "e": "\u0435\u00e9",
    "i": "\u0131\u0130\u00ed\u0456\u2170",
    "k": "\u212a\u043a",
    "n": "\u00f1\u0578",
    "o": "\u043e\u03bf\u00f6\u2134",
    "p": "\u0440",
    "r": "\u0433",
    "s": "\u017f\u0455",
    "t": "\u03c4",
    "u": "\u03c5\u00fc",
}
INSERTIONS = (" ", ".", "..", "/", "/..", "\t", "\n", "\u200b", "\u00a0", "-", "_", ".git")
REPOSITORIES = ("acme/api", "acme/web", "acme/api-infra", "other/api", "acme/.github")
ENVIRONMENTS = ("production", "prod-eu", "staging", "pre production")
ODD_REPOSITORIES = ("acme/..", "acme/.", "acme/api.git", "acme/", "/api", "a" * 40 + "/api")
ODD_ENVIRONMENTS = ("", "   ", "e" * 256, "prod\x00", "prod/../uction")


@st.composite
def spelling_of(draw, base: str) -> str:
    """base respelled: letters in another case or swapped for a look-alike, and perhaps
    something inserted somewhere."""
    letters = []
    for char in base:
        how = draw(st.sampled_from(("same", "same", "upper", "lookalike")))
        if how == "upper":
            letters.append(char.upper())
        elif how == "lookalike" and char in LOOKALIKES:
            letters.append(draw(st.sampled_from(LOOKALIKES[char])))
        else:
            letters.append(char)
    text = "".join(letters)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(INSERTIONS)) + text[at:]
    return text


def names(bases, odd):
    return st.one_of(
        st.sampled_from(bases).flatmap(spelling_of),
        st.sampled_from(odd),
        st.text(max_size=12),
    )


repositories = names(REPOSITORIES, ODD_REPOSITORIES)
environments = names(ENVIRONMENTS, ODD_ENVIRONMENTS)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def policies():
    """A strict production policy, narrower ones beside it, and a lax catch-all: routing a
    look-alike to the catch-all is exactly the escape the properties look for."""
    approver_setup(
        name="production", repository_patterns=["acme/*"], environment_patterns=["production"]
    )
    AccessPolicyFactory(
        name="api-prod",
        repository_patterns=["acme/api*"],
        environment_patterns=["prod-*", "production"],
        approvals_required=1,
    )
    AccessPolicyFactory(
        name="staging", repository_patterns=["*/*"], environment_patterns=["staging"]
    )
    AccessPolicyFactory(
        name="everything-else",
        repository_patterns=["*/*"],
        environment_patterns=["*"],
        approvals_required=0,
    )
    return UserFactory(username="prop-dave")


def refused(rule, value) -> bool:
    try:
        rule(value)
    except NameRefused:
        return True
    return False


def _file(requester, repository, environment) -> AccessRequest:
    return access_request_create(
        requester=requester,
        repository=repository,
        environment=environment,
        access="reviewer",
        reason=REASON,
        duration_minutes=30,
    )


def _reaches(requester, repository, environment) -> bool | None:
    """Whether the check, asked about these names by the requester, finds the request in
    force; None when it refuses the names."""
    try:
        scope = grant_check_scope(caller=requester, repository=repository, environment=environment)
    except ValidationError:
        return None
    return grant_check(scope=scope).allowed


@PROPERTY_SETTINGS
@given(
    first=st.tuples(repositories, environments),
    second=st.tuples(repositories, environments),
)
# The attack, both ways round: a look-alike of production filed, production checked.
@example(first=("acme/api", "product\u0131on"), second=("acme/api", "production"))
@example(first=("ACME/Api", "Production"), second=("acme/api", "product\u0131on"))
def test_names_that_reach_the_same_target_are_routed_by_the_same_policy(
    policies, first, second
):
    requester = policies
    try:
        filed = _file(requester, *first)
    except ValidationError:
        return  # refused: the second property says every way in refuses it alike
    now = timezone.now()
    AccessRequest.objects.filter(pk=filed.pk).update(
        status=AccessRequest.Status.ACTIVE, granted_at=now, expires_at=now + timedelta(hours=1)
    )
    try:
        reaches = _reaches(requester, *second)
        if reaches:
            routed = policy_for_target(
                repository=second[0], environment=second[1], access="reviewer"
            )
            assert routed == filed.policy, (first, second, routed, filed.policy)
        if reaches is not None:
            same_name = (canonical_repository(first[0]), canonical_environment(first[1])) == (
                canonical_repository(second[0]),
                canonical_environment(second[1]),
            )
            assert reaches == same_name, (first, second)
    finally:
        AccessRequest.objects.filter(pk=filed.pk).delete()


_deliveries = itertools.count(1)


def _refusals_by_way_in(requester, repository, environment) -> dict[str, set[str]]:
    """For each way in, which of repository and environment it refused."""
    data = {
        "repository": repository,
        "environment": environment,
        "access": "reviewer",
        "reason": REASON,
        "duration_minutes": 30,
    }
    found = {}

    try:
        _file(requester, repository, environment).delete()
        found["service"] = set()
    except ValidationError as refusal:
        found["service"] = set(refusal.message_dict) & set(FIELDS)

    serializer = AccessRequestCreateSerializer(data=data)
    serializer.is_valid()
    found["api request"] = set(serializer.errors) & set(FIELDS)

    form = AccessRequestForm(data)
    form.is_valid()
    found["request form"] = set(form.errors) & set(FIELDS)

    preview = AccessRequestForm(data, preview=True)
    preview.is_valid()
    found["check policy"] = set(preview.errors) & set(FIELDS)

    # The check's endpoint: each parameter (where a blank one counts as not given), then
    # the scope those it took make.
    found["api check"], params = set(), {}
    for field, value in (("repository", repository), ("environment", environment)):
        try:
            params.update(check_params({field: value}))
        except ApiValidationError:
            found["api check"].add(field)
    try:
        grant_check_scope(caller=requester, **params)
    except ValidationError as refusal:
        found["api check"] |= set(refusal.message_dict) & set(FIELDS)

    try:
        grant_check_scope(caller=requester, repository=repository, environment=environment)
        found["check"] = set()
    except ValidationError as refusal:
        found["check"] = set(refusal.message_dict) & set(FIELDS)

    found["oidc claims"] = set()
    for field in FIELDS:
        claims = {
            "repository": "acme/api",
            "environment": "production",
            "actor": "prop-dave",
            "run_attempt": "1",  # as GitHub's always say; a re-run would ask GitHub who ran it
        }
        claims[field] = repository if field == "repository" else environment
        try:
            grant_check_scope(caller=OidcPrincipal(claims=claims))
        except NotAllowed:
            found["oidc claims"].add(field)

    owner, _, name = repository.partition("/")
    api = django_settings.GITHUB_API_URL.rstrip("/")
    payload = {
        "action": "requested",
        "environment": environment,
        "repository": {"full_name": repository},
        "installation": {"id": 1},
        "sender": {"login": "prop-dave", "id": 1},
        "deployment_callback_url": f"{api}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        f"/actions/runs/{next(_deliveries)}/deployment_protection_rule",
    }
    try:
        gate_request_from_payload(payload)
        found["deployment webhook"] = set()
    except ValidationError as refusal:
        keys = {"repository.full_name": "repository", "environment": "environment"}
        found["deployment webhook"] = {keys[k] for k in refusal.message_dict if k in keys}

    try:
        policy_for_target(repository=repository, environment=environment, access="reviewer")
        found["policy routing"] = set()
    except NameRefused as refusal:
        found["policy routing"] = set(refusal.message_dict)

    try:
        target_for(repository=repository, environment=environment, dry_run=True)
        found["grant engine"] = set()
    except NameRefused as refusal:
        found["grant engine"] = set(refusal.message_dict)
    return found


@PROPERTY_SETTINGS
@given(repository=repositories, environment=environments)
@example(repository="acme/..", environment="product\u0131on")
def test_a_name_refused_by_one_way_in_is_refused_by_every_way_in(
    policies, repository, environment
):
    expected = {
        field
        for field, rule, value in (
            ("repository", canonical_repository, repository),
            ("environment", canonical_environment, environment),
        )
        if refused(rule, value)
    }
    found = _refusals_by_way_in(policies, repository, environment)
    assert found == dict.fromkeys(found, expected), (repository, environment, found)
