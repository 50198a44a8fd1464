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
