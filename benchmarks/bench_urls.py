"""Airlock's URLs plus the throughput benchmark's baseline views (benchmarks/bench_wsgi.py)."""

from django.db import connection
from django.http import JsonResponse
from django.urls import path

from portal.urls import urlpatterns as airlock_urlpatterns


def baseline(request):
    """A bare JSON answer shaped like the check's, from a plain Django view."""
    return JsonResponse({"allowed": True, "grant": None, "reason": "baseline"})


def one_query(request):
    """The same answer after one trivial query: the least any check that consults the
    database on every call can cost. One round trip, like the check, which lets its own
    query stand in for Django's health check (grants/check/)."""
    connection.health_check_done = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse({"allowed": True, "grant": None, "reason": "one query"})


urlpatterns = [
    # Served with no middleware (bench_wsgi.bare_django): the "bare Django view".
    path("bench/bare", baseline),
    path("bench/bare-one-query", one_query),
    # Served through Airlock's middleware.
    path("bench/baseline", baseline),
    path("bench/one-query", one_query),
    *airlock_urlpatterns,
]
