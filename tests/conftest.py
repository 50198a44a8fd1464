"""Registers the shared fixtures (tests/fixtures.py) for the whole suite."""

pytest_plugins = ["tests.fixtures"]
