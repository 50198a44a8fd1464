"""WSGI entry point for gunicorn: the grant check asked with a bearer token on its lean
handler, everything else on Django's full one (portal/check_path.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup(set_prefix=False)  # what get_wsgi_application does before building its handler

from portal.check_path import AirlockApplication  # noqa: E402

application = AirlockApplication()
