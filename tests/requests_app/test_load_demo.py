"""`manage.py load_demo`: the demo accounts `make run` makes, and, when GitHub sign-in goes
to the local GitHub of `make github`, their link to that GitHub's users of the same login
(README "Watch a grant on a local GitHub"). Against any other GitHub nothing is linked, and
signing in as a login a portal account already has stays refused."""

import json

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse

from tests.live_processes import ROOT
from tests.requests_app.test_signin import sign_in_with_github

pytestmark = pytest.mark.django_db

User = get_user_model()
DEMO_GITHUB = json.loads((ROOT / "demo" / "local-github.json").read_text())


@pytest.fixture
def demo_github(github, settings):
    """The local GitHub as `make github` serves it (demo/local-github.json), and the
    portal in DEBUG, as `make run` runs it."""
    settings.DEBUG = True
    # Its users, orgs and repositories; the OAuth app stays the test settings' own.
    github.load({key: value for key, value in DEMO_GITHUB.items() if key != "oauth"})
    return github


def test_dave_signs_in_with_the_local_github_as_the_demo_account(client, demo_github):
    call_command("load_demo")
    demo_dave = User.objects.get(username="dave")

    response = sign_in_with_github(client, demo_github, "dave")

    assert response.status_code == 302
    assert response.url == reverse("requests_app:my-requests")
    assert client.get(response.url).context["user"] == demo_dave
    assert User.objects.filter(username="dave").count() == 1


def test_the_demo_accounts_are_linked_to_the_local_github_users_of_their_login(demo_github):
    call_command("load_demo")

    linked = {
        account.user.username: account.uid
        for account in SocialAccount.objects.filter(provider="github").select_related("user")
    }
    # admin has no user on the local GitHub, and erin no demo account: neither is linked.
    assert linked == {
        login: str(demo_github.user(login).id) for login in ("dave", "alice", "bob", "carol")
    }


def test_loading_the_demo_again_links_nothing_twice(demo_github):
    call_command("load_demo")
    call_command("load_demo")

    assert SocialAccount.objects.count() == 4


@pytest.mark.parametrize(
    "github_url", ["https://github.com", "https://github.example.com", "http://10.0.0.5:9100"]
)
def test_against_any_other_github_the_demo_accounts_stay_unlinked_and_refused(
    client, demo_github, github_url
):
    with override_settings(GITHUB_URL=github_url):
        call_command("load_demo")
    assert not SocialAccount.objects.exists()

    # The sign-in itself goes to the local GitHub (allauth took its URLs at start): a GitHub
    # user named dave is still not let into the demo's account.
    response = sign_in_with_github(client, demo_github, "dave")

    assert response.status_code == 403
    assert "A portal account named dave already exists" in response.content.decode()
    assert not SocialAccount.objects.exists()


def test_without_github_sign_in_the_demo_accounts_are_not_linked(demo_github, settings):
    settings.AIRLOCK_GITHUB_SSO = False

    call_command("load_demo")

    assert User.objects.filter(username="dave").exists()
    assert not SocialAccount.objects.exists()


def test_load_demo_is_refused_unless_debug(demo_github, settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG only"):
        call_command("load_demo")
    assert not User.objects.exists()
