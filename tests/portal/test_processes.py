"""The processes the image runs, started here exactly as compose starts them
(`deploy/start web|worker|beat`): they come up, answer their health checks, and log JSON.

The web and worker tests use SQLite and the SQLite broker, so they run everywhere. The
last test needs CI's services (PostgreSQL and AIRLOCK_LIVE_BROKER_URL, a Redis) and runs
all three processes together, with the health checks compose uses.
"""

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.live_processes import ROOT, Started, current_database_url, free_port

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


# Printed by Celery itself on SIGTERM, not logged: the one plain line a worker writes.
CELERY_SHUTDOWN_LINE = "worker: Warm shutdown (MainProcess)"


def log_records(output: str, after: str = "") -> list[dict]:
    """The log lines from the first one containing `after`: every one must be JSON."""
    lines = output.splitlines()
    if after:
        lines = lines[next(i for i, line in enumerate(lines) if after in line):]
    return [json.loads(line) for line in lines if line.strip() and line != CELERY_SHUTDOWN_LINE]


@pytest.fixture
def processes(tmp_path):
    started = []

    def start(role: str, env: dict) -> Started:
        process = Started(role, env, tmp_path)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def production_env(tmp_path):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHON": sys.executable,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "airlock.example.com",
        "AIRLOCK_BASE_URL": "https://airlock.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "AIRLOCK_BIND": f"127.0.0.1:{free_port()}",
    }


def get(url: str, **headers) -> tuple[int, dict, bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as reply:
        return reply.code, dict(reply.headers), reply.read()


def answers(url: str):
    def check():
        try:
            return get(url)[0] in (200, 503)
        except OSError:
            return False

    return check


def test_deploy_start_web_migrates_then_serves_healthz_and_logs_json(processes, production_env):
    base = f"http://{production_env['AIRLOCK_BIND']}"
    web = processes("web", production_env)
    web.wait_for("/healthz", answers(f"{base}/healthz"), timeout=180)

    status, _, body = get(f"{base}/healthz")
    health = json.loads(body)
    assert status == 200
    assert health["database"]["ok"] and health["broker"]["ok"]
    # No beat runs here; the schedule web installed has never been sent.
    assert health["status"] == "degraded"
    assert web.healthcheck().returncode == 0

    status, headers, _ = get(
        f"{base}/accounts/login/", Host="airlock.example.com", **{"X-Request-ID": "ci-req-42"}
    )
    assert status == 301  # production settings: HTTPS only
    assert headers["Location"].startswith("https://airlock.example.com/")
    assert headers["X-Request-ID"] == "ci-req-42"

    web.stop()
    output = web.output
    assert "Applying requests_app.0001_initial... OK" in output  # migrated at start
    records = log_records(output, after="Starting gunicorn")
    access = [r for r in records if r["logger"] == "portal.access"]
    assert access and access[0]["request_id"] == "ci-req-42"
    assert access[0]["status_code"] == 301
    assert any(r["logger"] == "gunicorn.error" for r in records)


@pytest.mark.live
def test_deploy_start_worker_logs_json_with_task_ids_and_no_secrets(
    processes, production_env
):
    worker = processes("worker", production_env)
    worker.wait_for("ready line", lambda: " ready." in worker.output, timeout=120)

    from celery import Celery

    sender = Celery(broker=production_env["CELERY_BROKER_URL"], set_as_current=False)
    task_id = sender.send_task("celery.accumulate", args=[1, GITHUB_TOKEN]).id
    worker.wait_for("task result", lambda: "succeeded" in worker.output, timeout=60)

    worker.stop()
    records = log_records(worker.output)
    done = [r for r in records if r["logger"] == "celery.app.trace"]
    assert done[0]["task_id"] == task_id
    assert done[0]["task_name"] == "celery.accumulate"
    assert GITHUB_TOKEN not in worker.output


@pytest.fixture
def live_env(production_env, transactional_db):
    """production_env on CI's PostgreSQL test database and live Redis broker."""
    from django.db import connection

    broker = os.environ.get("AIRLOCK_LIVE_BROKER_URL")
    if not broker or connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL) and a broker (AIRLOCK_LIVE_BROKER_URL)")
    production_env.update(DATABASE_URL=current_database_url(), CELERY_BROKER_URL=broker)
    yield production_env
    # Leave no sweep messages behind for the next test's worker.
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f"],
        cwd=ROOT, env=production_env | {"DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True, timeout=60,
    )


@pytest.mark.live
@pytest.mark.postgres
def test_web_worker_and_beat_become_healthy_on_postgres_and_redis(processes, live_env):
    web = processes("web", live_env)
    web.wait_for("/healthz", answers(f"http://{live_env['AIRLOCK_BIND']}/healthz"))
    worker = processes("worker", live_env)
    beat = processes("beat", live_env)

    for process in (web, worker, beat):
        process.wait_for(
            "a passing health check", lambda p=process: p.healthcheck().returncode == 0
        )

    status, _, body = get(f"http://{live_env['AIRLOCK_BIND']}/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"  # beat has sent the sweep

    for process in (web, worker, beat):
        process.stop()
    log_records(web.output, after="Starting gunicorn")
    for process in (worker, beat):
        records = log_records(process.output)
        assert records, f"{process.role} logged nothing"


@pytest.mark.live
@pytest.mark.postgres
def test_web_metrics_add_up_what_the_worker_recorded(processes, live_env, tmp_path):
    """Multiprocess mode as compose runs it: gunicorn's workers serve /metrics, and the
    sweep it counts ran only in the Celery worker's pool."""
    token = secrets.token_urlsafe(24)
    (tmp_path / "metrics").mkdir()
    live_env.update(
        AIRLOCK_METRICS_TOKEN=token,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        AIRLOCK_SWEEP_SECONDS="2",
    )
    from prometheus_client.parser import text_string_to_metric_families

    # The container's address over plain HTTP, as Prometheus scrapes it (not ALLOWED_HOSTS).
    url = f"http://{live_env['AIRLOCK_BIND']}/metrics"
    web = processes("web", live_env)
    web.wait_for("/healthz", answers(f"http://{live_env['AIRLOCK_BIND']}/healthz"))
    processes("worker", live_env)
    processes("beat", live_env)

    def samples() -> dict:
        status, _, body = get(url, Authorization=f"Bearer {token}")
        assert status == 200, body
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
        }

    web.wait_for(
        "a sweep counted on /metrics",
        lambda: samples().get(("airlock_sweep_duration_seconds_count", ()), 0) >= 1,
        timeout=120,
    )
    seen = samples()
    assert seen[("airlock_sweep_age_seconds", ())] < float("inf")
    # Redis: the length of each queue's lists.
    assert {("airlock_queue_depth", (("queue", q),)) for q in ("celery", "airlock.notify")} <= (
        set(seen)
    )
    assert get(url)[0] == 401
    # Files of several processes (gunicorn's workers, the worker's pool, beat) were read.
    pids = {path.stem.rsplit("-", 1)[1] for path in (tmp_path / "metrics").glob("*.db")}
    assert len(pids) >= 3
