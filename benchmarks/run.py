"""Run Airlock's benchmarks (`make bench`) and write benchmarks/RESULTS.md (options and
what it needs: docs/operations.md "The benchmarks")."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/airlock_bench_run"
AUDIENCE = "https://airlock.bench.invalid"

NAMES = {
    1: "Check throughput",
    2: "Revocation lag",
    3: "Lost-message bound",
    4: "Mass expiry",
    5: "Fault soak",
    6: "Audit forwarding",
    7: "Growth",
    8: "Audit throughput",
}
ALL = sorted(NAMES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split()))
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers (1-8)")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs")
    parser.add_argument("--output", help="write the results here (default: RESULTS.md on a "
                        "full run, nowhere otherwise)")
    args = parser.parse_args(argv)
    try:
        chosen = {int(n) for n in args.only.split(",") if n.strip()}
        args.selected = sorted(chosen) or ALL
    except ValueError:
        parser.error("--only takes numbers, e.g. --only 2,3")
    unknown = [n for n in args.selected if n not in NAMES]
    if unknown:
        parser.error(f"no benchmark {unknown[0]}; they are 1 to {ALL[-1]}")
    return args


def sizes(quick: bool) -> dict:
    if quick:
        return {
            "sweep": 5,
            1: {"seconds": 5, "rounds": 2},
            2: {"environments": 4, "per_env": 5, "window_seconds": 15},
            3: {"environments": 4, "per_env": 5, "window_seconds": 20, "kill_after": 5,
                "down_seconds": 5},
            4: {"environments": 25, "window_seconds": 20, "limit": 20},
            5: {"environments": 8, "fault_seconds": 30, "kill_at": 10, "redis_at": 20},
            6: {"events": 1000, "outage_seconds": 10, "batch_sizes": (100, 500)},
            7: {"small": {"requests": 1_000, "events": 5_000},
                "large": {"requests": 5_000, "events": 25_000},
                "mine_requests": 100, "warmup": 1, "rounds": 3},
            8: {"seconds": 3, "rounds": 1},
        }
    return {
        "sweep": 15,
        1: {"seconds": 15, "rounds": 3},
        2: {"environments": 40, "per_env": 5, "window_seconds": 60},
        3: {"environments": 40, "per_env": 5, "window_seconds": 60, "kill_after": 15,
            "down_seconds": 10},
        4: {"environments": 250, "window_seconds": 60, "limit": 80},
        5: {"environments": 100, "fault_seconds": 150, "kill_at": 50, "redis_at": 100},
        # The figure: 10,000 events written during a 60-second outage of the sink.
        6: {"events": 10_000, "outage_seconds": 60, "batch_sizes": (100, 500, 2000)},
        # The sizes: 10,000 requests and 50,000 events, grown to 300,000 and 2,000,000.
        7: {"small": {"requests": 10_000, "events": 50_000},
            "large": {"requests": 300_000, "events": 2_000_000},
            "mine_requests": 1_000, "warmup": 2, "rounds": 7},
        # Many short rounds: one writer's rate swings by 2x from round to round on a shared
        # machine, and the ratio is the median of the rounds' own.
        8: {"seconds": 6, "rounds": 9},
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    full = args.selected == ALL and not args.quick
    output = ROOT / "benchmarks/RESULTS.md" if full else None
    if args.output:
        output = Path(args.output)
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="airlock-bench-"))
    command = "make bench" if full and not args.output else "benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    say(f"Airlock benchmarks {args.selected}{' (quick)' if args.quick else ''}; "
        f"logs and figures in {log_dir}")
    if 1 in args.selected and not shutil.which("wrk") and not install_wrk():
        say("wrk is not installed and could not be installed: apt-get install -y wrk")
        return 2

    from benchmarks import stack as stack_module
    from tests.github_fake.server import GitHubServer

    github = GitHubServer(port=0).start()
    redis = None
    started = time.monotonic()
    results: dict = {}
    try:
        if shutil.which("redis-server"):
            redis = stack_module.RedisServer(log_dir).start()
            broker_url = redis.url
        else:
            broker_url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/10")
            say(f"redis-server not found: using {broker_url} (no Redis restart in the soak)")
        size = sizes(args.quick)
        env = stack_module.process_env(
            database_url=database_url,
            broker_url=broker_url,
            github_api_url=github.api_url,
            github_token=github.app_token,
            oidc_issuer=github.oidc_issuer,
            sweep_seconds=size["sweep"],
            extra={"AIRLOCK_OIDC_AUDIENCE": AUDIENCE},
        )
        # This process is a client of the same stack (it files and approves requests, and
        # reads the database): the same settings, but quiet logs.
        os.environ.update(env)
        os.environ["LOG_LEVEL"] = "WARNING"
        machine = stack_module.machine_info(database_url)
        say("creating the database and migrating")
        stack_module.recreate_database(database_url)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

        from benchmarks.scenarios import Harness

        harness = Harness(
            github=github, env=env, log_dir=log_dir, sweep_seconds=size["sweep"], redis=redis,
            say=say,
        )
        for number in args.selected:
            say(f"\n[{number}] {NAMES[number]}")
            if number != args.selected[0]:
                # Each benchmark starts clean: nothing left over from the one before (open
                # grants, queued messages) may compete with it for the worker.
                fresh_database(database_url, stack_module)
            flush_broker(broker_url)
            github.reset()
            began = time.monotonic()
            try:
                results[number] = run_one(number, harness, size)
            except Exception as problem:  # the other benchmarks still run
                traceback.print_exc()
                results[number] = {"error": f"{type(problem).__name__}: {problem}"}
            results[number]["elapsed_seconds"] = round(time.monotonic() - began, 1)
            say(f"[{number}] done in {results[number]['elapsed_seconds']:.0f}s")
    finally:
        if redis is not None:
            redis.stop()
        github.stop()

    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": args.quick,
        "machine": machine,
        "sweep_seconds": size["sweep"],
        "total_seconds": round(time.monotonic() - started),
        "load_at_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "results": results,
    }
    (log_dir / "results.json").write_text(json.dumps(report, indent=1, default=str))
    from benchmarks.report import render

    text = render(report)
    print("\n" + text)
    if output:
        output.write_text(text)
        say(f"written to {output}")
    broken = [n for n, r in results.items() if "error" in r]
    return 1 if broken else 0


def run_one(number: int, harness, size: dict) -> dict:
    from benchmarks import audit_forwarding, audit_throughput, check_throughput, growth, scenarios

    params = size[number]
    if number == 8:
        return audit_throughput.run(harness, **params)
    if number == 7:
        return growth.run(harness, **params)
    if number == 6:
        return audit_forwarding.run(harness, **params)
    if number == 1:
        return check_throughput.run(harness, seconds=params["seconds"], rounds=params["rounds"])
    if number == 2:
        return scenarios.revocation_lag(
            harness, prefix="lag", environments=params["environments"],
            per_env=params["per_env"], window_seconds=params["window_seconds"],
        )
    if number == 3:
        return scenarios.revocation_lag(
            harness, prefix="kill", environments=params["environments"],
            per_env=params["per_env"], window_seconds=params["window_seconds"],
            kill_after=params["kill_after"], down_seconds=params["down_seconds"],
        )
    if number == 4:
        unlimited = scenarios.mass_expiry(
            harness, prefix="mass", environments=params["environments"],
            window_seconds=params["window_seconds"],
        )
        harness.github.reset()
        # The write limit is about environments (one PUT each), not grants: one grant per
        # environment keeps the engine's own work out of the figure.
        limited = scenarios.mass_expiry(
            harness, prefix="limited", environments=params["environments"],
            users_per_env=1, grants_per_user=1,
            window_seconds=params["window_seconds"], writes_per_minute=params["limit"],
        )
        return {"unlimited": unlimited, "limited": limited}
    return scenarios.fault_soak(
        harness, prefix="soak", environments=params["environments"],
        fault_seconds=params["fault_seconds"], kill_at=params["kill_at"],
        redis_at=params["redis_at"] if harness.redis is not None else None,
    )


def fresh_database(database_url: str, stack_module) -> None:
    from django.core.management import call_command
    from django.db import connections

    connections.close_all()
    stack_module.recreate_database(database_url)
    call_command("migrate", verbosity=0)


def flush_broker(broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url).flushdb()


def install_wrk() -> bool:
    """wrk from Debian's packages, when this process may install them (root, apt-get)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    say("installing wrk (apt-get install wrk)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return bool(shutil.which("wrk"))


def say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
