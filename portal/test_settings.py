"""Test settings: the real settings with a fixed local GitHub and fast password hashing."""

import os
import socket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# allauth reads GitHub's URLs when it is imported, so the local GitHub's port is chosen
# here, before anything else, and the test server binds to it (tests/conftest.py).
os.environ.setdefault("AIRLOCK_TEST_GITHUB_PORT", str(_free_port()))
_github = f"http://127.0.0.1:{os.environ['AIRLOCK_TEST_GITHUB_PORT']}"
os.environ.setdefault("DEBUG", "true")
os.environ["GITHUB_URL"] = _github
os.environ["GITHUB_API_URL"] = f"{_github}/api/v3"
os.environ.setdefault("GITHUB_OAUTH_CLIENT_ID", "airlock-test-client")
os.environ.setdefault("GITHUB_OAUTH_CLIENT_SECRET", "airlock-test-secret")
os.environ.setdefault("GITHUB_OIDC_ISSUER", f"{_github}/oidc")

from portal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
CELERY_BROKER_URL = "memory://"
# WhiteNoise serves collected files only and warns on every request when there are none;
# tests (and the live server, which serves static files itself) do without it.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405
# Each test process's own memory, whatever CACHE_URL the shell has: a test that needs the
# shared cache points it at Redis itself (tests/portal/test_ratelimit.py).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
