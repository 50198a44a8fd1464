"""The policy file's reader keeps the rules the admin form keeps (requests_app.rules)."""

import pytest

from requests_app.policy_file import PolicyFileError, parse_policy_file

pytestmark = pytest.mark.django_db

POLICY = """\
approver_groups:
  - name: approvers
    members: [alice]
policies:
  - name: staging
    repositories: {repositories}
    environments: [staging]
    access: [reviewer]
    approvals_required: {approvals}
    approver_groups: {groups}
    max_duration: 4h
    default_duration: {default}
"""


def policy(repositories="[acme/api]", approvals=1, groups="[approvers]", default="1h"):
    return POLICY.format(
        repositories=repositories, approvals=approvals, groups=groups, default=default
    )


def refusal(text: str) -> str:
    with pytest.raises(PolicyFileError) as refused:
        parse_policy_file(text, environ={})
    return "\n".join(refused.value.problems)


def test_a_good_policy_reads():
    [spec] = parse_policy_file(policy(), environ={}).policies
    assert spec.repositories == ["acme/api"]


def test_a_repository_pattern_without_an_owner_is_refused():
    # `repositories: [api]` could never match a repository (they are owner/name).
    assert "policies[0].repositories" in refusal(policy(repositories="[api]"))
    assert "must name owner/repository" in refusal(policy(repositories="[api]"))


def test_approvals_without_approver_groups_are_refused():
    assert "is required when approvals_required is above 0" in refusal(policy(groups="[]"))


def test_no_approvals_need_no_approver_groups():
    [spec] = parse_policy_file(policy(approvals=0, groups="[]"), environ={}).policies
    assert spec.approver_groups == []


def test_a_default_above_the_maximum_is_refused():
    assert "must not be longer than max_duration" in refusal(policy(default="5h"))


TOKEN_POLICY = """\
secrets:
  - name: PACKAGES_TOKEN
    kind: github_token
{secret}
policies:
  - name: publish
    repositories: [acme/api]
    environments: [release]
    access: {access}
    approvals_required: 0
{policy}
"""


def token_file(*, access="[token]", policy="", secret="    permissions: {packages: write}"):
    return TOKEN_POLICY.format(access=access, policy=policy, secret=secret)


def test_a_token_policy_and_a_github_token_secret_read():
    document = parse_policy_file(
        token_file(policy="    token_permissions: {contents: write, packages: read}"),
        environ={},
    )
    [secret] = document.secrets
    assert (secret.kind, secret.permissions) == ("github_token", {"packages": "write"})
    [spec] = document.policies
    assert spec.access == ["token"]
    assert spec.token_permissions == {"contents": "write", "packages": "read"}


def test_the_permissions_may_be_written_as_lines():
    text = token_file(policy="    token_permissions:\n      contents: read\n      pages: write")
    [spec] = parse_policy_file(text, environ={}).policies
    assert spec.token_permissions == {"contents": "read", "pages": "write"}


def test_token_access_without_permissions_is_refused():
    problems = refusal(token_file())
    assert "policies[0].token_permissions, line 6: token access needs the token's" in problems


def test_an_unknown_permission_is_refused_naming_its_place():
    text = token_file(policy="    token_permissions:\n      contents: read\n      payroll: write")
    problems = refusal(text)
    assert "policies[0].token_permissions.payroll, line 13:" in problems
    assert "'payroll' is not a GitHub App repository permission" in problems


def test_a_level_the_permission_does_not_take_is_refused():
    problems = refusal(token_file(policy="    token_permissions: {workflows: read}"))
    assert "policies[0].token_permissions.workflows, line 11: workflows takes write" in problems


def test_a_permission_given_twice_is_refused():
    text = token_file(policy="    token_permissions:\n      contents: read\n      contents: write")
    assert "policies[0].token_permissions.contents, line 13: given twice" in refusal(text)


def test_token_permissions_must_be_a_mapping():
    problems = refusal(token_file(policy="    token_permissions: [contents]"))
    assert "policies[0].token_permissions, line 11: expected a mapping" in problems


def test_token_permissions_without_token_access_are_refused():
    text = token_file(access="[reviewer]", policy="    token_permissions: {contents: read}")
    assert "token_permissions need 'token' in access" in refusal(text)


def test_an_unknown_access_kind_lists_the_known_ones():
    assert "(reviewer, secret, token)" in refusal(token_file(access="[tokens]"))


def test_an_unknown_secret_kind_lists_the_known_ones():
    text = token_file(access="[reviewer]").replace("kind: github_token", "kind: vault")
    assert "secrets[0].kind, line 3: must be one of environment, organization, github_token" in (
        refusal(text)
    )


def test_a_github_token_secret_needs_permissions():
    problems = refusal(token_file(access="[reviewer]", secret=""))
    assert "secrets[0].permissions, line 2: a github_token secret needs the token's" in problems


def test_a_github_token_secret_takes_no_value_or_org():
    secret = "    permissions: {packages: write}\n    value_from_env: X\n    org: acme"
    problems = refusal(token_file(access="[reviewer]", secret=secret))
    assert "secrets[0].value_from_env, line 5: a github_token secret's value is a token" in (
        problems
    )
    assert "secrets[0].org, line 6: a github_token secret is written to the target's" in problems


def test_only_a_github_token_secret_has_permissions():
    text = token_file(access="[reviewer]").replace("kind: github_token", "kind: environment")
    assert "secrets[0].permissions, line 4: only a github_token secret has permissions" in (
        refusal(text)
    )


SLACK_POLICY = """\
approver_groups:
  - name: approvers
    members: [alice]
    {channel}
policies:
  - name: staging
    repositories: [acme/api]
    environments: [staging]
    access: [reviewer]
    approver_groups: [approvers]
    {slack_approvals}
"""


def slack_policy(channel="slack_channel: C0123456789", slack_approvals=""):
    return SLACK_POLICY.format(channel=channel, slack_approvals=slack_approvals)


def test_a_groups_slack_channel_and_a_policys_slack_approvals_read():
    document = parse_policy_file(
        slack_policy(slack_approvals="slack_approvals: false"), environ={}
    )
    assert document.groups[0].slack_channel == "C0123456789"
    assert document.policies[0].slack_approvals is False


def test_slack_approvals_default_to_on_and_the_channel_to_none():
    document = parse_policy_file(slack_policy(channel=""), environ={})
    assert document.groups[0].slack_channel == ""
    assert document.policies[0].slack_approvals is True


def test_a_quoted_empty_channel_means_none():
    document = parse_policy_file(slack_policy(channel='slack_channel: ""'), environ={})
    assert document.groups[0].slack_channel == ""


def test_a_channel_name_is_refused_asking_for_the_id_with_its_line():
    message = refusal(slack_policy(channel='slack_channel: "#prod-approvals"'))
    assert "approver_groups[0].slack_channel, line 4: '#prod-approvals' is not a Slack" in message
    assert "use the id (e.g. C0123456789" in message
    assert "not its #name" in message


def test_an_unquoted_hash_name_reads_as_a_comment_and_is_refused_not_emptied():
    # YAML reads `slack_channel: #prod` as an empty value followed by a comment.
    message = refusal(slack_policy(channel="slack_channel: #prod"))
    assert "approver_groups[0].slack_channel, line 4: is empty" in message
    assert "use the channel id" in message


def test_a_bare_name_or_a_list_of_channels_is_refused():
    assert "'general' is not a Slack channel id" in refusal(
        slack_policy(channel="slack_channel: general")
    )
    assert "slack_channel, line 4: expected a single value" in refusal(
        slack_policy(channel="slack_channel: [C0123456789]")
    )


def test_slack_approvals_must_be_true_or_false():
    message = refusal(slack_policy(slack_approvals="slack_approvals: sometimes"))
    assert "policies[0].slack_approvals, line 11: must be true or false" in message
