"""pytest plugin: the local GitHub (tests/github_fake) as fixtures.

- github_server (session): the server, started once on 127.0.0.1:$AIRLOCK_TEST_GITHUB_PORT
  (portal.test_settings chooses that port so allauth's URLs match), or on a free port when
  the variable is unset.
- github (function): the same server, reset before the test, with the seeding helpers and
  readers on it (see tests/github_fake/README.md). At teardown it fails the test if a request
  body broke GitHub's OpenAPI schema, unless the test called github.expect_schema_violations().
"""

import os

import pytest

from tests.github_fake.server import GitHubServer


@pytest.fixture(scope="session")
def github_server():
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
