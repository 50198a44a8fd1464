"""Slack in the admin: approver groups' channel, and policies' Slack decisions."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from requests_app.models import AccessPolicy, ApproverGroup
from tests.requests_app.factories import AccessPolicyFactory, ApproverGroupFactory
from tests.requests_app.test_admin import policy_form

pytestmark = pytest.mark.django_db

GROUP_ADD = reverse("admin:requests_app_approvergroup_add")


def group_form(**overrides):
    data = {
        "name": "sre",
        "description": "",
        "github_team": "",
        "slack_channel": "C0123456789",
        "members-TOTAL_FORMS": "0",
        "members-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_the_approver_group_form_saves_a_slack_channel_and_audits_it(client, platform_admin):
    response = client.post(GROUP_ADD, group_form())

    assert response.status_code == 302, response.content.decode()
    group = ApproverGroup.objects.get(name="sre")
    assert group.slack_channel == "C0123456789"
    change = reverse("admin:requests_app_approvergroup_change", args=[group.pk])
    client.post(change, group_form(slack_channel="G0987654321"))
    event = AuditEvent.objects.get(action="approvergroup.changed")
    assert event.detail["before"]["slack_channel"] == "C0123456789"
    assert event.detail["after"]["slack_channel"] == "G0987654321"


@pytest.mark.parametrize("channel", ["#sre", "sre", "c0123456789"])
def test_the_approver_group_form_refuses_a_channel_name_asking_for_the_id(
    client, platform_admin, channel
):
    response = client.post(GROUP_ADD, group_form(slack_channel=channel))

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["slack_channel"]
    assert "is not a Slack channel id" in message
    assert "not its #name" in message
    assert not ApproverGroup.objects.exists()


def test_the_approver_group_list_shows_the_channel(client, platform_admin):
    ApproverGroupFactory(name="sre", slack_channel="C0123456789")
    ApproverGroupFactory(name="dba")

    page = client.get(reverse("admin:requests_app_approvergroup_changelist")).content.decode()

    assert "column-slack_channel_column" in page
    assert "C0123456789" in page


def test_the_policy_form_has_a_slack_fieldset_and_a_new_policy_allows_slack(
    client, platform_admin
):
    response = client.get(reverse("admin:requests_app_accesspolicy_add"))

    page = response.content.decode()
    assert ">Slack</h2>" in page
    assert "the card links here instead" in page
    assert '<input type="checkbox" name="slack_approvals"' in page
    assert response.context["adminform"].form["slack_approvals"].value() is True


def test_the_policy_form_turns_slack_decisions_off_and_on_audited(client, platform_admin):
    client.post(reverse("admin:requests_app_accesspolicy_add"), policy_form(slack_approvals="on"))
    policy = AccessPolicy.objects.get()
    assert policy.slack_approvals is True
    change = reverse("admin:requests_app_accesspolicy_change", args=[policy.pk])

    # An unticked checkbox is not posted: off.
    response = client.post(change, policy_form())

    assert response.status_code == 302, response.content.decode()
    policy.refresh_from_db()
    assert policy.slack_approvals is False
    event = AuditEvent.objects.get(action="accesspolicy.changed")
    assert event.detail["changed"] == ["slack_approvals"]
    assert event.detail["before"] == {"slack_approvals": True}
    assert event.detail["after"] == {"slack_approvals": False}


def test_the_policy_list_shows_and_filters_slack_approvals(client, platform_admin):
    AccessPolicyFactory(name="staging", slack_approvals=True)
    AccessPolicyFactory(name="production", slack_approvals=False)
    changelist = reverse("admin:requests_app_accesspolicy_changelist")

    page = client.get(changelist).content.decode()
    filtered = client.get(changelist, {"slack_approvals__exact": "0"})

    assert "column-slack_approvals" in page
    assert [p.name for p in filtered.context["cl"].result_list] == ["production"]
