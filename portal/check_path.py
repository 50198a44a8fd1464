"""The grant check's lean request path: the WSGI application gunicorn serves sends
`GET /api/v1/grants/check` with a bearer token through a Django handler that runs only the
middleware such an answer needs (docs/check.md "Speed").

Everything else, and the check asked with a session cookie, goes through the full stack.
A bearer-token call never touches the session, the CSRF token, Django's auth middleware,
messages or allauth: DRF's BearerTokenAuthentication either authenticates it or refuses
it before SessionAuthentication is asked (portal/authentication.py), and the view is
CSRF-exempt like every DRF view. Those middleware only cost time there (about a fifth of
a check). Whatever sets a header, logs, validates the host or refuses bad input stays:
tests/api/test_check_path.py holds both paths to the same answers, headers and log lines.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.urls import reverse

# Middleware that the check asked with a bearer token does not need. A denylist, not an
# allowlist: a middleware added to settings later runs on the check's path too, until
# someone decides it need not.
NOT_ON_THE_CHECK_PATH = frozenset(
    {
        # Answer only their own paths (/healthz, /metrics, static files).
        "portal.middleware.HealthCheckMiddleware",
        "portal.metrics_view.MetricsMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        # A browser's: the session, its CSRF token, its user, its messages, allauth's
        # sign-in flows.
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "allauth.account.middleware.AccountMiddleware",
    }
)


class MiddlewareListHandler(WSGIHandler):
    """Django's WSGI handler with its own middleware list instead of settings.MIDDLEWARE."""

    def __init__(self, middleware: list[str]):
        self.middleware = list(middleware)
        super().__init__()

    def load_middleware(self, is_async=False):
        # Django's handler builds its chain from settings.MIDDLEWARE, and has no argument
        # for another list: the setting is swapped while it builds (once, at start-up,
        # before any request), then put back.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = self.middleware
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def check_path_middleware() -> list[str]:
    return [m for m in settings.MIDDLEWARE if m not in NOT_ON_THE_CHECK_PATH]


def _asks_with_bearer_token(environ) -> bool:
    # As DRF's get_authorization_header and BearerTokenAuthentication read it: the first
    # word, in any case. Any other scheme (or none) may mean the session: the full stack.
    words = environ.get("HTTP_AUTHORIZATION", "").split(None, 1)
    return bool(words) and words[0].lower() == "bearer"


class AirlockApplication:
    """The portal's WSGI application: the check with a bearer token on its lean handler,
    every other request on the full one."""

    def __init__(self):
        self.full = WSGIHandler()
        self.check = MiddlewareListHandler(check_path_middleware())
        self.check_path = reverse("api:v1:grant-check")

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == self.check_path and _asks_with_bearer_token(environ):
            return self.check(environ, start_response)
        return self.full(environ, start_response)
