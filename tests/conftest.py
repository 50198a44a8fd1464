"""Shared test set-up: the faithful local GitHub and the database checks CI relies on."""

import os

import pytest

pytest_plugins = ["tests.github_fake_plugin"]


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
