"""manage.py apply_policies: idempotent loading, and refusal of a bad file as a whole."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from requests_app.models import AccessPolicy, ApproverGroup, SecretDefinition

pytestmark = pytest.mark.django_db

POLICY_FILE = """\
approver_groups:
  - name: prod-approvers
    members: [alice, bob, carol]
    github_team: acme/sre
secrets:
  - name: DEPLOY_TOKEN
    kind: environment
    value_from_env: AIRLOCK_SECRET_DEPLOY_TOKEN
  - name: NPM_PUBLISH_TOKEN
    kind: organization
    org: acme
policies:
  - name: production
    repositories: ["acme/*"]
    environments: ["production", "prod-*"]
    access: [reviewer, secret]
    secrets: [DEPLOY_TOKEN]
    max_duration: 4h
    default_duration: 1h
    approvals_required: 2
    approver_groups: [prod-approvers]
    reason_min_length: 20
    pending_ttl: 24h
    break_glass: false
"""


@pytest.fixture
def policy_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_SECRET_DEPLOY_TOKEN", "ghp_deploy_value")
    path = tmp_path / "policies.yml"
    path.write_text(POLICY_FILE)
    return path


def apply(path) -> str:
    out = StringIO()
    call_command("apply_policies", str(path), stdout=out)
    return out.getvalue()


def test_applying_the_products_example_creates_everything(policy_file):
    output = apply(policy_file)

    assert "4 created, 0 changed, 0 unchanged" in output
    group = ApproverGroup.objects.get(name="prod-approvers")
    assert group.member_logins() == ["alice", "bob", "carol"]
    assert group.github_team == "acme/sre"
    policy = AccessPolicy.objects.get(name="production")
    assert policy.repository_patterns == ["acme/*"]
    assert policy.environment_patterns == ["production", "prod-*"]
    assert policy.max_duration == timedelta(hours=4)
    assert policy.approvals_required == 2
    assert list(policy.approver_groups.all()) == [group]
    assert [s.name for s in policy.secrets.all()] == ["DEPLOY_TOKEN"]
    deploy = SecretDefinition.objects.get(name="DEPLOY_TOKEN")
    assert deploy.get_value() == "ghp_deploy_value"
    assert b"ghp_deploy_value" not in bytes(deploy.encrypted_value)
    assert SecretDefinition.objects.get(name="NPM_PUBLISH_TOKEN").org == "acme"


def test_applying_the_same_file_twice_changes_nothing(policy_file):
    apply(policy_file)
    events_before = AuditEvent.objects.count()

    output = apply(policy_file)

    assert "0 created, 0 changed, 4 unchanged" in output
    assert AuditEvent.objects.count() == events_before


def test_a_changed_file_reports_exactly_what_changed(policy_file):
    apply(policy_file)
    policy_file.write_text(
        POLICY_FILE.replace("members: [alice, bob, carol]", "members: [alice, bob, dave]")
        .replace("max_duration: 4h", "max_duration: 2h")
    )

    output = apply(policy_file)

    assert "changed  approver group prod-approvers (members added, members removed)" in output
    assert "changed  policy production (max_duration)" in output
    assert ApproverGroup.objects.get().member_logins() == ["alice", "bob", "dave"]
    assert AuditEvent.objects.filter(action="policy_file.changed").count() == 2


def test_a_bad_file_is_refused_whole_with_line_and_field(policy_file):
    policy_file.write_text(
        POLICY_FILE.replace("max_duration: 4h", "max_duration: forever").replace(
            "name: prod-approvers", "name: prod approvers"
        )
    )

    with pytest.raises(CommandError) as refused:
        apply(policy_file)

    message = str(refused.value)
    assert "nothing changed" in message
    assert "policies[0].max_duration, line 18: 'forever' is not a duration" in message
    assert "approver_groups[0].name, line 2" in message
    assert not ApproverGroup.objects.exists()
    assert not AccessPolicy.objects.exists()


def test_a_missing_secret_variable_is_named(policy_file, monkeypatch):
    monkeypatch.delenv("AIRLOCK_SECRET_DEPLOY_TOKEN")

    with pytest.raises(CommandError, match="AIRLOCK_SECRET_DEPLOY_TOKEN is not set"):
        apply(policy_file)
    assert not SecretDefinition.objects.exists()


def test_an_unknown_group_reference_rolls_back_everything(policy_file):
    policy_file.write_text(POLICY_FILE.replace("approver_groups: [prod-approvers]",
                                               "approver_groups: [nobody]"))

    with pytest.raises(CommandError, match="no group named 'nobody'"):
        apply(policy_file)
    assert not ApproverGroup.objects.exists()
    assert not SecretDefinition.objects.exists()


def test_unknown_fields_and_a_default_above_the_maximum_are_refused(policy_file):
    policy_file.write_text(
        POLICY_FILE.replace("break_glass: false", "break_glass: false\n    approvers: 3")
        .replace("default_duration: 1h", "default_duration: 5h")
    )

    with pytest.raises(CommandError) as refused:
        apply(policy_file)

    message = str(refused.value)
    assert "policies[0].approvers, line 25: unknown field" in message
    assert "policies[0].default_duration, line 19: must not be longer than max_duration" in message


def test_a_duration_no_calendar_holds_is_refused_naming_the_field(policy_file):
    # timedelta raises OverflowError beyond 999,999,999 days: a traceback, not a refusal.
    policy_file.write_text(POLICY_FILE.replace("max_duration: 4h", "max_duration: 99999999999d"))

    with pytest.raises(CommandError) as refused:
        apply(policy_file)

    assert "policies[0].max_duration, line 18: " in str(refused.value)
    assert "longer than any" in str(refused.value)


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("policies: [unclosed\n")

    with pytest.raises(CommandError, match="not valid YAML"):
        apply(path)


TOKEN_FILE = """\
secrets:
  - name: PACKAGES_TOKEN
    kind: github_token
    permissions: {packages: write}
policies:
  - name: publish
    repositories: ["acme/*"]
    environments: [release]
    access: [token, secret]
    secrets: [PACKAGES_TOKEN]
    token_permissions: {contents: write, packages: write}
    approvals_required: 0
"""


def test_token_policies_and_github_token_secrets_are_applied_idempotently(tmp_path):
    path = tmp_path / "policies.yml"
    path.write_text(TOKEN_FILE)

    assert "2 created, 0 changed, 0 unchanged" in apply(path)
    policy = AccessPolicy.objects.get(name="publish")
    assert policy.access_kinds == ["token", "secret"]
    assert policy.token_permissions == {"contents": "write", "packages": "write"}
    secret = SecretDefinition.objects.get(name="PACKAGES_TOKEN")
    assert (secret.kind, secret.permissions, secret.has_value) == (
        "github_token", {"packages": "write"}, False
    )
    assert "0 created, 0 changed, 2 unchanged" in apply(path)

    path.write_text(TOKEN_FILE.replace("contents: write,", "contents: read,"))
    assert "changed  policy publish (token_permissions)" in apply(path)
    policy.refresh_from_db()
    assert policy.token_permissions == {"contents": "read", "packages": "write"}


def test_a_secret_turned_into_a_github_token_secret_drops_its_stored_value(policy_file):
    apply(policy_file)
    policy_file.write_text(
        TOKEN_FILE.replace("PACKAGES_TOKEN", "DEPLOY_TOKEN").replace("name: publish", "name: p2")
    )

    assert "changed  secret DEPLOY_TOKEN (kind, permissions, value)" in apply(policy_file)
    secret = SecretDefinition.objects.get(name="DEPLOY_TOKEN")
    assert (secret.kind, secret.has_value) == ("github_token", False)


def test_a_bad_token_permission_refuses_the_file_naming_its_line(tmp_path):
    path = tmp_path / "policies.yml"
    path.write_text(TOKEN_FILE.replace("contents: write", "contents: admin"))

    with pytest.raises(CommandError) as refused:
        apply(path)

    assert "policies[0].token_permissions.contents, line 11: contents takes read or write" in (
        str(refused.value)
    )
    assert not AccessPolicy.objects.exists()
    assert not SecretDefinition.objects.exists()


def test_slack_channel_and_slack_approvals_are_applied_and_their_changes_reported(
    policy_file,
):
    apply(policy_file)
    assert ApproverGroup.objects.get().slack_channel == ""
    assert AccessPolicy.objects.get().slack_approvals is True
    policy_file.write_text(
        POLICY_FILE.replace(
            "github_team: acme/sre", "github_team: acme/sre\n    slack_channel: C0123456789"
        ).replace("break_glass: false", "break_glass: false\n    slack_approvals: false")
    )

    output = apply(policy_file)

    assert "changed  approver group prod-approvers (slack_channel)" in output
    assert "changed  policy production (slack_approvals)" in output
    assert ApproverGroup.objects.get().slack_channel == "C0123456789"
    assert AccessPolicy.objects.get().slack_approvals is False
    assert "0 created, 0 changed, 4 unchanged" in apply(policy_file)


def test_a_channel_name_refuses_the_file_naming_its_line(policy_file):
    policy_file.write_text(
        POLICY_FILE.replace(
            "github_team: acme/sre", 'github_team: acme/sre\n    slack_channel: "#sre"'
        )
    )

    with pytest.raises(CommandError) as refused:
        apply(policy_file)

    assert "approver_groups[0].slack_channel, line 5: '#sre' is not a Slack channel id" in str(
        refused.value
    )
    assert not ApproverGroup.objects.exists()
