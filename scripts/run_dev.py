"""`make run`: the portal, a Celery worker and beat, with embedded defaults (SQLite, dry-run;
docs/operations.md)."""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


DEVELOPMENT_ENV = """\
# Development settings for this checkout, written once by `make` (scripts/run_dev.py):
# `make run` and commands typed beside it (.venv/bin/python manage.py ...) read them.
# Never committed (.gitignore) nor put in the image (.dockerignore). The settings read this
# file only while it says DEBUG=true and the environment does not set DEBUG (core/env.py).
DEBUG=true
SECRET_KEY={secret_key}
# The value demo/policies.yml's DEPLOY_TOKEN secret takes (value_from_env).
AIRLOCK_SECRET_DEPLOY_TOKEN=demo-deploy-token-value
"""


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def write_development_env(path: Path) -> bool:
    """Writes the development .env unless there is one (never overwritten: its SECRET_KEY
    also keeps the secret values stored so far readable). True when it wrote it."""
    try:
        # Exclusive create: a file that appeared meanwhile is kept, too. Owner-only, since
        # it holds a secret key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    # URL-safe: nothing a shell or an env-file reader would take for syntax.
    with os.fdopen(fd, "w") as dotenv:
        dotenv.write(DEVELOPMENT_ENV.format(secret_key=secrets.token_urlsafe(50)))
    return True


BROKER_READY = """
import django
django.setup()
from portal.celery import app
with app.connection_for_write() as connection:
    connection.ensure_connection(max_retries=3)
    connection.default_channel.queue_declare(
        queue=app.conf.task_default_queue, durable=True, auto_delete=False
    )
"""


def main() -> int:
    os.chdir(ROOT)
    env = dict(os.environ)
    data_dir = Path(env.get("AIRLOCK_DATA_DIR", ROOT / "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat write their metrics here for /metrics to add up; emptied at each
    # start, as prometheus-client needs (the processes of the last run are gone).
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "metrics")))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    dotenv = ROOT / ".env"
    if write_development_env(dotenv):
        print(f"Wrote {dotenv} (DEBUG=true, a new SECRET_KEY) for development.", flush=True)
    elif not _is_development_file(dotenv):
        # Someone's own .env, compose's for one: the settings leave it alone, so give the
        # processes started here the development defaults ourselves.
        print(f"{dotenv} does not say DEBUG=true, so neither make run nor manage.py reads it; "
              "make run uses its defaults.", flush=True)
        env.setdefault("DEBUG", "true")
        env.setdefault("AIRLOCK_SECRET_DEPLOY_TOKEN", "demo-deploy-token-value")
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    address = env.get("AIRLOCK_RUN_ADDRESS", "127.0.0.1:8000")

    def manage(*args):
        subprocess.run([sys.executable, "manage.py", *args], env=env, check=True)

    manage("migrate", "--no-input", "-v", "0")
    # The broker's own tables, made once before the worker and beat start: on a new SQLite
    # broker file both made them at once, and the one that lost (beat, seen in CI) kept a
    # dead channel and sent no task again ("channel disconnected").
    subprocess.run([sys.executable, "-c", BROKER_READY], env=env, check=True)
    manage("install_beat_schedule")
    manage("apply_policies", "demo/policies.yml")
    manage("load_demo")

    processes = [
        subprocess.Popen(
            [str(BIN / "celery"), "-A", "portal", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--hostname", "worker@%h"],
            env=env,
        ),
        subprocess.Popen(
            [str(BIN / "celery"), "-A", "portal", "beat", "--loglevel", "INFO"], env=env
        ),
        subprocess.Popen([sys.executable, "manage.py", "runserver", address], env=env),
    ]
    mode = "dry-run (no GitHub credentials)" if not (
        env.get("GITHUB_TOKEN") or env.get("GITHUB_APP_ID")
    ) else f"live against {env.get('GITHUB_API_URL', 'https://api.github.com')}"
    print(f"\nAirlock is starting on http://{address}/ in {mode}. Ctrl-C stops it.\n",
          flush=True)
    # A SIGTERM (from `timeout`, a process manager, ...) stops the children like Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    failed = [p for p in processes if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed else 0


def _is_development_file(path: Path) -> bool:
    # Run as a file (python scripts/run_dev.py), so the project is not on the path yet.
    sys.path.insert(0, str(ROOT))
    from core.env import development_env_file_values

    return development_env_file_values(path) is not None


if __name__ == "__main__":
    if sys.argv[1:] == ["--env-only"]:
        # `make`'s venv set-up: a checkout has its development settings before `make run`
        # first starts, so the README's manage.py commands work as written from the start.
        if write_development_env(ROOT / ".env"):
            print(f"Wrote {ROOT / '.env'} (DEBUG=true, a new SECRET_KEY) for development.")
        sys.exit(0)
    sys.exit(main())
