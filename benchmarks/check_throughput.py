"""Benchmark 1: the grant check's throughput against a bare Django view, in one run (what
it measures: docs/operations.md "The benchmarks")."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from benchmarks import seeding
from benchmarks.stack import Gunicorn, StackError

HERE = Path(__file__).resolve().parent
CHECK_PATH = "/api/v1/grants/check"
# A bare Django view with no middleware, alone and with one SELECT 1 (benchmarks/bench_wsgi.py).
BARE_PATH = "/bench/bare"
BARE_ONE_QUERY_PATH = "/bench/bare-one-query"
# The same views through Airlock's middleware.
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
    figures["main_sql"] = main
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


def api_token_lines(envs, *, count: int, seed: int) -> list[str]:
    """count API-token checks, each a person asking about an environment where they hold a
    grant: the token, a tab, then the check's path with its target (wrk_report.lua)."""
    from django.contrib.auth import get_user_model

    from requests_app.tokens import api_token_create

    rng = random.Random(seed)
    people = {}
    lines = []
    for _ in range(count):
        env = rng.choice(envs)
        login = rng.choice(env.logins)
        if login not in people:
            user = get_user_model().objects.get(username=login)
            people[login] = api_token_create(user=user, name="bench")[1]
        query = urllib.parse.urlencode(
            {"repository": env.repository, "environment": env.environment}
        )
        lines.append(f"{people[login]}\t{CHECK_PATH}?{query}")
    return lines


def in_process_profile(token_files: dict[str, Path], main_sql: str, envs) -> dict:
    """benchmarks/check_profile.py on the same lines as wrk's, in this process."""
    from django.core.handlers.wsgi import WSGIHandler

    from benchmarks.check_profile import _round_trip, check_query_round_trip, layer_profile
    from grants.check import CheckScope
    from portal.check_path import AirlockApplication, MiddlewareListHandler, check_path_middleware

    oidc_token = token_files["repeat"].read_text().split()[0]
    api_token, api_path = token_files["api"].read_text().splitlines()[0].split("\t")
    bare, airlock = MiddlewareListHandler([]), AirlockApplication()
    figures = layer_profile({
        "bare view, no middleware": (bare, BARE_PATH, None),
        "bare view + SELECT 1, no middleware": (bare, BARE_ONE_QUERY_PATH, None),
        "bare view, the check's middleware": (
            MiddlewareListHandler(check_path_middleware()), BASELINE_PATH, None),
        "bare view, all of Airlock's middleware": (WSGIHandler(), BASELINE_PATH, None),
        "check, OIDC token": (airlock, CHECK_PATH, oidc_token),
        "check, API token": (airlock, api_path, api_token),
    })
    figures["round trip, the check's query alone (not prepared)"] = _round_trip(
        main_sql, [], calls=900
    )
    # As the check runs it: prepared (core.statement), its rows read into answers.
    env = envs[0]
    figures["round trip, the check's query alone, prepared, as the check runs it"] = (
        check_query_round_trip(
            CheckScope(repository=env.repository, environment=env.environment,
                       login=env.logins[0]),
            calls=900,
        )
    )
    return figures


# What each round measures, in this order; the rounds interleave them (A B C A B C) so that
# the machine's other work weighs on each alike, and the figures are the rounds' medians.
LINES = {
    "bare": (BARE_PATH, "repeat"),
    "check": (CHECK_PATH, "repeat"),
    "check_api_token": (None, "api"),
    "bare_one_query": (BARE_ONE_QUERY_PATH, "repeat"),
    "baseline": (BASELINE_PATH, "repeat"),
    "one_query": (ONE_QUERY_PATH, "repeat"),
}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run(h, *, seconds: int = 15, connections: int = 4, workers: int = 2,
        grants: int = 10_000, rounds: int = 2) -> dict:
    audience = h.env["AIRLOCK_OIDC_AUDIENCE"]
    h.say(f"  seeding {grants} active grants")
    envs = seed_population(grants)
    figures: dict = {"grants": grants, "workers": workers, "connections": connections,
                     "seconds": seconds, "rounds": rounds}
    figures["queries"] = queries_per_check(h.github, envs, audience)
    main_sql = figures["queries"].pop("main_sql")
    scratch = Path(tempfile.mkdtemp(prefix="tokens-", dir=h.log_dir))
    token_files = {
        "repeat": _write_tokens(
            mint_tokens(h.github, envs, count=300, audience=audience, run_offset=1, seed=1),
            scratch, "repeat",
        ),
        "api": _write_tokens(api_token_lines(envs, count=300, seed=3), scratch, "api"),
    }
    h.say("  in-process profile")
    figures["profile"] = in_process_profile(token_files, main_sql, envs)
    gunicorn = Gunicorn(h.env, h.log_dir, workers=workers)
    runs: dict[str, list[dict]] = {name: [] for name in LINES}
    try:
        gunicorn.wait_ready()
        sample = token_files["repeat"].read_text().split()[0]
        status, answer = _get(gunicorn.url + CHECK_PATH, sample)
        if status != 200 or answer.get("allowed") is not True:
            raise StackError(f"the check answered {status} {answer}; expected allowed")
        api_token, api_path = token_files["api"].read_text().splitlines()[0].split("\t")
        status, answer = _get(gunicorn.url + api_path, api_token)
        if status != 200 or answer.get("allowed") is not True:
            raise StackError(f"the API-token check answered {status} {answer}; expected allowed")
        h.say("  warming up")
        for path, tokens in LINES.values():
            wrk(gunicorn.url + (path or CHECK_PATH), seconds=2, connections=connections,
                tokens=token_files[tokens])
        for number in range(1, rounds + 1):
            for name, (path, tokens) in LINES.items():
                h.say(f"  round {number}: {name}, {seconds}s")
                runs[name].append(
                    wrk(gunicorn.url + (path or CHECK_PATH), seconds=seconds,
                        connections=connections, tokens=token_files[tokens])
                )
        needed = int(_median([r["rps"] for r in runs["check"]]) * seconds * 1.3) + 100
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
        status, _ = _get(gunicorn.url + CHECK_PATH, sample)
        if status != 200:
            raise StackError(f"the check answered {status} after the load")
    finally:
        gunicorn.stop()
    rps = {name: _median([r["rps"] for r in results]) for name, results in runs.items()}
    figures.update(runs=runs, check_audited=audited, rps=rps)
    figures["ratios"] = {
        f"{line}/{base}": rps[line] / rps[base]
        for line in ("check", "check_api_token", "bare_one_query")
        for base in ("bare", "bare_one_query", "baseline")
        if line != base
    }
    figures["ratios"]["check_audited/bare"] = audited["rps"] / rps["bare"]
    # The figure the target is about: the check against a bare Django view (no middleware).
    figures["ratio"] = figures["ratios"]["check/bare"]
    return figures
