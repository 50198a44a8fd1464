"""/healthz: can this node serve? The database and the broker, and when beat last sent the
sweep (what is 503 and what is degraded: docs/operations.md)."""

import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

BROKER_TIMEOUT_SECONDS = 3

# Beat is late when the sweep has not been sent for this many sweep intervals.
STALE_AFTER_SWEEPS = 3


def database_status() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not reachable"; the class name says why
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": _milliseconds_since(started)}


def broker_status() -> dict:
    from portal.celery import app

    started = time.monotonic()
    try:
        with app.connection_for_write(connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
            # One attempt, no back-off sleep: a health check must answer quickly.
            broker.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0,
                timeout=BROKER_TIMEOUT_SECONDS,
            )
    except Exception as exc:  # kombu raises transport-specific errors
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": _milliseconds_since(started)}


def beat_status(*, database_ok: bool = True) -> dict:
    """When beat last sent the sweep (the periodic task whose name or task contains
    "sweep"), and whether that is recent enough. Null times when it never has, or when
    the database cannot say. Not ok either while any of Airlock's beat entries is missing
    or disabled (entries_missing, entries_disabled name them)."""
    stale_after = STALE_AFTER_SWEEPS * settings.AIRLOCK_SWEEP_SECONDS
    status = {
        "ok": False,
        "last_sweep_at": None,
        "age_seconds": None,
        "stale_after_seconds": stale_after,
    }
    if not database_ok:
        return status | {"error": "database unavailable"}
    from django_celery_beat.models import PeriodicTask

    from grants.selectors import beat_entries_out_of_place

    try:
        out_of_place = beat_entries_out_of_place()
        last_sweep_at = (
            PeriodicTask.objects.filter(Q(name__icontains="sweep") | Q(task__icontains="sweep"))
            .filter(enabled=True, last_run_at__isnull=False)
            .order_by("-last_run_at")
            .values_list("last_run_at", flat=True)
            .first()
        )
    except DatabaseError as exc:  # e.g. before the first migration
        return status | {"error": type(exc).__name__}
    status |= {
        "entries_missing": out_of_place["missing"],
        "entries_disabled": out_of_place["disabled"],
    }
    if last_sweep_at is None:
        return status
    age = max(0.0, (timezone.now() - last_sweep_at).total_seconds())
    in_place = not (out_of_place["missing"] or out_of_place["disabled"])
    return status | {
        "ok": age <= stale_after and in_place,
        "last_sweep_at": last_sweep_at.isoformat(),
        "age_seconds": round(age, 1),
    }


@never_cache
def healthz(request):
    database = database_status()
    broker = broker_status()
    beat = beat_status(database_ok=database["ok"])
    serving = database["ok"] and broker["ok"]
    if not serving:
        status = "unavailable"
    elif beat["ok"]:
        status = "ok"
    else:
        status = "degraded"
    return JsonResponse(
        {"status": status, "database": database, "broker": broker, "beat": beat},
        status=200 if serving else 503,
    )


def _milliseconds_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
