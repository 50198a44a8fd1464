"""Airlock's WSGI application (portal/wsgi.py, as gunicorn serves it) plus the throughput
benchmark's baselines: /bench/bare and /bench/bare-one-query on a Django handler with no
middleware at all, and /bench/baseline and /bench/one-query through Airlock's middleware.
Nothing in production routes them."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.conf import settings  # noqa: E402

from portal.check_path import MiddlewareListHandler  # noqa: E402
from portal.wsgi import application as airlock_application  # noqa: E402

# Read by Django's handler on every request (set_urlconf), so it takes effect at once.
settings.ROOT_URLCONF = "benchmarks.bench_urls"

BARE_PREFIX = "/bench/bare"
bare_django = MiddlewareListHandler([])


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(BARE_PREFIX):
        return bare_django(environ, start_response)
    return airlock_application(environ, start_response)
