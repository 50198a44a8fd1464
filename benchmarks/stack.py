"""The processes a benchmark runs against (Redis, the Celery worker and beat, gunicorn),
started for real and always stopped."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StackError(RuntimeError):
    """A process did not start, or a bounded wait ran out."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, condition, *, timeout: float, interval: float = 0.1, details=None):
    """Poll until condition() is true; returns time.monotonic() then. StackError after
    `timeout` seconds, with details() of what was observed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(interval)
    observed = details() if details else ""
    raise StackError(f"{what}: not seen within {timeout:.0f}s. {observed}")


class Process:
    """One started process in its own session, its output in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        text = self.output().splitlines()[-lines:]
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(text)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown, no acknowledgements."""
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 20) -> None:
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        self._log.close()


class RedisServer:
    """A private, non-persistent redis-server on a free port: restarting it loses every
    message, as a Redis without persistence does."""

    def __init__(self, log_dir: Path):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise StackError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.log_dir = log_dir
        self.process: Process | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.log_dir),
        ]
        self.process = Process(f"redis-{self.restarts}", argv, dict(os.environ), self.log_dir)
        wait_until("redis-server answering", self._answers, timeout=20, details=self.process.tail)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self, downtime: float = 2.0) -> None:
        """Stop (losing every queued and unacknowledged message), stay down, start again."""
        if self.process is not None:
            self.process.kill()
            self.process = None
        time.sleep(downtime)
        self.restarts += 1
        self.start()


# Every process that writes or verifies the audit log chains it with the same key.
AUDIT_KEY = "airlock-benchmark-audit-key-not-secret-0123456789"


def process_env(
    *,
    database_url: str,
    broker_url: str,
    github_api_url: str,
    github_token: str,
    oidc_issuer: str = "",
    base_url: str = "http://127.0.0.1:8000",
    sweep_seconds: int = 15,
    extra: dict | None = None,
) -> dict:
    """The environment of Airlock's processes: production settings (DEBUG off, JSON logs)
    with plain HTTP on loopback, pointed at the local GitHub."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "AIRLOCK_", "CELERY_", "DJANGO_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            # deploy/start runs $PYTHON: this interpreter (CI exports PYTHON=python3.11).
            "PYTHON": sys.executable,
            "PYTHONPATH": str(ROOT),
            "DEBUG": "false",
            "SECRET_KEY": "airlock-benchmark-not-secret-0123456789abcdefghijklmnop",
            "AIRLOCK_AUDIT_KEYS": AUDIT_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "AIRLOCK_SSL_REDIRECT": "false",
            "AIRLOCK_SECURE_COOKIES": "false",
            "AIRLOCK_HSTS_SECONDS": "0",
            "AIRLOCK_BASE_URL": base_url,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "GITHUB_API_URL": github_api_url,
            "GITHUB_URL": github_api_url.removesuffix("/api/v3"),
            "GITHUB_TOKEN": github_token,
            "AIRLOCK_SWEEP_SECONDS": str(sweep_seconds),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
    )
    if oidc_issuer:
        env["GITHUB_OIDC_ISSUER"] = oidc_issuer
    env.update(extra or {})
    return env


class LiveStack:
    """The Celery worker and beat, as `deploy/start` runs them. Log files are named after
    the stack (`<name>-worker-1.log`, `<name>-beat.log`), so stacks can share a folder."""

    _hostnames = iter(range(1, 1_000_000))

    def __init__(self, env: dict, log_dir: Path, *, name: str = "stack", concurrency: int = 2):
        self.env = dict(env, AIRLOCK_WORKER_CONCURRENCY=str(concurrency))
        self.name = name
        self.log_dir = log_dir
        self.hostname = ""
        self.worker: Process | None = None
        self.beat: Process | None = None
        self.worker_starts = 0
        self.worker_kills = 0

    def start(self) -> LiveStack:
        self.start_worker()
        self.beat = Process(
            f"{self.name}-beat",
            ["sh", "deploy/start", "beat", "--max-interval", "1"],
            self.env,
            self.log_dir,
        )
        self.wait_worker_ready()
        return self

    def start_worker(self) -> None:
        self.worker_starts += 1
        self.hostname = f"bench{next(self._hostnames)}@"
        self.worker = Process(
            f"{self.name}-worker-{self.worker_starts}",
            ["sh", "deploy/start", "worker", "--hostname", self.hostname + "%h"],
            self.env,
            self.log_dir,
        )

    def wait_worker_ready(self, timeout: float = 90) -> float:
        """Until the worker started last logs that it is ready; returns time.monotonic()."""
        worker = self.worker
        marker = self.hostname

        def ready() -> bool:
            if not worker.alive:
                raise StackError(f"the worker exited ({worker.process.returncode})\n{self.logs()}")
            return any(
                marker in line and " ready." in line for line in worker.output().splitlines()
            )

        return wait_until("the worker ready", ready, timeout=timeout, details=self.logs)

    def kill_worker(self) -> None:
        self.worker.kill()
        self.worker_kills += 1

    def restart_worker(self) -> float:
        """Start a new worker; returns how long it took to be ready (seconds)."""
        started = time.monotonic()
        self.start_worker()
        return self.wait_worker_ready() - started

    def stop(self) -> None:
        for process in (self.worker, self.beat):
            if process is not None:
                process.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(p.tail(lines) for p in (self.worker, self.beat) if p is not None)


class Gunicorn:
    """gunicorn with sync workers serving benchmarks.bench_wsgi on a free port."""

    def __init__(self, env: dict, log_dir: Path, *, workers: int = 2, port: int | None = None):
        self.port = port or free_port()
        argv = [
            sys.executable, "-m", "gunicorn", "benchmarks.bench_wsgi:application",
            "--worker-class", "sync",
            "--workers", str(workers),
            "--bind", f"127.0.0.1:{self.port}",
            "--backlog", "512",
            "--timeout", "60",
            "--error-logfile", "-",
        ]
        self.process = Process("gunicorn", argv, env, log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        def answers() -> bool:
            if not self.process.alive:
                raise StackError(f"gunicorn exited\n{self.process.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/bench/baseline", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        wait_until("gunicorn answering", answers, timeout=timeout, details=self.process.tail)

    def stop(self) -> None:
        self.process.stop()


# --- the database -----------------------------------------------------------------------------


def admin_url(database_url: str) -> str:
    """The same server's `postgres` database, to create and drop others from."""
    head, _, _ = database_url.rpartition("/")
    return head + "/postgres"


def recreate_database(database_url: str) -> None:
    import psycopg

    name = database_url.rpartition("/")[2]
    if not name.startswith("airlock_bench"):
        raise StackError(f"refusing to drop {name!r}: benchmark databases are airlock_bench_*")
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- the machine ------------------------------------------------------------------------------


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    words = (done.stdout + done.stderr).split()
    return " ".join(words[:2]) if words else "unknown"


def machine_info(database_url: str) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    postgres = ""
    try:
        import psycopg

        with psycopg.connect(admin_url(database_url)) as conn:
            postgres = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # the table says "unknown"; the benchmark itself will fail loudly
        pass
    redis = _command_output(["redis-server", "--version"]).split(" v=")[-1].split(" ")[0]
    import django

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor() or "unknown",
        "memory": memory or "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": postgres or "unknown",
        "redis": redis or "unknown",
        "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "wrk": _wrk_version(),
    }


def dump_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, default=str))
