"""Airlock's URLs plus the throughput benchmark's baseline view (benchmarks/bench_wsgi.py)."""

from django.http import JsonResponse
from django.urls import path

from portal.urls import urlpatterns as airlock_urlpatterns


def baseline(request):
    """A bare JSON answer shaped like the check's, from a plain Django view."""
    return JsonResponse({"allowed": True, "grant": None, "reason": "baseline"})


urlpatterns = [path("bench/baseline", baseline), *airlock_urlpatterns]
