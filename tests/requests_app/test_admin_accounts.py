"""Who can do what, changed in the user, group and social-account admin, is on the record:
each write leaves an audit event with what changed (before and after, never a password
hash), in the same transaction as the write."""

from unittest import mock

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import DatabaseError
from django.urls import reverse

from audit.models import AuditEvent
from requests_app.admin_accounts import UserAdmin
from tests.requests_app.factories import UserFactory
from tests.requests_app.test_distinct_people import user_change_form

pytestmark = pytest.mark.django_db
User = get_user_model()


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_making_a_user_superuser_in_the_admin_is_audited_with_before_and_after(
    client, platform_admin
):
    bob = UserFactory(username="bob")

    response = client.post(
        reverse("admin:auth_user_change", args=[bob.pk]),
        user_change_form(bob, is_staff="on", is_superuser="on"),
    )

    assert response.status_code == 302, response.content.decode()
    [event] = events("user.changed")
    assert (event.actor_label, event.target_id, event.target_repr) == ("root", str(bob.pk), "bob")
    assert event.detail["changed"] == ["is_staff", "is_superuser"]
    assert event.detail["before"] == {"is_staff": False, "is_superuser": False}
    assert event.detail["after"] == {"is_staff": True, "is_superuser": True}


def test_a_user_change_that_fails_leaves_no_audit_event_and_no_change(client, platform_admin):
    bob = UserFactory(username="bob")

    # The admin's transaction fails after the audit event was written: both roll back.
    with (
        mock.patch.object(UserAdmin, "response_change", side_effect=DatabaseError("gone")),
        pytest.raises(DatabaseError),
    ):
        client.post(
            reverse("admin:auth_user_change", args=[bob.pk]),
            user_change_form(bob, is_superuser="on"),
        )

    bob.refresh_from_db()
    assert bob.is_superuser is False
    assert events("user.changed") == []


def test_groups_and_permissions_given_to_a_user_are_audited_by_name(client, platform_admin):
    bob = UserFactory(username="bob")
    group = Group.objects.create(name="auditors")
    permission = Permission.objects.get(codename="view_auditevent")

    client.post(
        reverse("admin:auth_user_change", args=[bob.pk]),
        user_change_form(bob, groups=[group.pk], user_permissions=[permission.pk]),
    )

    [event] = events("user.changed")
    assert event.detail["before"] == {"groups": [], "user_permissions": []}
    assert event.detail["after"] == {
        "groups": ["auditors"],
        "user_permissions": ["audit.view_auditevent"],
    }


def test_a_password_change_is_audited_without_the_hash(client, platform_admin):
    bob = UserFactory(username="bob")
    old_hash = bob.password

    response = client.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {
            "password1": "a-new-long-passphrase-42",
            "password2": "a-new-long-passphrase-42",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302, response.content.decode()
    bob.refresh_from_db()
    [event] = events("user.changed")
    assert event.detail["changed"] == ["password"]
    text = str(event.detail)
    assert old_hash not in text and bob.password not in text
    assert "md5$" not in text


def test_adding_and_deleting_a_user_are_audited(client, platform_admin):
    client.post(
        reverse("admin:auth_user_add"),
        {"username": "erin", "usable_password": "false", "password1": "", "password2": ""},
    )
    erin = User.objects.get(username="erin")
    [added] = events("user.created")
    assert added.detail["after"]["username"] == "erin"
    assert added.detail["after"]["is_superuser"] is False
    assert "password" not in added.detail["after"]

    client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "post": "yes", ACTION_CHECKBOX_NAME: [erin.pk]},
    )

    assert not User.objects.filter(username="erin").exists()
    [deleted] = events("user.deleted")
    assert deleted.target_id == str(erin.pk)
    assert deleted.detail["before"]["username"] == "erin"


def test_a_bulk_delete_that_fails_leaves_no_audit_event(client, platform_admin):
    erin = UserFactory(username="erin")

    with (
        mock.patch.object(UserAdmin, "delete_queryset", side_effect=DatabaseError("gone")),
        pytest.raises(DatabaseError),
    ):
        client.post(
            reverse("admin:auth_user_changelist"),
            {"action": "delete_selected", "post": "yes", ACTION_CHECKBOX_NAME: [erin.pk]},
        )

    assert User.objects.filter(pk=erin.pk).exists()
    assert events("user.deleted") == []


def test_group_permissions_changed_in_the_admin_are_audited(client, platform_admin):
    group = Group.objects.create(name="auditors")
    UserFactory(username="bob").groups.add(group)
    permission = Permission.objects.get(codename="view_auditevent")

    response = client.post(
        reverse("admin:auth_group_change", args=[group.pk]),
        {"name": "auditors", "permissions": [permission.pk]},
    )

    assert response.status_code == 302, response.content.decode()
    [event] = events("group.changed")
    assert event.detail["before"] == {"permissions": []}
    assert event.detail["after"] == {"permissions": ["audit.view_auditevent"]}
    assert event.detail["members"] == ["bob"]


def test_relinking_a_github_account_to_another_user_is_audited(client, platform_admin):
    bob, carol = UserFactory(username="bob"), UserFactory(username="carol")
    account = SocialAccount.objects.create(user=bob, provider="github", uid="1001")

    response = client.post(
        reverse("admin:socialaccount_socialaccount_change", args=[account.pk]),
        {"user": carol.pk, "provider": "github", "uid": "1001", "extra_data": '{"login": "bob"}'},
    )

    assert response.status_code == 302, response.content.decode()
    [event] = events("socialaccount.changed")
    assert event.detail["before"] == {"user": "bob"}
    assert event.detail["after"] == {"user": "carol"}


def test_the_admin_offers_no_social_apps_or_tokens(client):
    # GitHub's OAuth app comes from settings (GITHUB_OAUTH_CLIENT_ID): a second GitHub app
    # added in the admin made allauth's sign-in pages fail for everyone (a 500), and stored
    # OAuth tokens (there are none: SOCIALACCOUNT_STORE_TOKENS is off) are secrets.
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for page in ("socialapp", "socialtoken"):
        assert client.get(f"/admin/socialaccount/{page}/").status_code == 404
        assert client.get(f"/admin/socialaccount/{page}/add/").status_code == 404
    assert client.get("/admin/socialaccount/socialaccount/").status_code == 200
