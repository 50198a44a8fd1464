"""Under GitHub App credentials every process (worker, beat, `manage.py reconcile`) uses one
installation token per installation, kept encrypted in the database until shortly before it
expires (integrations/github/installation_tokens.py). GitHub's ETags are specific to the token
(the local GitHub's too), so a token of its own per process made each new process's
conditional reads 200s again; with the shared token a second `manage.py reconcile` with
nothing changed costs no rate-limited call. The processes here are real: `manage.py
reconcile` started twice on the test database (PostgreSQL), against the local GitHub."""

import os
import secrets
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from core import crypto
from grants.models import Grant
from grants.services import grant_reconcile
from integrations.github import GitHubClient
from integrations.github.installation_tokens import shared_installation_token
from integrations.github.models import InstallationAccessToken
from tests.grants.factories import (
    environment_secret,
    organization_secret,
    reviewer_grant,
    secret_grant,
)
from tests.live_processes import ROOT, current_database_url

ENCRYPTION_KEY = Fernet.generate_key().decode()


def mint_calls(github) -> int:
    return sum(
        1 for r in github.requests if r.method == "POST" and r.path.endswith("/access_tokens")
    )


@pytest.fixture
def encryption_key(settings):
    """AIRLOCK_ENCRYPTION_KEYS, the same here as in the processes the tests start."""
    settings.AIRLOCK_ENCRYPTION_KEYS = [ENCRYPTION_KEY]
    crypto._fernet.cache_clear()  # the keys are read once per process
    yield ENCRYPTION_KEY
    crypto._fernet.cache_clear()


@pytest.fixture
def app_estate(github_app, settings, encryption_key):
    """The App installed on acme, GITHUB_TOKEN off, and three targets with grants in force."""
    gh = github_app.github
    installation = github_app()
    settings.GITHUB_TOKEN = ""
    gh.add_user("alice")
    gh.add_user("bob")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    gh.add_environment("acme/api", "staging")
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN", repositories=["acme/web"])
    gh.add_repo("acme/web")
    for grant in (
        reviewer_grant("alice"),
        secret_grant(environment_secret(), environment="staging"),
        secret_grant(organization_secret("NPM_PUBLISH_TOKEN", org="acme"), "carol"),
    ):
        grant_reconcile(grant=grant)
        grant.refresh_from_db()
        assert grant.state == Grant.State.APPLIED, grant.last_error
    return installation


def reconcile_in_a_process_of_its_own(settings, tmp_path) -> str:
    """`manage.py reconcile` as an operator runs it: a new process, production settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "airlock.example.com",
        "AIRLOCK_BASE_URL": "https://airlock.example.com",
        "DATABASE_URL": current_database_url(),
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "AIRLOCK_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "GITHUB_API_URL": settings.GITHUB_API_URL,
        "GITHUB_APP_ID": settings.GITHUB_APP_ID,
        "GITHUB_APP_PRIVATE_KEY": settings.GITHUB_APP_PRIVATE_KEY.replace("\n", "\\n"),
        "GITHUB_APP_INSTALLATION_ID": settings.GITHUB_APP_INSTALLATION_ID,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.django_db(transaction=True)
def test_a_second_reconcile_process_under_app_credentials_costs_no_rate_limited_call(
    app_estate, github_app, on_postgres, settings, tmp_path
):
    gh = github_app.github
    reconcile_in_a_process_of_its_own(settings, tmp_path)
    before, seen = gh.rate_limited_calls, len(gh.requests)

    summary = reconcile_in_a_process_of_its_own(settings, tmp_path)

    second = gh.rate_limited_calls - before
    asked = [(r.method, r.path, r.status) for r in gh.requests[seen:]]
    assert second == 0, asked
    # The drift check's conditional reads, all answered 304 under the one shared token;
    # no token minted by the second process.
    assert asked and all(status == 304 for _, _, status in asked), asked
    assert "unchanged, free" in summary
    assert len(gh.installation_tokens) == 1


@pytest.mark.django_db
def test_the_shared_token_is_kept_encrypted_never_in_clear(app_estate, github_app):
    gh = github_app.github
    (minted,) = gh.installation_tokens

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {InstallationAccessToken._meta.db_table}")
        (row,) = cursor.fetchall()
    raw = b"".join(
        bytes(column) if isinstance(column, bytes | memoryview) else str(column).encode()
        for column in row
    )
    assert minted.value.encode() not in raw
    assert shared_installation_token(installation_id=app_estate) == minted.value


def in_a_thread_of_its_own(work):
    """Run work as another worker would: its own thread (its own PyGithub and token holder,
    connections.py) and database connection."""
    failures = []

    def run():
        try:
            work()
        except Exception as error:  # noqa: BLE001 - re-raised below
            failures.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if failures:
        raise failures[0]


@pytest.mark.django_db(transaction=True)
def test_an_expired_shared_token_is_replaced_before_use(app_estate, github_app, on_postgres):
    gh = github_app.github
    expired = gh.installation_tokens[-1]
    expired.expires_at = timezone.now() - timedelta(minutes=1)  # on GitHub, and in the row
    InstallationAccessToken.objects.update(expires_at=expired.expires_at)
    minted_before = mint_calls(gh)

    in_a_thread_of_its_own(lambda: GitHubClient().get_environment("acme/api", "production"))

    assert mint_calls(gh) == minted_before + 1
    newest = gh.installation_tokens[-1].value
    environment_reads = [r for r in gh.requests if r.path.endswith("/environments/production")]
    assert environment_reads[-1].headers["authorization"] == f"token {newest}"
    assert [r.status for r in gh.requests if r.status == 401] == []  # replaced before use


@pytest.mark.django_db
def test_a_revoked_shared_token_is_dropped_on_its_401_and_a_new_one_minted(
    app_estate, github_app
):
    gh = github_app.github
    revoked = gh.installation_tokens[-1].value
    gh.state.revoke_installation_token(gh.installation_token(revoked))
    minted_before = mint_calls(gh)

    GitHubClient().get_environment("acme/api", "production")

    assert mint_calls(gh) == minted_before + 1
    reads = [r for r in gh.requests if r.path == "/repos/acme/api/environments/production"]
    assert [r.status for r in reads[-2:]] == [401, 200]
    assert reads[-1].headers["authorization"] == f"token {gh.installation_tokens[-1].value}"
    assert shared_installation_token(installation_id=app_estate) != revoked


@pytest.mark.django_db(transaction=True)
def test_processes_racing_for_a_new_token_mint_it_once(app_estate, github_app, on_postgres):
    gh = github_app.github
    InstallationAccessToken.objects.all().delete()
    minted_before = mint_calls(gh)
    start = threading.Barrier(6)
    tokens, errors = [], []

    def take():
        try:
            start.wait()
            tokens.append(shared_installation_token(installation_id=app_estate))
        except Exception as error:  # noqa: BLE001 - the assertion below says which
            errors.append(error)
        finally:
            connection.close()

    racers = [threading.Thread(target=take) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)

    assert errors == []
    assert mint_calls(gh) - minted_before == 1
    assert len(set(tokens)) == 1 and len(tokens) == 6
    assert tokens[0] == gh.installation_tokens[-1].value


class LeaseLost(Exception):
    """What the reconciler's heartbeat raises once its lease is gone."""


@pytest.mark.django_db
def test_the_mint_behind_a_call_keeps_the_callers_lease_alive(app_estate, github_app):
    # The mint runs inside the engine's call (PyGithub asks for the token as it sends): its
    # own retries must renew the reconciler's lease as the call's would, or the lease (30 s)
    # lapses while GitHub is slow to mint and another worker reconciles alongside.
    gh = github_app.github
    gh.state.revoke_installation_token(gh.installation_token(gh.installation_tokens[-1].value))
    gh.faults.add("POST", "/app/installations/*/access_tokens", status=502, times=2)
    beats = []

    GitHubClient(heartbeat=lambda: beats.append(mint_calls(gh))).get_environment(
        "acme/api", "production"
    )

    minted = [r for r in gh.requests if r.path.endswith("/access_tokens")]
    assert [r.status for r in minted[-3:]] == [502, 502, 201]
    # Before the call's two attempts (401, then with the new token) and each of the three
    # mint attempts between them.
    assert len(beats) >= 5, beats


@pytest.mark.django_db
def test_waiting_for_another_process_mint_keeps_asking_the_callers_lease(
    app_estate, github_app
):
    # Another process claimed the mint and went silent: the wait (up to a minute) renews the
    # lease, and stops at once when the lease is lost instead of running on without it.
    gh = github_app.github
    gh.state.revoke_installation_token(gh.installation_token(gh.installation_tokens[-1].value))
    InstallationAccessToken.objects.update(minting_until=timezone.now() + timedelta(hours=1))
    beats = []

    def heartbeat():
        beats.append(1)
        if len(beats) > 3:
            raise LeaseLost("lost the lease")

    with pytest.raises(LeaseLost):
        GitHubClient(heartbeat=heartbeat).get_environment("acme/api", "production")
    assert len(beats) == 4
