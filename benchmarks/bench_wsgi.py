"""Airlock's WSGI application plus a bare Django JSON view, /bench/baseline: the throughput
benchmark's baseline. Nothing in production routes it."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from django.conf import settings  # noqa: E402

# Read by Django's handler on every request (set_urlconf), so it takes effect at once.
settings.ROOT_URLCONF = "benchmarks.bench_urls"
