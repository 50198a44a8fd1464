"""Routing a target to the most specific policy, deterministically."""

import pytest

from requests_app.policies import pattern_specificity, policy_for_target
from tests.requests_app.factories import AccessPolicyFactory

pytestmark = pytest.mark.django_db


def route(repository="acme/api", environment="production", access="reviewer"):
    policy = policy_for_target(repository=repository, environment=environment, access=access)
    return policy.name if policy else None


def test_an_exact_repository_beats_a_glob():
    AccessPolicyFactory(name="org-wide", repository_patterns=["acme/*"])
    AccessPolicyFactory(name="api-only", repository_patterns=["acme/api"])

    assert route() == "api-only"
    assert route(repository="acme/web") == "org-wide"


def test_a_longer_glob_beats_a_shorter_one():
    AccessPolicyFactory(name="any", repository_patterns=["*"])
    AccessPolicyFactory(name="acme", repository_patterns=["acme/*"])
    AccessPolicyFactory(name="acme-api", repository_patterns=["acme/api-*"])

    assert route(repository="acme/api-gateway") == "acme-api"
    assert route(repository="acme/web") == "acme"
    assert route(repository="other/web") == "any"


def test_environment_specificity_breaks_a_repository_tie():
    AccessPolicyFactory(name="prod-any", environment_patterns=["prod*"])
    AccessPolicyFactory(name="prod-exact", environment_patterns=["production"])

    assert route() == "prod-exact"
    assert route(environment="prod-eu") == "prod-any"


def test_equal_specificity_is_decided_by_name_whatever_the_creation_order():
    AccessPolicyFactory(name="zulu")
    AccessPolicyFactory(name="alpha")

    assert route() == "alpha"


def test_a_policy_only_matches_the_access_kinds_it_allows():
    AccessPolicyFactory(name="reviewers", access_kinds=["reviewer"])

    assert route(access="reviewer") == "reviewers"
    assert route(access="secret") is None


def test_matching_ignores_case_as_github_does():
    AccessPolicyFactory(name="acme", repository_patterns=["Acme/*"], environment_patterns=["Prod"])

    assert route(repository="ACME/Api", environment="prod") == "acme"


def test_no_matching_policy_routes_nowhere():
    AccessPolicyFactory(name="acme")

    assert route(repository="other/api") is None


def test_specificity_prefers_exact_then_more_literal_characters():
    assert pattern_specificity("acme/api") > pattern_specificity("acme/api-*")
    assert pattern_specificity("acme/api-*") > pattern_specificity("acme/*")
    assert pattern_specificity("acme/*") > pattern_specificity("*")
