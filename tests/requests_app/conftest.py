"""Fixtures shared by the lifecycle tests: the local GitHub as the grant engine sees it, and
Celery running tasks where they are sent (for what happens after a commit)."""

import pytest

from portal.celery import app as celery_app
from tests.grants.conftest import gh  # noqa: F401  (the fixture, re-exported here)


@pytest.fixture
def eager_celery():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False
