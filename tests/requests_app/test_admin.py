"""The admin as approvers and platform admins use it: who sees what, and deciding."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditEvent
from requests_app.models import AccessPolicy, AccessRequest, SecretDefinition
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    ApproverGroupFactory,
    SecretDefinitionFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")


def change_url(access_request):
    return reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])


def approve_url(access_request):
    return reverse("admin:requests_app_accessrequest_approve", args=[access_request.pk])


def deny_url(access_request):
    return reverse("admin:requests_app_accessrequest_deny", args=[access_request.pk])


def run_action(client, action, access_requests, *, comment=None, query=""):
    """The two steps of an action with a comment page: choose, then confirm."""
    ids = [str(r.pk) for r in access_requests]
    first = client.post(
        CHANGELIST + query, {"action": action, "index": "0", ACTION_CHECKBOX_NAME: ids}
    )
    if comment is None:
        return first
    return client.post(
        CHANGELIST + query,
        {"action": action, ACTION_CHECKBOX_NAME: ids, "post": "yes", "comment": comment},
        follow=True,
    )


@pytest.fixture
def routed():
    """Policy routed to alice, bob and carol; a pending request from dev needing two."""
    policy, group, users = approver_setup(approvals_required=2)
    access_request = AccessRequestFactory(
        requester=UserFactory(username="dev"), policy=policy, repository="acme/api"
    )
    return access_request, users


def test_approver_sees_only_the_requests_routed_to_their_groups(client, routed):
    access_request, users = routed
    other_policy = AccessPolicyFactory(
        approver_groups=[ApproverGroupFactory(members=["zed"])],
        repository_patterns=["other/*"],
    )
    elsewhere = AccessRequestFactory(policy=other_policy, repository="other/secret-project")
    client.force_login(users["alice"])

    page = client.get(CHANGELIST + "?awaiting=all").content.decode()

    assert change_url(access_request) in page
    assert change_url(elsewhere) not in page
    assert "other/secret-project" not in page
    assert client.get(change_url(elsewhere)).status_code == 302  # "does not exist" redirect


def test_approver_lands_on_what_awaits_their_decision(client, routed):
    access_request, users = routed
    own = AccessRequestFactory(requester=users["alice"], policy=access_request.policy)
    client.force_login(users["alice"])

    page = client.get(CHANGELIST).content.decode()

    assert change_url(access_request) in page
    assert change_url(own) not in page
    assert "Awaiting my decision" in page


def test_staff_see_every_request_newest_first_and_what_awaits_them_under_its_filter(
    client, routed
):
    access_request, users = routed
    later = AccessRequestFactory(policy=access_request.policy, repository="acme/later")
    AccessRequestFactory(
        policy=AccessPolicyFactory(repository_patterns=["other/*"]), repository="other/x"
    )
    boss = users["carol"]
    boss.is_staff = boss.is_superuser = True
    boss.save()
    AccessRequest.objects.filter(pk=later.pk).update(status=AccessRequest.Status.DENIED)
    client.force_login(boss)

    page = client.get(CHANGELIST).content.decode()

    assert "other/x" in page
    # Newest first, whatever awaits carol: sorting what awaits her first would sort every
    # request on every load.
    assert page.index(change_url(later)) < page.index(change_url(access_request))
    awaiting = client.get(CHANGELIST + "?awaiting=me").content.decode()
    assert change_url(access_request) in awaiting
    assert change_url(later) not in awaiting


def test_approving_via_the_action_asks_for_a_comment_then_records_the_approval(client, routed):
    access_request, users = routed
    client.force_login(users["alice"])

    page = run_action(client, "approve_selected", [access_request])

    assert page.status_code == 200
    assert "Approve access request" in page.content.decode()
    assert "Deploying the hotfix for INC-1234" in page.content.decode()
    assert access_request.approvals.count() == 0

    response = run_action(client, "approve_selected", [access_request], comment="ok by me")

    approval = access_request.approvals.get()
    assert (approval.approver, approval.comment) == (users["alice"], "ok by me")
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING
    assert f"Your approval of request #{access_request.pk} is recorded (1 of 2)" in (
        response.content.decode()
    )


def test_two_approvers_approve_the_request(client, routed):
    access_request, users = routed
    for login in ("alice", "bob"):
        client.force_login(users[login])
        response = run_action(client, "approve_selected", [access_request], comment="")

    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.APPROVED
    assert f"Request #{access_request.pk} is approved (2 of 2)" in response.content.decode()


def test_approving_twice_says_so(client, routed):
    access_request, users = routed
    client.force_login(users["alice"])
    run_action(client, "approve_selected", [access_request], comment="")

    response = run_action(
        client, "approve_selected", [access_request], comment="", query="?awaiting=all"
    )

    assert "You have already approved this request." in response.content.decode()
    assert access_request.approvals.count() == 1


def test_staff_outside_the_approver_groups_are_refused_with_a_message(client, routed):
    access_request, _users = routed
    client.force_login(UserFactory(username="platform", is_staff=True, is_superuser=True))

    response = run_action(client, "approve_selected", [access_request], comment="")

    assert (
        f"Request #{access_request.pk}: Only members of the approver groups of policy"
        in response.content.decode()
    )
    assert access_request.approvals.count() == 0


def test_approving_own_request_is_refused_even_for_a_superuser_in_the_group(client, routed):
    access_request, users = routed
    alice = users["alice"]
    alice.is_staff = alice.is_superuser = True
    alice.save()
    own = AccessRequestFactory(requester=alice, policy=access_request.policy)
    client.force_login(alice)

    response = run_action(client, "approve_selected", [own], comment="")

    assert f"Request #{own.pk}: You cannot decide on your own request." in response.content.decode()
    assert own.approvals.count() == 0

    response = client.post(approve_url(own), {"post": "yes", "comment": ""}, follow=True)

    assert "You cannot decide on your own request." in response.content.decode()
    assert own.approvals.count() == 0


def test_deny_requires_a_comment(client, routed):
    access_request, users = routed
    client.force_login(users["bob"])

    response = run_action(client, "deny_selected", [access_request], comment="")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="id_comment_error"' in page
    assert "Say why you deny, so the requester knows." in page
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING

    response = run_action(client, "deny_selected", [access_request], comment="not during freeze")

    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.DENIED
    assert access_request.close_comment == "not during freeze"
    assert f"Request #{access_request.pk} is denied." in response.content.decode()


def test_the_request_page_has_approve_and_deny_buttons_leading_to_the_comment_page(client, routed):
    access_request, users = routed
    client.force_login(users["carol"])

    page = client.get(change_url(access_request)).content.decode()
    assert f'href="{approve_url(access_request)}"' in page
    assert f'href="{deny_url(access_request)}"' in page

    confirm = client.get(approve_url(access_request))
    assert confirm.status_code == 200
    assert access_request.approvals.count() == 0

    response = client.post(approve_url(access_request), {"post": "yes", "comment": "fine"})

    assert response.url == change_url(access_request)
    assert access_request.approvals.get().approver == users["carol"]


def test_the_per_request_views_are_protected_by_csrf(routed):
    from django.test import Client

    access_request, users = routed
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["carol"])

    response = client.post(approve_url(access_request), {"post": "yes", "comment": ""})

    assert response.status_code == 403
    assert access_request.approvals.count() == 0


def test_the_request_page_says_why_the_user_may_not_decide(client, routed):
    access_request, users = routed
    own = AccessRequestFactory(requester=users["alice"], policy=access_request.policy)
    client.force_login(users["alice"])

    page = client.get(change_url(own)).content.decode()

    assert "You cannot decide on this request." in page
    assert "You cannot decide on your own request." in page
    assert f'href="{approve_url(own)}"' not in page


def test_the_request_page_shows_policy_approvals_pending_approvers_and_history(client, routed):
    access_request, users = routed
    earlier = AccessRequestFactory(
        requester=access_request.requester,
        policy=access_request.policy,
        repository="acme/earlier",
        status=AccessRequest.Status.DENIED,
    )
    client.force_login(users["bob"])
    client.post(approve_url(access_request), {"post": "yes", "comment": "first"})

    page = client.get(change_url(access_request)).content.decode()

    assert "Approvals required: 2" in page
    assert "alice, bob, carol" in page  # the group's members
    assert "approvals so far" in page.lower()
    assert "first" in page
    assert "alice, carol" in page  # who may still approve
    assert f"#{earlier.pk}" in page
    assert "acme/earlier" in page


def test_requests_are_read_only_in_the_admin(client, routed):
    access_request, _users = routed
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    page = client.get(change_url(access_request)).content.decode()

    assert 'name="status"' not in page
    assert 'name="reason"' not in page
    response = client.post(change_url(access_request), {"status": "approved"})
    assert response.status_code == 403
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING
    add = reverse("admin:requests_app_accessrequest_add")
    assert client.get(add).status_code == 403


def test_platform_admin_models_are_hidden_from_approvers(client, routed):
    _access_request, users = routed
    client.force_login(users["alice"])

    index = client.get(reverse("admin:index")).content.decode()

    assert "Access requests" in index
    assert "Approver groups" not in index
    assert "Access policies" not in index
    assert "Secret definitions" not in index
    for model in ("approvergroup", "accesspolicy", "secretdefinition"):
        url = reverse(f"admin:requests_app_{model}_changelist")
        assert client.get(url).status_code == 403, model


def test_a_plain_user_cannot_enter_the_admin(client):
    client.force_login(UserFactory(username="plain"))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_an_approver_who_leaves_the_group_loses_the_admin(client, routed):
    access_request, users = routed
    client.force_login(users["carol"])
    assert client.get(CHANGELIST).status_code == 200

    access_request.policy.approver_groups.get().members.filter(login="carol").delete()

    assert client.get(CHANGELIST).status_code == 302


def test_staff_with_only_view_permission_see_requests_but_not_policies(client, routed):
    access_request, _users = routed
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_accessrequest"))
    client.force_login(viewer)

    assert client.get(change_url(access_request)).status_code == 200
    assert client.get(reverse("admin:requests_app_accesspolicy_changelist")).status_code == 403


def policy_form(**overrides):
    # A policy needing approvals names who gives them (requests_app.rules).
    data = {
        "approver_groups": [str(ApproverGroupFactory(name="staging-approvers").pk)],
        "name": "staging",
        "description": "",
        "repository_patterns": "acme/*, acme-infra/deploy",
        "environment_patterns": "staging, stage-*",
        "access_kinds": ["reviewer"],
        "max_duration": "04:00:00",
        "default_duration": "01:00:00",
        "approvals_required": "1",
        "reason_min_length": "10",
        "pending_ttl": "1 00:00:00",
        "break_glass_max_duration": "01:00:00",
    }
    data.update(overrides)
    return data


def test_policy_patterns_are_edited_as_comma_separated_text(client, platform_admin):
    add = reverse("admin:requests_app_accesspolicy_add")

    response = client.post(add, policy_form())

    assert response.status_code == 302, response.content.decode()
    policy = AccessPolicy.objects.get(name="staging")
    assert policy.repository_patterns == ["acme/*", "acme-infra/deploy"]
    assert policy.environment_patterns == ["staging", "stage-*"]
    assert policy.access_kinds == ["reviewer"]
    page = client.get(reverse("admin:requests_app_accesspolicy_change", args=[policy.pk]))
    assert 'value="acme/*, acme-infra/deploy"' in page.content.decode()


def test_policy_form_refuses_bad_patterns_and_kinds(client, platform_admin):
    add = reverse("admin:requests_app_accesspolicy_add")

    response = client.post(
        add,
        policy_form(repository_patterns="api", access_kinds=["owner"], environment_patterns=""),
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "must name owner/repository" in page
    assert "Select a valid choice. owner is not one of the available choices." in page
    assert "Give at least one pattern." in page
    assert not AccessPolicy.objects.exists()


@pytest.mark.parametrize("patterns", ["[1, 2]", "[{}]", "[" * 50_000 + "]" * 50_000])
def test_a_pattern_field_that_reads_as_json_but_not_as_patterns_is_shown_back(
    client, platform_admin, patterns
):
    # The form shows a bound value back as patterns when it is a JSON list: a list of
    # numbers was a TypeError, and brackets nested 50,000 deep a RecursionError (500s).
    add = reverse("admin:requests_app_accesspolicy_add")
    response = client.post(add, policy_form(repository_patterns=patterns))
    assert response.status_code == 200
    assert 'id="id_repository_patterns_error"' in response.content.decode()
    assert not AccessPolicy.objects.exists()


def test_policy_changes_are_written_to_the_audit_log(client, platform_admin):
    client.post(reverse("admin:requests_app_accesspolicy_add"), policy_form())

    event = AuditEvent.objects.get(action="accesspolicy.created")
    assert event.actor_label == "root"
    assert event.target_repr == "staging"


def test_a_policy_needing_approvals_without_approver_groups_is_refused(client, platform_admin):
    add = reverse("admin:requests_app_accesspolicy_add")

    response = client.post(add, policy_form(approver_groups=[]))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["approver_groups"] == [
        "This field is required when approvals_required is above 0."
    ]
    assert not AccessPolicy.objects.exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("approvals_required", "11", "less than or equal to 10"),
        ("reason_min_length", "1001", "less than or equal to 1000"),
        ("pending_ttl", "0", "must be longer than zero"),
        ("break_glass_max_duration", "00:00:00", "must be longer than zero"),
    ],
)
def test_the_admin_policy_form_keeps_the_bounds_the_policy_file_keeps(
    client, platform_admin, field, value, message
):
    response = client.post(
        reverse("admin:requests_app_accesspolicy_add"), policy_form(**{field: value})
    )

    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert not AccessPolicy.objects.exists()


def test_a_policy_approved_automatically_needs_no_approver_groups(client, platform_admin):
    add = reverse("admin:requests_app_accesspolicy_add")

    response = client.post(add, policy_form(approver_groups=[], approvals_required="0"))

    assert response.status_code == 302
    assert AccessPolicy.objects.get().approvals_required == 0


def test_policy_changes_record_the_changed_fields_before_and_after(client, platform_admin):
    client.post(reverse("admin:requests_app_accesspolicy_add"), policy_form())
    policy = AccessPolicy.objects.get()
    change = reverse("admin:requests_app_accesspolicy_change", args=[policy.pk])

    client.post(change, policy_form(reason_min_length="30"))

    created = AuditEvent.objects.get(action="accesspolicy.created")
    assert created.detail["after"]["approver_groups"] == ["staging-approvers"]
    event = AuditEvent.objects.get(action="accesspolicy.changed")
    assert event.detail["changed"] == ["reason_min_length"]
    assert event.detail["before"] == {"reason_min_length": 10}
    assert event.detail["after"] == {"reason_min_length": 30}


def test_a_secret_value_change_is_audited_without_the_value(client, platform_admin):
    add = reverse("admin:requests_app_secretdefinition_add")
    client.post(add, {"name": "DEPLOY_TOKEN", "kind": "environment", "org": "", "new_value": "a"})
    secret = SecretDefinition.objects.get()
    change = reverse("admin:requests_app_secretdefinition_change", args=[secret.pk])

    client.post(change, {"name": "DEPLOY_TOKEN", "kind": "environment", "new_value": "hunter2"})

    event = AuditEvent.objects.get(action="secretdefinition.changed")
    assert "encrypted_value" in event.detail["changed"]
    assert "encrypted_value" not in event.detail["before"] | event.detail["after"]
    assert "hunter2" not in str(event.detail)


def test_secret_value_is_write_only(client, platform_admin):
    add = reverse("admin:requests_app_secretdefinition_add")

    response = client.post(
        add, {"name": "DEPLOY_TOKEN", "kind": "environment", "org": "", "new_value": "hunter2"}
    )

    assert response.status_code == 302
    secret = SecretDefinition.objects.get(name="DEPLOY_TOKEN")
    assert secret.get_value() == "hunter2"
    assert secret.value_updated_at is not None
    change = reverse("admin:requests_app_secretdefinition_change", args=[secret.pk])
    page = client.get(change).content.decode()
    assert "hunter2" not in page
    assert "value set on" in page

    # Saving without a new value keeps the old one.
    client.post(change, {"name": "DEPLOY_TOKEN", "kind": "environment", "org": ""})
    secret.refresh_from_db()
    assert secret.get_value() == "hunter2"


def test_an_organization_secret_needs_its_org(client, platform_admin):
    add = reverse("admin:requests_app_secretdefinition_add")

    response = client.post(add, {"name": "NPM_TOKEN", "kind": "organization", "org": ""})

    assert "An organization secret needs its organization." in response.content.decode()
    assert not SecretDefinition.objects.exists()


def test_a_secret_without_value_says_so(client, platform_admin):
    secret = SecretDefinitionFactory(name="EMPTY", value="")

    page = client.get(reverse("admin:requests_app_secretdefinition_changelist"))

    assert secret.name in page.content.decode()
    assert "no value" in page.content.decode()


def test_the_admin_password_form_lets_approvers_in_but_not_plain_users(routed):
    from requests_app.forms import AdminLoginForm

    _access_request, _users = routed
    UserFactory(username="plain")

    def accepts(username):
        form = AdminLoginForm(data={"username": username, "password": "correct-horse-battery"})
        return form.is_valid()

    assert accepts("alice")
    assert not accepts("plain")


def test_an_approver_who_is_not_staff_reaches_only_the_requests_whatever_their_permissions(
    client, routed
):
    # Django's rule is that only staff enter the admin; approvers get in without being
    # staff, so permissions left on a non-staff account (say, from when it was staff) must
    # not open anything more than the requests routed to them.
    _access_request, users = routed
    alice = users["alice"]
    for codename in ("view_auditevent", "view_grant", "view_user", "change_accesspolicy"):
        alice.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(alice)

    assert client.get(CHANGELIST).status_code == 200
    index = client.get(reverse("admin:index")).content.decode()
    assert "Audit events" not in index and "Grants" not in index and "Users" not in index
    for url in (
        reverse("admin:audit_auditevent_changelist"),
        reverse("admin:audit_auditevent_export"),
        reverse("admin:grants_grant_changelist"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:requests_app_accesspolicy_changelist"),
    ):
        assert client.get(url).status_code == 403, url
    assert client.get(reverse("admin:app_list", args=["audit"])).status_code == 404


def test_the_approver_group_form_shows_a_github_team_outside_githubs_rules(
    client, platform_admin
):
    add = reverse("admin:requests_app_approvergroup_add")
    data = {
        "name": "sre",
        "description": "",
        "github_team": "acme/not a team",
        "members-TOTAL_FORMS": "0",
        "members-INITIAL_FORMS": "0",
    }

    response = client.post(add, data)

    assert response.status_code == 200
    assert "github_team" in response.context["adminform"].form.errors
    assert 'id="id_github_team_error"' in response.content.decode()


def test_a_policy_granting_secrets_without_secret_access_is_refused(client, platform_admin):
    secret = SecretDefinition.objects.create(name="DEPLOY_TOKEN", kind="environment")
    add = reverse("admin:requests_app_accesspolicy_add")

    response = client.post(add, policy_form(access_kinds=["reviewer"], secrets=[str(secret.pk)]))

    assert response.status_code == 200
    assert "secrets" in response.context["adminform"].form.errors
    assert not AccessPolicy.objects.exists()
