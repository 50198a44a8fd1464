"""Benchmark 1's in-process breakdown: where a check's time goes, per layer, next to a bare
Django view, measured in the orchestrating process on the benchmark's own database (what
wrk's figures cannot tell apart)."""

from __future__ import annotations

import cProfile
import logging
import os
import pstats
import statistics
import time
from io import BytesIO
from urllib.parse import urlsplit
from wsgiref.util import setup_testing_defaults

from django.conf import settings
from django.db import connection

# Functions whose time (with what they call) is a layer of the check, as cProfile sees it.
LAYERS = {
    "access log line": ("portal/middleware.py", "_log_access"),
    "authentication (OIDC verified-token cache, or the API token's read)": (
        "portal/authentication.py", "authenticate"),
    "rate limit (a cache increment)": ("portal/ratelimit.py", "allow_request"),
    "the check: scope, query, answer, audit marks": ("grants/check/answer.py",
                                                     "grant_check_answer"),
    "  of which the check's query": ("grants/check/query.py", "in_force_grants"),
    "DRF view (everything in dispatch)": ("rest_framework/views.py", "dispatch"),
    "middleware and handler (everything)": ("django/core/handlers/wsgi.py", "__call__"),
}


def _environ(url: str, token: str | None) -> dict:
    parts = urlsplit(url)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "wsgi.input": BytesIO(b""),
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    setup_testing_defaults(environ)
    return environ


def _call(application, url: str, token: str | None) -> str:
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status

    body = application(_environ(url, token), start_response)
    b"".join(body)
    body.close()
    return answer["status"]


def _timed(application, url, token, *, calls: int, rounds: int) -> dict:
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            _call(application, url, token)
        walls.append((time.perf_counter() - wall) / calls * 1e6)
        cpus.append((time.process_time() - cpu) / calls * 1e6)
    return {"wall_us": round(statistics.median(walls)), "cpu_us": round(statistics.median(cpus)),
            "wall_us_min": round(min(walls)), "cpu_us_min": round(min(cpus))}


def _layers(application, url, token, *, calls: int) -> dict:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        _call(application, url, token)
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = None
    found = {}
    for label, (path, name) in LAYERS.items():
        cumulative = sum(
            ct for (file, _, function), (_, _, _, ct, _) in stats.items()
            if function == name and file.replace(os.sep, "/").endswith(path)
        )
        found[label] = cumulative / calls * 1e6
        if label.startswith("middleware and handler"):
            total = found[label]
    return {label: {"us_profiled": round(us), "share": round(us / total, 3) if total else None}
            for label, us in found.items()}


def layer_profile(lines: dict[str, tuple], *, calls: int = 300, rounds: int = 5) -> dict:
    """lines: label -> (application, url, token). Each line's wall and CPU time per call
    (medians and minima over rounds, interleaved), and for the checks their layers' shares
    under cProfile. Access log lines are formatted and written to /dev/null, as they are
    formatted in production."""
    root = logging.getLogger()
    access = logging.getLogger("portal.access")
    streams = [(h, h.setStream(open(os.devnull, "w")))  # noqa: SIM115
               for h in root.handlers if isinstance(h, logging.StreamHandler)]
    level, urlconf = access.level, settings.ROOT_URLCONF
    access.setLevel(logging.INFO)
    settings.ROOT_URLCONF = "benchmarks.bench_urls"
    try:
        for application, url, token in lines.values():
            status = _call(application, url, token)
            if not status.startswith("200"):
                raise RuntimeError(f"{url} answered {status} in-process")
        timings = {label: [] for label in lines}
        for _ in range(rounds):
            for label, (application, url, token) in lines.items():
                timings[label].append(_timed(application, url, token, calls=calls, rounds=1))
        figures = {
            label: {key: round(statistics.median(t[key] for t in runs))
                    for key in ("wall_us", "cpu_us")}
            | {key: min(t[key] for t in runs) for key in ("wall_us_min", "cpu_us_min")}
            for label, runs in timings.items()
        }
        for label, (application, url, token) in lines.items():
            if label.startswith("check"):
                figures[label]["layers"] = _layers(application, url, token, calls=calls)
        figures["round trip, SELECT 1 alone"] = _round_trip("SELECT 1", [], calls=calls * 3)
    finally:
        settings.ROOT_URLCONF = urlconf
        access.setLevel(level)
        for handler, stream in streams:
            handler.setStream(stream).close()
    return figures


def _round_trip(sql: str, params: list, *, calls: int) -> dict:
    walls = []
    with connection.cursor() as cursor:
        for _ in range(calls):
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            walls.append((time.perf_counter() - started) * 1e6)
    return {"wall_us": round(statistics.median(walls)), "wall_us_min": round(min(walls))}


def check_query_round_trip(scope, *, calls: int) -> dict:
    """The check's own query as the check runs it (grants.check.in_force_grants through
    core.statement: prepared on PostgreSQL, its rows read into answers), alone: wall and
    CPU of this process per call."""
    from django.utils import timezone

    from grants.check import in_force_grants

    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        in_force_grants(scope=scope, now=timezone.now())
        walls.append((time.perf_counter() - wall) * 1e6)
        cpus.append((time.process_time() - cpu) * 1e6)
    return {"wall_us": round(statistics.median(walls)), "wall_us_min": round(min(walls)),
            "cpu_us": round(statistics.median(cpus)), "cpu_us_min": round(min(cpus))}
