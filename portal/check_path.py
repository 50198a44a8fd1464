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

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.urls import get_resolver, reverse, set_urlconf

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


# Middleware that the check's path runs in a leaner form, in the same place.
LEANER_ON_THE_CHECK_PATH = {
    "csp.middleware.CSPMiddleware": "portal.check_path.CheckPathCSPMiddleware",
}

# Where a view's django-csp decorators leave their word on a response.
_CSP_RESPONSE_ATTRIBUTES = tuple(
    f"_csp_{what}{ro}" for what in ("config", "update", "replace", "exempt") for ro in ("", "_ro")
)


class CheckPathCSPMiddleware(CSPMiddleware):
    """django-csp's middleware with its headers built once instead of for every answer.

    django-csp builds the policy from the settings again on every response, as a view's
    decorators (attributes on the response) or a template's use of the request's nonce may
    change it: a tenth of the check's CPU. The check's answer has neither, so its headers
    are the same every time: django-csp's own build_policy with nothing to add, kept for as
    long as the settings hold the same policies. Any answer that does carry one of those,
    and every case django-csp treats apart (DEBUG, excluded URL prefixes, a header already
    set), goes through django-csp as before. test_check_path holds both to one answer.
    """

    _built: tuple | None = None  # (policy, report-only policy, [(header, value), ...])

    def process_response(self, request, response):
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        if (
            settings.DEBUG
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _CSP_RESPONSE_ATTRIBUTES)
            or HEADER in response
            or HEADER_REPORT_ONLY in response
            or any((p or {}).get("EXCLUDE_URL_PREFIXES") for p in (policy, report_only))
        ):
            return super().process_response(request, response)
        built = self._built
        if built is None or built[0] is not policy or built[1] is not report_only:
            headers = (
                (HEADER, build_policy()),
                (HEADER_REPORT_ONLY, build_policy(report_only=True)),
            )
            built = self._built = (policy, report_only, [(h, v) for h, v in headers if v])
        for header, value in built[2]:
            response[header] = value
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


def check_path_middleware() -> list[str]:
    return [
        LEANER_ON_THE_CHECK_PATH.get(m, m)
        for m in settings.MIDDLEWARE
        if m not in NOT_ON_THE_CHECK_PATH
    ]


def _asks_with_bearer_token(environ) -> bool:
    # As DRF's get_authorization_header and BearerTokenAuthentication read it: the first
    # word, in any case. Any other scheme (or none) may mean the session: the full stack.
    words = environ.get("HTTP_AUTHORIZATION", "").split(None, 1)
    return bool(words) and words[0].lower() == "bearer"


class CheckPathHandler(MiddlewareListHandler):
    """The lean handler, with the check's path resolved once per URL configuration.

    Django walks the URL patterns for every request (api/, v1/, grants/, ...): a tenth of
    the check's CPU, for an answer that is the same every time. The match is kept per
    resolver (a new ROOT_URLCONF, or a request's own urlconf, is resolved anew), and each
    request gets its own copy, as Django would give it a new one.
    """

    def __init__(self, middleware: list[str], check_path: str):
        self.check_path = check_path
        self._resolved: tuple | None = None  # (resolver, its ResolverMatch)
        super().__init__(middleware)

    def resolve_request(self, request):
        if hasattr(request, "urlconf"):
            set_urlconf(request.urlconf)
            resolver = get_resolver(request.urlconf)
        else:
            resolver = get_resolver()
        if request.path_info != self.check_path:
            match = resolver.resolve(request.path_info)
        else:
            kept = self._resolved
            if kept is None or kept[0] is not resolver:
                kept = self._resolved = (resolver, resolver.resolve(request.path_info))
            # ResolverMatch refuses copy.copy (it may not be pickled): its attributes are
            # copied, its dictionaries and lists (kwargs, namespaces, ...) with them.
            match = object.__new__(type(kept[1]))
            match.__dict__.update(
                (k, v.copy() if type(v) in (dict, list) else v)
                for k, v in kept[1].__dict__.items()
            )
        request.resolver_match = match
        return match


class AirlockApplication:
    """The portal's WSGI application: the check with a bearer token on its lean handler,
    every other request on the full one."""

    def __init__(self):
        self.full = WSGIHandler()
        self.check_path = reverse("api:v1:grant-check")
        self.check = CheckPathHandler(check_path_middleware(), self.check_path)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == self.check_path and _asks_with_bearer_token(environ):
            return self.check(environ, start_response)
        return self.full(environ, start_response)
