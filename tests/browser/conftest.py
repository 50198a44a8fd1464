"""The browser leg's fixtures: Airlock started as it is deployed (`deploy/start web`, `worker`
and `beat` as separate processes, DEBUG off, static files collected and served by
WhiteNoise) against pytest's PostgreSQL test database, a Redis broker and the local GitHub,
and headless Chromium driven by Playwright.

Needs AIRLOCK_BROWSER (a Chromium executable), AIRLOCK_LIVE_BROKER_URL (a Redis database
it may flush) and a PostgreSQL DATABASE_URL; skipped, saying which is missing, without
them (CI sets all three and refuses skips).

Screenshots of each step and the processes' logs go to
$CI_ARTIFACTS/browser/<test>/ (CI keeps that folder), else to the test's tmp_path.
"""

import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.live_processes import ROOT, Started, current_database_url, free_port, live_broker_url

SWEEP_SECONDS = 2
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


def _process_env(**values) -> dict:
    """A clean environment, as a container has: nothing of pytest's leaks in."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHON": sys.executable,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **values,
    }


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """Static files collected once, as the image does at build time (DEBUG off: hashed,
    compressed, with the manifest WhiteNoise and {% static %} need)."""
    folder = tmp_path_factory.mktemp("staticfiles")
    env = _process_env(
        DEBUG="false",
        SECRET_KEY="collectstatic-only",
        AIRLOCK_STATIC_ROOT=str(folder),
        HOME=str(folder),
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"collectstatic failed:\n{done.stdout}\n{done.stderr}"
    return folder


@pytest.fixture
def artifacts(request, tmp_path) -> Path:
    """Where this test's screenshots and process logs go; kept, pass or fail."""
    base = os.environ.get("CI_ARTIFACTS")
    folder = Path(base).resolve() / "browser" if base else tmp_path / "browser"
    folder = folder / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():  # a rerun of the same test starts clean
        if old.is_file():
            old.unlink()
    return folder


class Portal:
    """Airlock's processes for one test, all with the same settings (`env`). `url` is
    gunicorn's; workers are numbered by start (worker-1.log, worker-2.log, ...)."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.url = env["AIRLOCK_BASE_URL"]
        self.processes: list[Started] = []
        self.worker: Started | None = None
        self.worker_starts = 0

    def _start(self, role: str, *args: str, name: str = "") -> Started:
        process = Started(role, self.env, self.log_dir, *args, name=name)
        self.processes.append(process)
        return process

    def start_web(self) -> Started:
        """gunicorn, once /healthz answers (it migrates and installs the beat schedule
        first, as in production)."""
        web = self._start("web")
        web.wait_for("/healthz", self._healthz_answers, timeout=180)
        return web

    def start_worker(self, *, wait: bool = True) -> Started:
        """A worker (`deploy/start worker`); with wait, once it says it takes tasks."""
        self.worker_starts += 1
        n = self.worker_starts
        self.worker = self._start(
            "worker", "--hostname", f"journey{n}@%h", name=f"worker-{n}"
        )
        if wait:
            self.wait_worker_ready()
        return self.worker

    def wait_worker_ready(self) -> None:
        worker = self.worker
        worker.wait_for("ready line", lambda: " ready." in worker.output, timeout=120)

    def start_beat(self) -> Started:
        # --max-interval 1: beat looks at the schedule every second, so a 2 s sweep is on time.
        return self._start("beat", "--max-interval", "1")

    def _healthz_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """`manage.py ARGS` as an operator runs it next to the stack (same settings)."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **env},
            capture_output=True, text=True, timeout=120,
        )

    def logs(self) -> str:
        return "\n".join(process.tail() for process in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        _wait_for_other_database_sessions_to_end()


def _wait_for_other_database_sessions_to_end(timeout: float = 15) -> None:
    """PostgreSQL ends a dead client's session a moment after the process is gone; until
    then pytest-django could neither flush nor, at the end, drop the test database."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.2)


def _missing_services() -> list[str]:
    from django.db import connection

    missing = []
    if not os.environ.get("AIRLOCK_LIVE_BROKER_URL", "").startswith("redis://"):
        missing.append("AIRLOCK_LIVE_BROKER_URL=redis://127.0.0.1:6379/N (a Redis to flush)")
    if connection.vendor != "postgresql":
        missing.append("a PostgreSQL DATABASE_URL")
    browser = os.environ.get("AIRLOCK_BROWSER", "")
    if not (browser and os.access(browser, os.X_OK)):
        missing.append("AIRLOCK_BROWSER=/usr/bin/chromium (headless Chromium)")
    return missing


@pytest.fixture
def deployment(request, transactional_db, github, artifacts, tmp_path):
    """Airlock's settings for this test, none of its processes started yet (see `portal`
    and `portal_and_engine`): pytest's test database, the Redis broker (flushed), the local
    GitHub for the grant engine, sign-in and OIDC, DEBUG off over plain HTTP."""
    missing = _missing_services()
    if missing:
        pytest.skip("needs " + "; ".join(missing))
    broker = live_broker_url()
    static_root = request.getfixturevalue("static_root")  # only once we know it is needed
    import redis

    redis.Redis.from_url(broker).flushdb()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = _process_env(
        HOME=str(tmp_path),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=base_url,
        AIRLOCK_BASE_URL=base_url,
        AIRLOCK_BIND=f"127.0.0.1:{port}",
        # Plain HTTP on loopback; each HTTPS protection is on by default with DEBUG off.
        AIRLOCK_SSL_REDIRECT="false",
        AIRLOCK_SECURE_COOKIES="false",
        AIRLOCK_HSTS_SECONDS="0",
        AIRLOCK_STATIC_ROOT=str(static_root),
        AIRLOCK_DATA_DIR=str(tmp_path),
        DATABASE_URL=current_database_url(),
        CELERY_BROKER_URL=broker,
        GITHUB_URL=github.base_url,
        GITHUB_API_URL=github.api_url,
        GITHUB_TOKEN=github.app_token,
        GITHUB_OAUTH_CLIENT_ID=github.client_id,
        GITHUB_OAUTH_CLIENT_SECRET=github.client_secret,
        GITHUB_OIDC_ISSUER=github.oidc_issuer,
        AIRLOCK_OIDC_AUDIENCE=base_url,
        AIRLOCK_SWEEP_SECONDS=str(SWEEP_SECONDS),
        AIRLOCK_GITHUB_TIMEOUT_SECONDS="2",
        AIRLOCK_GITHUB_RETRY_MAX_SECONDS="5",
        AIRLOCK_LEASE_SECONDS="6",
        WEB_CONCURRENCY="1",
        LOG_LEVEL="INFO",
    )
    running = Portal(env, artifacts)
    try:
        yield running
    finally:
        # Also when the set-up failed half way: nothing may outlive the test, or hold the
        # test database when pytest-django flushes it.
        running.stop()
        redis.Redis.from_url(broker).flushdb()


@pytest.fixture
def portal(deployment) -> Portal:
    """The web process alone: enough when nothing is granted."""
    deployment.start_web()
    return deployment


@pytest.fixture
def portal_and_engine(deployment) -> Portal:
    """Web, worker and beat. The worker boots alongside web (it is waited for before the
    approval that needs it); beat once web has installed the schedule."""
    deployment.start_worker(wait=False)
    deployment.start_web()
    deployment.start_beat()
    return deployment


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets the chromium fixture see, at teardown, whether the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def chromium(request, monkeypatch, artifacts):
    """Headless Chromium (the machine's, never a downloaded build). When the test fails,
    every page still open is saved as failure-<n>.png beside the step screenshots."""
    executable = os.environ.get("AIRLOCK_BROWSER", "")
    if not executable:
        pytest.skip("needs AIRLOCK_BROWSER=/usr/bin/chromium (headless Chromium)")
    if not os.access(executable, os.X_OK):
        pytest.skip(f"AIRLOCK_BROWSER={executable} is not an executable")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread between calls, which makes
    # Django refuse ORM calls from the test body ("async context"). They are plain blocking
    # calls on this thread, which is what the check is there to protect; allow them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
            call = getattr(request.node, "report_call", None)
            if call is not None and call.failed:
                pages = [page for context in browser.contexts for page in context.pages]
                for n, page in enumerate(pages, 1):
                    try:
                        page.screenshot(path=str(artifacts / f"failure-{n}.png"), full_page=True)
                    except Exception as exc:  # noqa: BLE001 - best effort, the test failed already
                        (artifacts / f"failure-{n}.txt").write_text(f"{page.url}: {exc}")
        finally:
            browser.close()
            # ORM calls made while Playwright's loop ran got a connection of their own (a
            # context of their own, for Django); close it, or it would keep the test
            # database from being dropped at the end of the session.
            from django.db import connections

            connections.close_all()


POLICY_FILE = """\
approver_groups:
  - name: prod-approvers
    members: [alice, bob]
policies:
  - name: production
    repositories: ["acme/*"]
    environments: ["production"]
    access: [reviewer]
    max_duration: 4h
    default_duration: 1h
    approvals_required: 2
    approver_groups: [prod-approvers]
    reason_min_length: 20
    pending_ttl: 24h
"""


@pytest.fixture
def acme_production(deployment, github, tmp_path):
    """acme/api's production environment on the local GitHub, with a permanent reviewer
    (carol) and a wait timer Airlock must keep; the people of the journey as GitHub users;
    and the policy file loaded as a platform admin would (`apply_policies`): two approvals
    from prod-approvers (alice, bob), at most four hours."""
    for login in ("dave", "alice", "bob", "carol"):
        github.add_user(login, email=f"{login}@example.com")
    github.add_environment("acme/api", "production", reviewers=[("User", "carol")], wait_timer=5)
    policy_file = tmp_path / "policies.yml"
    policy_file.write_text(POLICY_FILE)
    applied = deployment.manage("apply_policies", str(policy_file))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return github.environment("acme/api", "production")


class Screens:
    """Numbered full-page screenshots: <folder>/<nn>-<step>.png."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.taken = 0

    def __call__(self, page, step: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def screens(artifacts) -> Screens:
    return Screens(artifacts)

