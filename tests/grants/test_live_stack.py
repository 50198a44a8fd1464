"""The whole engine as deployed: a Redis broker, separate `celery worker` and `celery beat`
processes, PostgreSQL, and the faithful local GitHub.

Needs AIRLOCK_LIVE_BROKER_URL (redis://127.0.0.1:6379/N, a database it may flush) and a
PostgreSQL DATABASE_URL; skipped without them (CI sets both and refuses skips).

The worker and beat run portal.settings against pytest's test database, with a sweep every
AIRLOCK_SWEEP_SECONDS=2. Waits are bounded and generous; a failure says what was observed
and shows the tail of the worker's and beat's logs.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from grants.models import Grant
from grants.schedule import install_beat_schedule
from portal.celery import app as celery_app
from requests_app.models import AccessRequest
from requests_app.services import access_request_approve, access_request_create
from tests.fixtures import airlock_writes_to
from tests.live_processes import ROOT, current_database_url, live_broker_url
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SWEEP_SECONDS = 2


class Stack:
    """The worker and beat processes, each in its own process group so that a kill takes
    the worker's pool children with it, as a crashed container would."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.starts = 0

    def start(self, name: str) -> None:
        if name == "worker":
            self.starts += 1
            args = ["worker", "--concurrency=2", "--loglevel=INFO", "-n", f"live{self.starts}@%h"]
        else:
            args = ["beat", "--loglevel=INFO", "--max-interval=1"]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the worker started last says it is ready (consuming)."""
        log = self.log_dir / "worker.log"
        marker = f"live{self.starts}@"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if any(marker in line and " ready." in line for line in text.splitlines()):
                return
            time.sleep(0.1)
        pytest.fail(f"the worker did not become ready within {timeout}s\n{self.logs()}")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-40:]
            parts.append(f"--- {path.name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)


@pytest.fixture
def stack(transactional_db, github, settings):
    broker = live_broker_url()
    import redis

    redis.Redis.from_url(broker).flushdb()
    github.add_repo("acme/api")
    airlock_writes_to(github, settings)
    settings.AIRLOCK_SWEEP_SECONDS = SWEEP_SECONDS
    install_beat_schedule()

    # This process sends too (the approval's after-commit message): point it at Redis.
    # The app's producer pools are cached, so they are dropped to be rebuilt.
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = broker
    celery_app._pool = None
    celery_app.amqp._producer_pool = None

    artifacts = os.environ.get("CI_ARTIFACTS")
    log_dir = Path(tempfile.mkdtemp(prefix="airlock-live-", dir=artifacts or None))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": current_database_url(),
        "CELERY_BROKER_URL": broker,
        "GITHUB_API_URL": github.api_url,
        "GITHUB_TOKEN": github.app_token,
        "AIRLOCK_SWEEP_SECONDS": str(SWEEP_SECONDS),
        "AIRLOCK_GITHUB_TIMEOUT_SECONDS": "2",
        "AIRLOCK_GITHUB_RETRY_MAX_SECONDS": "5",
        "SECRET_KEY": "airlock-live-test",
        "DEBUG": "true",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"):
        env.pop(name, None)
    running = Stack(env, log_dir)
    try:
        running.start("worker")
        running.start("beat")
        running.wait_ready()
        yield running
    finally:
        # Also when the set-up failed half way: no worker may outlive the test.
        running.stop()
        celery_app.conf.broker_url = previous
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
    if not artifacts:
        shutil.rmtree(log_dir, ignore_errors=True)


def wait_for(what: str, condition, *, timeout: float, stack: Stack, observe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    observed = observe() if observe else ""
    pytest.fail(f"{what} not seen within {timeout}s. Observed: {observed}\n{stack.logs()}")


def approve_a_one_minute_grant(login: str) -> AccessRequest:
    _, _, approvers = approver_setup(approvals_required=1)
    access_request = access_request_create(
        requester=UserFactory(username=login),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Live stack: a one-minute grant",
        duration_minutes=1,
    )
    access_request_approve(access_request=access_request, approver=approvers["alice"])
    return access_request


def grant_of(access_request) -> Grant | None:
    return Grant.objects.filter(access_request=access_request).first()


def test_a_one_minute_grant_is_applied_and_revoked_end_to_end(stack, github):
    github.add_user("dave")
    github.add_environment("acme/api", "production", reviewers=[("User", "bob")], wait_timer=5)
    before = github.environment("acme/api", "production")

    approved = time.monotonic()
    access_request = approve_a_one_minute_grant("dave")

    wait_for(
        "dave as a reviewer",
        lambda: "dave" in github.reviewers("acme/api", "production"),
        timeout=30,
        stack=stack,
        observe=lambda: (github.reviewers("acme/api", "production"), grant_of(access_request)),
    )
    applied_in = time.monotonic() - approved
    wait_for(  # GitHub answers the PUT a moment before the outcome commits
        "the grant recorded as applied",
        lambda: grant_of(access_request).state == Grant.State.APPLIED,
        timeout=10,
        stack=stack,
        observe=lambda: grant_of(access_request).__dict__,
    )
    grant = grant_of(access_request)
    assert grant.expires_at == grant.applied_at + timedelta(minutes=1)

    seconds_left = (grant.expires_at - timezone.now()).total_seconds()
    wait_for(
        "dave removed after expiry",
        lambda: "dave" not in github.reviewers("acme/api", "production"),
        timeout=seconds_left + 20,
        stack=stack,
        observe=lambda: (github.reviewers("acme/api", "production"), grant_of(access_request)),
    )
    removed_at = timezone.now()
    late = (removed_at - grant.expires_at).total_seconds()
    assert github.environment("acme/api", "production") == before
    # Aim: under a second late with a healthy worker; the bound here is generous for CI.
    assert late < SWEEP_SECONDS + 3, f"revoked {late:.2f}s after expiry"
    wait_for(
        "the request expired",
        lambda: AccessRequest.objects.get(pk=access_request.pk).status == "expired",
        timeout=10,
        stack=stack,
    )
    print(f"applied {applied_in:.2f}s after approval; removed {late:.2f}s after expiry")


def test_a_revocation_due_while_the_worker_is_killed_happens_within_a_sweep_of_restart(
    stack, github
):
    github.add_user("erin")
    github.add_environment("acme/api", "production")
    access_request = approve_a_one_minute_grant("erin")
    wait_for(
        "erin applied",
        lambda: (g := grant_of(access_request)) is not None and g.state == Grant.State.APPLIED,
        timeout=30,
        stack=stack,
        observe=lambda: grant_of(access_request),
    )
    # Shorten the grant (the policy's minimum is a minute) so it ends in a few seconds.
    expires_at = timezone.now() + timedelta(seconds=6)
    Grant.objects.filter(access_request=access_request).update(expires_at=expires_at)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=expires_at)
    wait_for(
        "the sweep scheduling the revocation",
        lambda: grant_of(access_request).reconcile_scheduled_for == expires_at,
        timeout=10,
        stack=stack,
        observe=lambda: grant_of(access_request).reconcile_scheduled_for,
    )

    # The worker holds the revocation's ETA message, unacknowledged; it dies with it.
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds() - 1.5))
    stack.kill("worker")
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds() + 1.0))
    assert "erin" in github.reviewers("acme/api", "production")  # due, and nobody to do it

    restarted = time.monotonic()
    stack.start("worker")
    stack.wait_ready()
    ready_in = time.monotonic() - restarted
    revoked = wait_for(
        "erin removed after the worker restarted",
        lambda: "erin" not in github.reviewers("acme/api", "production"),
        timeout=60,
        stack=stack,
        observe=lambda: (github.reviewers("acme/api", "production"), grant_of(access_request)),
    )
    after_restart = revoked - restarted
    # One sweep interval, plus the worker's own start-up (Celery and Django boot).
    assert after_restart < SWEEP_SECONDS + 15, f"revoked {after_restart:.1f}s after restart"
    wait_for(
        "the grant recorded as revoked",
        lambda: grant_of(access_request).state == Grant.State.REVOKED,
        timeout=10,
        stack=stack,
    )
    print(
        f"revoked {after_restart:.2f}s after the worker was restarted "
        f"({ready_in:.2f}s of which it took to start)"
    )
