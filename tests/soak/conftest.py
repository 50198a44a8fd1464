"""The live harness of the benchmarks (benchmarks/scenarios.py), as a fixture: a real
Celery worker and beat (`deploy/start worker|beat`) on the test database, a private
redis-server (so that the soak may restart it), and the local GitHub of this process.

Runs in CI's second leg (AIRLOCK_LIVE_BROKER_URL and PostgreSQL set); skipped elsewhere.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks.scenarios import Harness
from benchmarks.stack import AUDIT_KEY, RedisServer, process_env
from portal.celery import app as celery_app
from tests.fixtures import airlock_writes_to
from tests.live_processes import current_database_url, live_broker_url

SWEEP_SECONDS = 2


def _point_celery_at(url: str) -> None:
    # This process sends too (approvals enqueue after their commit). The app's producer
    # pools are cached, so they are dropped to be rebuilt for the new broker.
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def live_harness(transactional_db, github, settings):
    live_broker_url()  # skips outside CI's live leg
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH (the soak restarts its own Redis)")
    airlock_writes_to(github, settings)
    settings.AIRLOCK_SWEEP_SECONDS = SWEEP_SECONDS
    # This process approves and verifies the audit log, the worker revokes: one key.
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]
    artifacts = os.environ.get("CI_ARTIFACTS")
    log_dir = Path(tempfile.mkdtemp(prefix="airlock-soak-", dir=artifacts or None))
    redis = RedisServer(log_dir).start()
    previous = celery_app.conf.broker_url
    _point_celery_at(redis.url)
    try:
        yield Harness(
            github=github,
            env=process_env(
                database_url=current_database_url(),
                broker_url=redis.url,
                github_api_url=github.api_url,
                github_token=github.app_token,
                sweep_seconds=SWEEP_SECONDS,
            ),
            log_dir=log_dir,
            sweep_seconds=SWEEP_SECONDS,
            redis=redis,
        )
    finally:
        redis.stop()
        _point_celery_at(previous)
    if not artifacts:
        shutil.rmtree(log_dir, ignore_errors=True)
