"""Signing in: with GitHub over real HTTP against the local GitHub, and with local accounts.

The browser's part of the OAuth dance (following the redirect to GitHub's authorize page)
is played with `requests`; the portal's part with Django's test client, so the callback
really exchanges the code and reads /user, /user/emails and the org membership over HTTP.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from requests_app.selectors import github_user_id
from tests.requests_app.factories import ApproverGroupFactory, UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
GITHUB_LOGIN = reverse("github_login")


def sign_in_with_github(client, github, login, *, next_url=None):
    """Press "Sign in with GitHub" as `login` (signed in to GitHub already); return the
    portal's answer to GitHub's redirect back."""
    github.set_oauth_user(login)
    response = client.post(GITHUB_LOGIN, {"next": next_url} if next_url else {})
    assert response.status_code == 302
    authorize = response.url
    assert authorize.startswith(f"{settings.GITHUB_URL}/login/oauth/authorize?")

    back = requests.get(authorize, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["location"])
    assert callback.path == reverse("github_callback")
    assert "code" in parse_qs(callback.query)
    return client.get(f"{callback.path}?{callback.query}")


def test_signing_in_with_github_makes_a_user_named_after_the_login(client, github):
    github.add_user("octocat", id=583231, name="Mona Lisa", email="mona@example.com")

    response = sign_in_with_github(client, github, "octocat")

    assert response.status_code == 302
    assert response.url == reverse("requests_app:my-requests")
    user = User.objects.get(username="octocat")
    assert SocialAccount.objects.get(user=user, provider="github").uid == "583231"
    assert github_user_id(user) == 583231
    assert client.get(reverse("requests_app:my-requests")).context["user"] == user


def test_the_authorize_redirect_carries_the_client_and_the_callback(client, github):
    response = client.post(GITHUB_LOGIN)

    query = parse_qs(urlsplit(response.url).query)
    assert query["client_id"] == [settings.GITHUB_OAUTH_CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver" + reverse("github_callback")]
    assert "state" in query


def test_a_get_does_not_start_the_github_sign_in(client, github):
    # SOCIALACCOUNT_LOGIN_ON_GET is off: a link cannot sign someone in behind their back.
    response = client.get(GITHUB_LOGIN)

    assert response.status_code == 200
    assert "<form" in response.content.decode()


def test_signing_in_again_finds_the_same_user(client, github):
    github.add_user("octocat", id=583231)
    sign_in_with_github(client, github, "octocat")
    client.logout()

    sign_in_with_github(client, github, "octocat")

    assert User.objects.filter(username="octocat").count() == 1
    assert SocialAccount.objects.count() == 1


def test_a_github_rename_renames_the_portal_user(client, github):
    github.add_user("octocat", id=583231)
    sign_in_with_github(client, github, "octocat")
    client.logout()
    github.user("octocat").login = "monalisa"
    github.users["monalisa"] = github.users.pop("octocat")

    sign_in_with_github(client, github, "monalisa")

    user = User.objects.get(socialaccount__uid="583231")
    assert user.username == "monalisa"


def test_a_local_account_with_the_same_name_is_not_taken_over(client, github):
    UserFactory(username="octocat")
    github.add_user("octocat", id=583231)

    response = sign_in_with_github(client, github, "octocat")

    assert response.status_code == 403
    assert "A portal account named octocat already exists" in response.content.decode()
    assert not SocialAccount.objects.exists()


def test_an_email_already_used_by_another_user_does_not_block_sign_in(client, github):
    # Otherwise allauth would show its signup form, where another username could be chosen.
    UserFactory(username="someone", email="shared@example.com")
    github.add_user("octocat", id=583231, email="shared@example.com")

    response = sign_in_with_github(client, github, "octocat")

    assert response.status_code == 302
    assert User.objects.filter(username="octocat").exists()


@override_settings(AIRLOCK_GITHUB_ORG="acme")
def test_someone_outside_the_org_is_refused_with_a_page_naming_it(client, github):
    github.add_org("acme")
    github.add_user("outsider", id=1001)

    response = sign_in_with_github(client, github, "outsider")

    assert response.status_code == 403
    page = response.content.decode()
    assert "not a member of the acme organization" in page
    assert "Only active members of the GitHub organization <strong>acme</strong>" in page
    assert not User.objects.filter(username="outsider").exists()
    assert "_auth_user_id" not in client.session


@override_settings(AIRLOCK_GITHUB_ORG="acme")
def test_a_pending_org_invitation_is_refused(client, github):
    github.add_user("invited", id=1002)
    github.add_org_member("acme", "invited", state="pending")

    response = sign_in_with_github(client, github, "invited")

    assert response.status_code == 403
    assert "invitation to the acme organization is still pending" in (response.content.decode())


@override_settings(AIRLOCK_GITHUB_ORG="acme")
def test_an_active_org_member_signs_in(client, github):
    github.add_user("member", id=1003, orgs=["acme"])

    response = sign_in_with_github(client, github, "member")

    assert response.status_code == 302
    assert User.objects.get(username="member")
    membership_calls = [r for r in github.requests if "/memberships/orgs/acme" in r.path]
    assert len(membership_calls) == 1


@override_settings(AIRLOCK_GITHUB_ORG="acme")
def test_leaving_the_org_stops_the_next_sign_in(client, github):
    github.add_user("member", id=1003, orgs=["acme"])
    sign_in_with_github(client, github, "member")
    client.logout()
    github.remove_org_member("acme", "member")

    response = sign_in_with_github(client, github, "member")

    assert response.status_code == 403


def test_local_accounts_sign_in_with_a_password(client):
    UserFactory(username="localadmin", password="correct-horse-battery")

    response = client.post(
        reverse("account_login"), {"login": "localadmin", "password": "correct-horse-battery"}
    )

    assert response.status_code == 302
    assert client.get(reverse("requests_app:my-requests")).status_code == 200


def test_a_wrong_password_is_refused_on_the_form(client):
    UserFactory(username="localadmin", password="correct-horse-battery")

    response = client.post(reverse("account_login"), {"login": "localadmin", "password": "no"})

    assert response.status_code == 200
    assert 'class="error-summary" role="alert"' in response.content.decode()


def test_local_sign_up_is_closed(client):
    response = client.post(
        reverse("account_signup"),
        {"username": "newbie", "password1": "correct-horse-9", "password2": "correct-horse-9"},
    )

    assert "No sign-up here" in response.content.decode()
    assert not User.objects.filter(username="newbie").exists()


def test_the_sign_in_page_offers_github_as_a_post_form_and_the_password_form(client):
    page = client.get(reverse("account_login")).content.decode()

    assert f'<form method="post" action="{GITHUB_LOGIN}" class="sso">' in page
    assert "Sign in with GitHub</button>" in page
    assert '<label for="id_login">' in page
    assert '<label for="id_password">' in page


def test_the_admin_login_page_offers_github_back_to_the_admin(client):
    page = client.get(reverse("admin:login") + "?next=/admin/").content.decode()

    assert f'action="{GITHUB_LOGIN}"' in page
    assert '<input type="hidden" name="next" value="/admin/">' in page
    assert 'value="Sign in with GitHub"' in page


def test_an_approver_signed_in_with_github_reaches_the_admin(client, github):
    ApproverGroupFactory(name="prod-approvers", members=["approver"])
    github.add_user("approver", id=2001)

    response = sign_in_with_github(client, github, "approver", next_url="/admin/")

    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_plain_github_user_does_not_reach_the_admin(client, github):
    github.add_user("plain", id=2002)
    sign_in_with_github(client, github, "plain", next_url="/admin/")

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_github_user_id_is_none_for_local_users():
    assert github_user_id(UserFactory(username="local")) is None
