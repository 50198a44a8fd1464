"""The test suite's shared fixtures, registered once from tests/conftest.py: the database and
CI's refusals, the local GitHub, Celery, accounts, policies and API clients."""

import os
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from grants.models import Grant
from grants.services import grant_create_for_request
from portal.celery import app as celery_app
from requests_app.models import AccessRequest
from requests_app.selectors import approver_identity
from requests_app.tokens import api_token_create
from tests.github_fake.keys import new_app_private_key_pem
from tests.github_fake.server import GitHubServer
from tests.grants.factories import approved_request
from tests.requests_app.factories import AccessPolicyFactory, UserFactory, strict_and_lax_policies
from tests.siem_fake.http_receiver import HttpReceiver
from tests.slack_fake.server import DEFAULT_CHANNEL as SLACK_CHANNEL
from tests.slack_fake.server import DEFAULT_TOKEN as SLACK_BOT_TOKEN
from tests.slack_fake.server import SlackServer

# --- the database, the cache, and what CI refuses to skip ------------------------------------


def pytest_collection_modifyitems(config, items):
    # In CI's PostgreSQL leg a skipped PostgreSQL test would hide a broken guarantee, so
    # AIRLOCK_REQUIRE_POSTGRES turns "skip" into a failure.
    if not os.environ.get("AIRLOCK_REQUIRE_POSTGRES"):
        return
    from django.db import connection

    if connection.vendor != "postgresql":
        raise pytest.UsageError(
            "AIRLOCK_REQUIRE_POSTGRES is set but DATABASE_URL is not PostgreSQL"
        )


def pytest_sessionfinish(session, exitstatus):
    # CI's service legs set AIRLOCK_FORBID_SKIPS: there every test must really run.
    if not os.environ.get("AIRLOCK_FORBID_SKIPS") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reporter.write_line(f"SKIPPED IN CI: {report.nodeid}: {report.longrepr}")
        reporter.write_line(f"{len(skipped)} test(s) skipped where none may be; failing.")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, with the audit table's TRUNCATE trigger switched off.

    pytest-django empties the database after every transactional test with Django's
    flush, which uses TRUNCATE, and a deployment refuses TRUNCATE on the audit table (audit
    migration 0003). Only that trigger is off: the row triggers stay on, and
    tests/audit/test_postgres_protection.py switches this one on again to prove it works.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_refuse_truncate"
                )


@pytest.fixture(autouse=True)
def _empty_cache():
    # What the cache holds (brute-force counts, request rates, the check's audit marks)
    # would otherwise carry from one test to the next: each test starts with none.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def on_postgres():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    return connection


# --- the local GitHub (tests/github_fake, README there) ---------------------------------------


@pytest.fixture(scope="session")
def github_server():
    """Started once on 127.0.0.1:$AIRLOCK_TEST_GITHUB_PORT (portal.test_settings chooses that
    port so that allauth's URLs match), or on a free port when the variable is unset."""
    port = int(os.environ.get("AIRLOCK_TEST_GITHUB_PORT") or 0)
    try:
        server = GitHubServer(port=port)
    except OSError as problem:
        raise RuntimeError(
            f"the local GitHub cannot listen on 127.0.0.1:{port} (AIRLOCK_TEST_GITHUB_PORT): "
            f"{problem}"
        ) from problem
    server.start()
    yield server
    server.stop()


@pytest.fixture
def github(github_server):
    """The server, reset before the test, with its seeding helpers and readers. At teardown
    it fails the test if a request body broke GitHub's OpenAPI schema, unless the test called
    github.expect_schema_violations()."""
    github_server.reset()
    yield github_server
    violations = github_server.unexpected_schema_violations()
    if violations:
        lines = [
            f"{v.method} {v.path} ({v.operation_id}): {'; '.join(v.errors)}" for v in violations
        ]
        pytest.fail(
            "request bodies GitHub's OpenAPI schema refuses (call github.expect_schema_violations()"
            " if the test means it):\n" + "\n".join(lines),
            pytrace=False,
        )


# --- the local Slack (tests/slack_fake, README there) -----------------------------------------


@pytest.fixture(scope="session")
def slack_server():
    """Started once on a free loopback port."""
    server = SlackServer().start()
    yield server
    server.stop()


@pytest.fixture
def slack(slack_server, settings):
    """The local Slack, reset before the test, with Airlock pointed at it: SLACK_API_URL,
    AIRLOCK_SLACK_BOT_TOKEN (a xoxb- token it accepts), AIRLOCK_SLACK_SIGNING_SECRET (what
    its builders sign with). One channel exists: slack.channel (SLACK_CHANNEL). Seed with
    slack.add_channel(id); read slack.messages(channel), slack.message(channel, ts),
    slack.ephemeral_for(user), slack.views, slack.calls / slack.calls_to(method); inject
    slack.faults.rate_limited/server_error/slack_error/slow; build what Slack POSTs to
    Airlock with slack.block_actions(...), slack.view_submission(...), slack.command(...)
    (each a SignedRequest: .body, .headers, .post(client, path); choose timestamp= or
    secret= to age or forge one)."""
    slack_server.reset()
    settings.SLACK_API_URL = slack_server.api_url
    settings.AIRLOCK_SLACK_BOT_TOKEN = SLACK_BOT_TOKEN
    settings.AIRLOCK_SLACK_SIGNING_SECRET = slack_server.signing_secret
    slack_server.channel = slack_server.add_channel(SLACK_CHANNEL)
    yield slack_server
    slack_server.faults.clear()


def airlock_writes_to(github, settings) -> None:
    """Point Airlock at the local GitHub with its token, not dry-run."""
    settings.GITHUB_API_URL = github.api_url
    settings.GITHUB_TOKEN = github.app_token
    settings.AIRLOCK_DRY_RUN = False


def fast_retries(settings, *, attempts: int, base_seconds: float, cap_seconds: float) -> None:
    """Retries of milliseconds, a few seconds at most per call, so that a fault test waits
    for its retries without waiting long."""
    settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS = 1
    settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS = 5
    settings.AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS = attempts
    settings.AIRLOCK_GITHUB_RETRY_BASE_SECONDS = base_seconds
    settings.AIRLOCK_GITHUB_RETRY_CAP_SECONDS = cap_seconds
    settings.AIRLOCK_GRANT_RETRY_BASE_SECONDS = 1


@pytest.fixture
def gh(github, settings):
    """The local GitHub as the grant engine sees it, with acme/api in it."""
    airlock_writes_to(github, settings)
    fast_retries(settings, attempts=4, base_seconds=0.02, cap_seconds=0.1)
    github.add_repo("acme/api")
    return github


GITHUB_APP_ID = 4242
GITHUB_APP_PERMISSIONS = {
    "contents": "write",
    "metadata": "read",
    "environments": "write",
    "secrets": "write",
    "members": "read",
}


@pytest.fixture
def github_app(gh, settings):
    """Install Airlock's GitHub App on the local GitHub and point the settings at it.

    github_app(permissions=None, account="acme") registers App 4242 (one key per test) with an
    installation on `account` holding `permissions` (default GITHUB_APP_PERMISSIONS), sets
    GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_APP_INSTALLATION_ID, and returns the
    installation id. The local GitHub is `gh` (acme/api exists, Airlock writes to it, fast
    retries); `github_app.github` is it. Minted tokens: gh.installation_tokens,
    gh.installation_token(value) (tests/github_fake/README.md)."""
    key = new_app_private_key_pem()  # one App, one key, however many installations

    def install(permissions=None, account="acme"):
        installation = gh.register_app(
            GITHUB_APP_ID, key, account=account, permissions=permissions or GITHUB_APP_PERMISSIONS
        )
        settings.GITHUB_APP_ID = str(GITHUB_APP_ID)
        settings.GITHUB_APP_PRIVATE_KEY = key
        settings.GITHUB_APP_INSTALLATION_ID = str(installation)
        return installation

    install.github = gh
    return install


# The deployment protection rule's webhook secret in the tests that drive the App's gates.
GATES_WEBHOOK_SECRET = "webhook-s3cret"


@pytest.fixture
def gates_app(gh, settings, eager_celery):
    """Airlock's GitHub App, installed on acme, answering deployment protection rules (the
    grant engine keeps its token): the webhook secret is GATES_WEBHOOK_SECRET, dave and
    acme/api's production environment exist, and gh.installation is the installation id."""
    key = new_app_private_key_pem()
    installation = gh.register_app(GITHUB_APP_ID, key, account="acme")
    settings.GITHUB_APP_ID = str(GITHUB_APP_ID)
    settings.GITHUB_APP_PRIVATE_KEY = key
    settings.GITHUB_APP_INSTALLATION_ID = str(installation)
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = GATES_WEBHOOK_SECRET
    settings.AIRLOCK_BASE_URL = "https://airlock.test"
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    gh.installation = installation
    return gh


@pytest.fixture
def local_github(github, settings):
    """The local GitHub as the property tests drive it: empty, and faster retries still."""
    airlock_writes_to(github, settings)
    fast_retries(settings, attempts=3, base_seconds=0.01, cap_seconds=0.05)
    return github


# --- audit forwarding: a local SIEM HTTP collector (tests/siem_fake/http_receiver.py) -----------


@pytest.fixture
def siem_http(settings):
    """A local HTTP collector, with Airlock's HTTP sink pointed at it (JSON Lines, no token,
    a 1-second timeout) and no syslog sink. Read siem_http.records(); inject
    siem_http.fail_next/stall_next/hang_up_next; set siem_http.token or .hec as needed."""
    with HttpReceiver() as receiver:
        settings.AIRLOCK_AUDIT_STREAM_URL = receiver.url
        settings.AIRLOCK_AUDIT_STREAM_TOKEN = ""
        settings.AIRLOCK_AUDIT_STREAM_FORMAT = "json-lines"
        settings.AIRLOCK_AUDIT_SYSLOG_URL = ""
        settings.AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS = 1
        yield receiver


# --- Celery -------------------------------------------------------------------------------------


@pytest.fixture
def eager_celery():
    """Tasks run where they are sent, for tests about what happens after the commit."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


# --- accounts and policies ---------------------------------------------------------------------


@pytest.fixture
def platform_admin(client):
    """root, a superuser, signed in on `client`."""
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    return root


@pytest.fixture
def root_client(client, platform_admin):
    return client


@pytest.fixture
def dev(client):
    """dev, a plain user, signed in on `client`."""
    user = UserFactory(username="dev")
    client.force_login(user)
    return user


@pytest.fixture
def strict_and_lax():
    return strict_and_lax_policies()


# --- API clients, and requests whose grant is in force -----------------------------------------


@pytest.fixture
def api():
    return APIClient()


def token_client(user) -> APIClient:
    _, raw = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def oidc_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def oidc(github, settings):
    """Mint Actions ID tokens the portal accepts: the local GitHub is the issuer, the
    audience is the portal's, and the job runs in acme/api's production environment."""
    settings.GITHUB_OIDC_ISSUER = github.oidc_issuer
    settings.AIRLOCK_OIDC_AUDIENCE = "https://airlock.test"
    settings.AIRLOCK_OIDC_JWKS_REFRESH_COOLDOWN_SECONDS = 0

    def mint(claims=None, kid=None, **overrides):
        defaults = {
            "aud": settings.AIRLOCK_OIDC_AUDIENCE,
            "repository": "acme/api",
            "environment": "production",
            "actor": "dave",
        }
        return github.mint_oidc_token({**defaults, **(claims or {})}, kid=kid, **overrides)

    mint.github = github
    return mint


def active_request(
    login="dave",
    *,
    repository="acme/api",
    environment="production",
    expires_in=timedelta(hours=1),
    approvers=(),
    **extra,
) -> AccessRequest:
    """A request whose grant is in force on GitHub, as the engine leaves it: active, with
    granted_at and expires_at, and its grant applied."""
    policy = extra.pop("policy", None) or AccessPolicyFactory(name="api-test-policy")
    access_request = approved_request(
        login, repository=repository, environment=environment, policy=policy, **extra
    )
    for login in approvers:
        approver = UserFactory(username=login)
        access_request.approvals.create(
            approver=approver, approver_identity=approver_identity(approver)
        )
    grant = grant_create_for_request(access_request=access_request)
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=AccessRequest.Status.ACTIVE, granted_at=now, expires_at=now + expires_in
    )
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED, applied_at=now, expires_at=now + expires_in
    )
    access_request.refresh_from_db()
    return access_request


@contextmanager
def database_refuses(model, *, on: str, when: str = "", reason: str = "the worker died"):
    """A trigger that makes the database refuse `on` ("INSERT" or "UPDATE") of `model`'s
    rows (those matching `when`, an SQL condition on NEW, e.g. "NEW.erased_at IS NOT NULL"),
    as if the worker died right there: the crash tests' way to lose an outcome without
    patching Airlock's own code. Works on SQLite and PostgreSQL."""
    assert on in ("INSERT", "UPDATE")
    table = model._meta.db_table
    name = f"refuse_{on.lower()}_{table}"[:60]
    message = reason.replace("'", "")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                f"RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql"
            )
            condition = f"WHEN ({when}) " if when else ""
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE {on} ON {table} FOR EACH ROW "
                f"{condition}EXECUTE FUNCTION {name}()"
            )
        else:
            condition = f"WHEN {when} " if when else ""
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE {on} ON {table} {condition}"
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER {name} ON {table}")
                cursor.execute(f"DROP FUNCTION {name}()")
            else:
                cursor.execute(f"DROP TRIGGER {name}")


def at_once(call, times: int = 2, timeout: float = 30) -> list:
    """Run `call()` in `times` threads at once (each with its own database connection,
    closed after) and return what each answered, in the order they finished: the
    concurrency tests' one way to send the same thing twice at the same moment."""
    answers = []

    def worker():
        try:
            answers.append(call())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return answers
