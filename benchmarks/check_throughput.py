"""Benchmark 1: the grant check's throughput against a bare Django view, in one run (what
it measures: docs/operations.md "The benchmarks")."""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from benchmarks import seeding
from benchmarks.stack import Gunicorn, StackError

HERE = Path(__file__).resolve().parent
CHECK_PATH = "/api/v1/grants/check"
BASELINE_PATH = "/bench/baseline"
ONE_QUERY_PATH = "/bench/one-query"


def seed_population(grants: int = 10_000) -> list[seeding.Environment]:
    """grants active grants: 400 environments (100 repositories x 4), 25 people each, from
    2,500 people (so each holds 4 grants), ending 1 to 24 hours from now."""
    environments = 400
    per_env = grants // environments
    envs = []
    for index, env in enumerate(seeding.environments("check", environments, per_env,
                                                     user_pool=2_500)):
        repository = f"check/svc-{index // 4:03d}"
        name = ("production", "staging", "qa", "perf")[index % 4]
        envs.append(seeding.Environment(repository, name, env.logins, env.baseline))
    seeding.bulk_grants(
        envs, status="active", expires_in=(3600, 86400), rng=random.Random(11)
    )
    return envs


def mint_tokens(github, envs, *, count: int, audience: str, run_offset: int, seed: int):
    """count OIDC tokens, each for a different workflow run of a person who holds a grant
    in that job's environment."""
    rng = random.Random(seed)
    tokens = []
    for index in range(count):
        env = rng.choice(envs)
        tokens.append(
            github.mint_oidc_token(
                {
                    "repository": env.repository,
                    "environment": env.environment,
                    "actor": rng.choice(env.logins),
                    "run_id": str(run_offset + index),
                    "run_attempt": "1",
                },
                aud=audience,
            )
        )
    return tokens


def _write_tokens(tokens, directory: Path, name: str) -> Path:
    path = directory / f"{name}.tokens"
    path.write_text("\n".join(tokens) + "\n")
    return path


def wrk(url: str, *, seconds: int, connections: int, tokens: Path | None) -> dict:
    env = dict(os.environ, WRK_TOKENS=str(tokens) if tokens else "")
    done = subprocess.run(
        [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(HERE / "wrk_report.lua"), url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise StackError(f"wrk gave no figures:\n{done.stdout}\n{done.stderr}")


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def queries_per_check(github, envs, audience: str) -> dict:
    """The check run in this process: queries for a run's first check (its answer is
    audited), for the same run asking again, and for a refusal."""
    client = Client()
    warm, first = mint_tokens(github, envs, count=2, audience=audience, run_offset=9_000_000,
                              seed=99)
    refused = github.mint_oidc_token(
        {"repository": envs[0].repository, "environment": envs[0].environment,
         "actor": "nobody-holds-this", "run_id": "9100000"},
        aud=audience,
    )
    client.get(CHECK_PATH, HTTP_AUTHORIZATION=f"Bearer {warm}")  # JWKS fetched, caches warm
    figures: dict = {}
    for label, token in (("first", first), ("repeat", first), ("refused", refused)):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(CHECK_PATH, HTTP_AUTHORIZATION=f"Bearer {token}")
        if response.status_code != 200:
            raise StackError(
                f"in-process check answered {response.status_code}: {response.content[:300]!r}"
            )
        figures[label] = len(captured.captured_queries)
        if label == "repeat":
            figures["repeat_sql"] = [q["sql"][:300] for q in captured.captured_queries]
            main = captured.captured_queries[0]["sql"]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + main)
        plan = cursor.fetchone()[0]
    plan = (plan if isinstance(plan, list) else json.loads(plan))[0]
    figures["main_query_ms"] = round(plan["Execution Time"], 3)
    figures["main_query_plan"] = _plan_nodes(plan["Plan"])
    return figures


def _plan_nodes(node, depth: int = 0) -> list[str]:
    label = node["Node Type"]
    if node.get("Relation Name"):
        label += f" on {node['Relation Name']}"
    if node.get("Index Name"):
        label += f" using {node['Index Name']}"
    lines = ["  " * depth + label]
    for child in node.get("Plans", []):
        lines += _plan_nodes(child, depth + 1)
    return lines


def run(h, *, seconds: int = 15, connections: int = 4, workers: int = 2,
        grants: int = 10_000) -> dict:
    audience = h.env["AIRLOCK_OIDC_AUDIENCE"]
    h.say(f"  seeding {grants} active grants")
    envs = seed_population(grants)
    figures: dict = {"grants": grants, "workers": workers, "connections": connections,
                     "seconds": seconds}
    figures["queries"] = queries_per_check(h.github, envs, audience)
    scratch = Path(tempfile.mkdtemp(prefix="tokens-", dir=h.log_dir))
    repeat = _write_tokens(
        mint_tokens(h.github, envs, count=300, audience=audience, run_offset=1, seed=1),
        scratch, "repeat",
    )
    gunicorn = Gunicorn(h.env, h.log_dir, workers=workers)
    try:
        gunicorn.wait_ready()
        sample = repeat.read_text().split()[0]
        status, answer = _get(gunicorn.url + CHECK_PATH, sample)
        if status != 200 or answer.get("allowed") is not True:
            raise StackError(f"the check answered {status} {answer}; expected allowed")
        h.say("  warming up")
        wrk(gunicorn.url + BASELINE_PATH, seconds=3, connections=connections, tokens=repeat)
        wrk(gunicorn.url + CHECK_PATH, seconds=3, connections=connections, tokens=repeat)

        h.say(f"  baseline: {seconds}s")
        base_1 = wrk(gunicorn.url + BASELINE_PATH, seconds=seconds, connections=connections,
                     tokens=repeat)
        h.say(f"  check (repeat run): {seconds}s")
        check = wrk(gunicorn.url + CHECK_PATH, seconds=seconds, connections=connections,
                    tokens=repeat)
        needed = int(check["rps"] * seconds * 1.3) + 100
        h.say(f"  minting {needed} tokens, one per workflow run")
        fresh = _write_tokens(
            mint_tokens(h.github, envs, count=needed, audience=audience,
                        run_offset=1_000_000, seed=2),
            scratch, "fresh",
        )
        h.say(f"  check (new run each, audited): {seconds}s")
        audited = wrk(gunicorn.url + CHECK_PATH, seconds=seconds, connections=connections,
                      tokens=fresh)
        audited["tokens"] = needed
        h.say(f"  one-query view: {seconds}s")
        one_query = wrk(gunicorn.url + ONE_QUERY_PATH, seconds=seconds,
                        connections=connections, tokens=repeat)
        h.say(f"  baseline again: {seconds}s")
        base_2 = wrk(gunicorn.url + BASELINE_PATH, seconds=seconds, connections=connections,
                     tokens=repeat)
        status, _ = _get(gunicorn.url + CHECK_PATH, sample)
        if status != 200:
            raise StackError(f"the check answered {status} after the load")
    finally:
        gunicorn.stop()
    baseline_rps = (base_1["rps"] + base_2["rps"]) / 2
    figures.update(
        baseline=base_1,
        baseline_again=base_2,
        check=check,
        check_audited=audited,
        one_query=one_query,
        ratio=check["rps"] / baseline_rps,
        ratio_one_query=one_query["rps"] / baseline_rps,
        ratio_audited=audited["rps"] / baseline_rps,
    )
    return figures
