"""Airlock's own processes, started for real by tests: `deploy/start web|worker|beat`, the
commands the image runs, each in its own process group with its output in a file, against
pytest's test database and CI's services.

Used by tests/portal/test_processes.py, tests/grants/test_live_stack.py and tests/browser/.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """The database this test runs on (pytest-django's test database) as a DATABASE_URL,
    so that processes started by the test share it."""
    from django.db import connection

    db = connection.settings_dict
    credentials = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    at = f"{credentials}@" if credentials else ""
    return f"postgres://{at}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def live_broker_url() -> str:
    """CI's Redis broker and PostgreSQL, or a skip saying which is missing."""
    from django.db import connection

    url = os.environ.get("AIRLOCK_LIVE_BROKER_URL", "")
    if not url.startswith("redis://"):
        pytest.skip("needs AIRLOCK_LIVE_BROKER_URL=redis://127.0.0.1:6379/N (a Redis to flush)")
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    return url


class Started:
    """A `deploy/start ROLE [ARGS]` process in its own session (so that a kill takes the
    worker's pool children with it, as a crashed container would), stdout in
    `<log_dir>/<name>.log`. The web role's stderr goes there too; the others' to
    `<name>.err`, so that their stdout holds log records only."""

    def __init__(self, role: str, env: dict, log_dir: Path, *args: str, name: str = ""):
        self.role = role
        self.name = name or role
        self.env = env
        self.log_path = log_dir / f"{self.name}.log"
        self._log = self.log_path.open("w")
        self._err = None if role == "web" else (log_dir / f"{self.name}.err").open("w")
        self.process = subprocess.Popen(
            ["sh", "deploy/start", role, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=self._err or subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = self.output.splitlines()[-lines:]
        if self._err is not None:
            text += self.log_path.with_suffix(".err").read_text(errors="replace").splitlines()[
                -lines:
            ]
        return f"--- {self.name} (last lines) ---\n" + "\n".join(text)

    def wait_for(self, what: str, check, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.tail(200)}")
            if check():
                return
            time.sleep(0.2)
        pytest.fail(f"{self.name}: no {what} within {timeout}s:\n{self.tail(200)}")

    def healthcheck(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "deploy/start", "healthcheck", self.role], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=60,
        )

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown, no acknowledgements."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self._close()

    def _close(self) -> None:
        self._log.close()
        if self._err is not None:
            self._err.close()


def wait_until(what: str, condition, *, timeout: float, interval: float = 0.2, details=None):
    """Poll `condition` until it is true (returns time.monotonic() then) or fail after
    `timeout` seconds, saying what was observed (`details()`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(interval)
    observed = details() if details else ""
    pytest.fail(f"{what}: not seen within {timeout}s.\n{observed}")
