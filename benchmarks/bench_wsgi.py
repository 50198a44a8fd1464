"""Airlock's WSGI application plus one bare Django JSON view, /bench/baseline, served by the
same processes: the throughput benchmark's baseline. Nothing in production routes it.

The view goes through the same middleware as the grant check (request id, access log,
security, sessions, CSRF, auth...), but does no authentication, no query and no
serialisation of its own: the difference between the two is what the check costs.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from django.conf import settings  # noqa: E402

# Read by Django's handler on every request (set_urlconf), so it takes effect at once.
settings.ROOT_URLCONF = "benchmarks.bench_urls"
