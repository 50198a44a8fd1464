"""`make run`: the portal, a Celery worker and beat, with embedded defaults.

SQLite and a SQLite-backed broker, so nothing else needs installing; dry-run unless
GitHub credentials are set in the environment.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


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
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    env.setdefault("AIRLOCK_SECRET_DEPLOY_TOKEN", "demo-deploy-token-value")
    address = env.get("AIRLOCK_RUN_ADDRESS", "127.0.0.1:8000")

    def manage(*args):
        subprocess.run([sys.executable, "manage.py", *args], env=env, check=True)

    manage("migrate", "--no-input", "-v", "0")
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


if __name__ == "__main__":
    sys.exit(main())
