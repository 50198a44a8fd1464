"""core.names: GitHub's rules for owner, repository, environment and secret names, and the
one canonical form every part of Airlock compares targets in."""

import pytest

from core.names import (
    NameRefused,
    canonical_environment,
    canonical_environment_pattern,
    canonical_owner,
    canonical_repository,
    canonical_repository_pattern,
    canonical_secret_name,
    canonical_target,
)


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("acme/api", "acme/api"),
        ("ACME/Api", "acme/api"),
        ("  Acme/API\n", "acme/api"),
        ("a/b", "a/b"),
        ("acme-corp/my_repo.v2", "acme-corp/my_repo.v2"),
        ("acme/.github", "acme/.github"),
        ("acme/...", "acme/..."),
        ("old-style-/api", "old-style-/api"),  # older accounts may end with a hyphen
        ("o" * 39 + "/" + "r" * 100, "o" * 39 + "/" + "r" * 100),
    ],
)
def test_repositories_within_githubs_rules_are_lower_cased(given, canonical):
    assert canonical_repository(given) == canonical


@pytest.mark.parametrize(
    "given",
    [
        "acme/..",
        "acme/.",
        "acme/api.git",
        "acme/API.GIT",
        "acme/api.wiki",
        "acme/",
        "/api",
        "acme",
        "acme/api/more",
        "-acme/api",
        "o" * 40 + "/api",
        "acme/" + "r" * 101,
        "acme/ap i",
        "ac_me/api",
        "acme/\u0430pi",  # Cyrillic а
        "\u212acme/api",  # the Kelvin sign, which str.lower() turns into k
        "acme/ap\u0131",  # dotless ı, which PostgreSQL's UPPER() turns into I
        "",
        "   ",
        None,
        42,
    ],
)
def test_repositories_outside_githubs_rules_are_refused_naming_the_field(given):
    with pytest.raises(NameRefused) as refused:
        canonical_repository(given)
    assert list(refused.value.message_dict) == ["repository"]
    assert refused.value.message_dict["repository"][0]


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("production", "production"),
        ("Production", "production"),
        ("PROD-eu/west", "prod-eu/west"),
        ("up sandbox", "up sandbox"),
        (" staging ", "staging"),
        ("e" * 255, "e" * 255),
        ("release:v1 (canary) #2", "release:v1 (canary) #2"),
    ],
)
def test_environments_within_the_rules_are_lower_cased(given, canonical):
    assert canonical_environment(given) == canonical


@pytest.mark.parametrize(
    "given",
    ["product\u0131on", "PRODUCT\u0130ON", "\u212aube", "prod\tuction", "prod\x00", "é", "e" * 256,
     "", " ", None],
)
def test_environments_outside_the_rules_are_refused(given):
    with pytest.raises(NameRefused) as refused:
        canonical_environment(given)
    assert list(refused.value.message_dict) == ["environment"]


def test_the_target_is_refused_naming_every_field_that_is_wrong():
    with pytest.raises(NameRefused) as refused:
        canonical_target(repository="acme/..", environment="product\u0131on")
    assert set(refused.value.message_dict) == {"repository", "environment"}
    assert canonical_target(repository="Acme/API", environment="Prod") == ("acme/api", "prod")


def test_owners_and_secret_names_have_their_own_rules():
    assert canonical_owner("Acme-Corp") == "acme-corp"
    with pytest.raises(NameRefused):
        canonical_owner("acme_corp")
    assert canonical_secret_name("deploy_Token") == "DEPLOY_TOKEN"
    for refused in ("GITHUB_TOKEN", "1TOKEN", "DEPLOY-TOKEN", "\u017fECRET"):  # ſ
        with pytest.raises(NameRefused):
            canonical_secret_name(refused)


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("acme/*", "acme/*"),
        ("ACME/Api-*", "acme/api-*"),
        ("*/*", "*/*"),
        ("acme/[a-c]??", "acme/[a-c]??"),
        ("acme-infra/deploy", "acme-infra/deploy"),
    ],
)
def test_repository_patterns_are_lower_cased(given, canonical):
    assert canonical_repository_pattern(given) == canonical


@pytest.mark.parametrize(
    "given",
    ["api", "*", "acme/..", "acme/.", "acme/api.git", "acme/re po", "acme/\u0430*", "acme/[ab",
     "ac_me/*", "acme/" + "r" * 101],
)
def test_repository_patterns_outside_the_rules_are_refused(given):
    with pytest.raises(NameRefused):
        canonical_repository_pattern(given)


def test_environment_patterns_follow_the_environment_rule():
    assert canonical_environment_pattern("Prod-*") == "prod-*"
    assert canonical_environment_pattern("*") == "*"
    for refused in ("product\u0131on", "prod-[a", "e" * 256, "\t"):
        with pytest.raises(NameRefused):
            canonical_environment_pattern(refused)
