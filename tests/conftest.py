"""Registers the shared fixtures (tests/fixtures.py, the local syslog receiver's) for the
whole suite."""

pytest_plugins = ["tests.fixtures", "tests.siem_fake.syslog_fixtures"]
