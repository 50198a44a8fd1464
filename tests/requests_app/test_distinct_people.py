"""One person is one approver, whatever their usernames: usernames are unique without
regard to case (in the database and in the user admin), and approvals count people by their
GitHub identity where Airlock knows it, by the case-folded username where it does not."""

import importlib

import pytest
from allauth.socialaccount.models import SocialAccount
from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from core.errors import NotAllowed
from requests_app.models import AccessRequest
from requests_app.selectors import (
    approver_identity,
    request_pending_approvers,
    requests_awaiting_decision_by,
)
from requests_app.services import access_request_approve, access_request_create
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db
User = get_user_model()
Status = AccessRequest.Status
USERNAME_MIGRATION = importlib.import_module(
    "requests_app.migrations.0006_username_unique_casefold"
)


def file_request(requester):
    return access_request_create(
        requester=requester,
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        duration_minutes=60,
    )


def link_github(user, uid: int) -> SocialAccount:
    return SocialAccount.objects.create(
        user=user, provider="github", uid=str(uid), extra_data={"login": user.username}
    )


def user_change_form(user, **overrides):
    """What the user admin's change page posts back for `user`, with overrides."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


# --- usernames are unique without regard to case -----------------------------------------------


def test_renaming_a_user_to_a_case_variant_of_another_is_refused_by_the_admin_form(
    client, platform_admin
):
    UserFactory(username="bob")
    robert = UserFactory(username="robert")

    response = client.post(
        reverse("admin:auth_user_change", args=[robert.pk]),
        user_change_form(robert, username="Bob"),
    )

    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    robert.refresh_from_db()
    assert robert.username == "robert"


def test_adding_a_case_variant_of_an_existing_user_is_refused_by_the_admin_form(
    client, platform_admin
):
    UserFactory(username="bob")

    response = client.post(
        reverse("admin:auth_user_add"),
        {"username": "BOB", "usable_password": "false", "password1": "", "password2": ""},
    )

    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert not User.objects.filter(username="BOB").exists()


def test_a_user_keeps_their_own_name_when_saved_in_the_admin(client, platform_admin):
    bob = UserFactory(username="bob")

    response = client.post(
        reverse("admin:auth_user_change", args=[bob.pk]),
        user_change_form(bob, username="Bob", email="bob@example.org"),
    )

    assert response.status_code == 302, response.content.decode()
    bob.refresh_from_db()
    assert (bob.username, bob.email) == ("Bob", "bob@example.org")


def test_the_database_refuses_a_case_variant_username():
    User.objects.create(username="bob")

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="Bob")


@pytest.mark.postgres
def test_postgres_refuses_a_case_variant_username(on_postgres):
    User.objects.create(username="bob")

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="BOB")


def test_the_migration_stops_on_case_variant_usernames_and_names_them():
    # Only a database from before the migration can hold such names: take the index away
    # for the length of this test (its transaction puts it back).
    with connection.cursor() as cursor:
        cursor.execute(USERNAME_MIGRATION.drop_index_sql(connection.ops.quote_name))
    User.objects.bulk_create([User(username="bob"), User(username="Bob"), User(username="eve")])

    with pytest.raises(RuntimeError) as refused:
        USERNAME_MIGRATION.refuse_case_variants(global_apps, None)

    assert "'Bob', 'bob'" in str(refused.value)
    assert "eve" not in str(refused.value)


ASCII_MIGRATION = importlib.import_module("requests_app.migrations.0009_usernames_are_ascii")


@pytest.mark.parametrize("name", ["\u0131van", "\u0130van", "\u0456van"])  # ı, İ, Cyrillic і
def test_a_username_outside_ascii_is_refused_by_the_admin_forms(client, platform_admin, name):
    # PostgreSQL's UPPER() folds "ı" to "I": a local "ıvan" would be matched
    # to the GitHub login "ivan" by every lookup that compares usernames without case.
    ivan = UserFactory(username="ivan")

    renamed = client.post(
        reverse("admin:auth_user_change", args=[ivan.pk]), user_change_form(ivan, username=name)
    )
    added = client.post(
        reverse("admin:auth_user_add"),
        {"username": name, "password1": "x-Long-enough-1", "password2": "x-Long-enough-1",
         "usable_password": "true"},
    )

    for response in (renamed, added):
        assert response.status_code == 200
        assert "unaccented lowercase a-z" in response.content.decode()
    ivan.refresh_from_db()
    assert ivan.username == "ivan"
    assert not User.objects.filter(username=name).exists()


def test_the_migration_stops_on_usernames_outside_ascii_and_names_them():
    User.objects.bulk_create([User(username="\u0131van"), User(username="eve")])

    with pytest.raises(RuntimeError) as refused:
        ASCII_MIGRATION.refuse_usernames_outside_ascii(global_apps, None)

    assert "'\u0131van'" in str(refused.value)
    assert "eve" not in str(refused.value)


# --- approvals count people ---------------------------------------------------------------------


def test_an_identity_is_the_github_id_where_known_else_the_case_folded_username():
    alice = UserFactory(username="Alice")
    bob = UserFactory(username="bob")
    link_github(bob, 4242)

    assert approver_identity(alice) == "login:alice"
    assert approver_identity(bob) == "github:4242"


def test_two_accounts_with_one_github_identity_count_as_one_approver():
    _, _, users = approver_setup(approvals_required=2)
    access_request = file_request(UserFactory(username="dave"))
    github_account = link_github(users["alice"], 1001)
    access_request_approve(access_request=access_request, approver=users["alice"])
    # The same GitHub account, now linked to carol's portal account.
    github_account.user = users["carol"]
    github_account.save()

    with pytest.raises(NotAllowed, match="counts once"):
        access_request_approve(access_request=access_request, approver=users["carol"])

    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING
    assert access_request.approvals.count() == 1
    assert request_pending_approvers(access_request=access_request) == ["bob"]
    assert not requests_awaiting_decision_by(user=users["carol"]).exists()


def test_a_second_account_of_the_requester_cannot_approve():
    _, _, users = approver_setup(approvals_required=1)
    dave = UserFactory(username="dave")
    github_account = link_github(dave, 2002)
    access_request = file_request(dave)
    github_account.user = users["bob"]
    github_account.save()

    with pytest.raises(NotAllowed, match="your own request"):
        access_request_approve(access_request=access_request, approver=users["bob"])

    access_request.refresh_from_db()
    assert access_request.status == Status.PENDING
    assert access_request.approvals.count() == 0
    assert "bob" not in request_pending_approvers(access_request=access_request)
    assert not requests_awaiting_decision_by(user=users["bob"]).exists()


def test_distinct_people_still_approve_together():
    _, _, users = approver_setup(approvals_required=2)
    link_github(users["alice"], 1001)
    access_request = file_request(UserFactory(username="dave"))

    access_request_approve(access_request=access_request, approver=users["alice"])
    access_request_approve(access_request=access_request, approver=users["bob"])

    access_request.refresh_from_db()
    assert access_request.status == Status.APPROVED


@pytest.mark.parametrize("login", ["\u0131van", "\u0456van", "-ivan", "ivan smith"])
def test_an_approver_login_outside_githubs_rules_is_a_form_error(login):
    # Approver groups match members to usernames without regard to case, in the database:
    # a member "ıvan" would make the user "ivan" an approver.
    from django.forms import modelform_factory

    from requests_app.models import ApproverGroup, ApproverGroupMember

    group = ApproverGroup.objects.create(name="prod-approvers")
    form = modelform_factory(ApproverGroupMember, fields=["login"])(
        {"login": login}, instance=ApproverGroupMember(group=group)
    )  # what the group admin's member inline is

    assert not form.is_valid()
    assert "is not a GitHub login" in str(form.errors["login"])
    assert modelform_factory(ApproverGroupMember, fields=["login"])(
        {"login": "ivan"}, instance=ApproverGroupMember(group=group)
    ).is_valid()
