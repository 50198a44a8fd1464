"""Request plumbing that runs before everything else: the request id every log line
carries, one access log line per request, /healthz, and the refusal of NUL characters."""

import logging
import re
import time
import uuid

from django.core.signals import request_finished
from django.http import HttpResponseBadRequest

from portal.api_errors import api_error_response
from portal.health import healthz
from portal.logging import request_id_var

access_log = logging.getLogger("portal.access")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_META = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
# A caller's id is kept only when it cannot garble a log line or a header: a proxy's or
# load balancer's id (UUIDs, hex, AWS's "Root=1-..." trace ids) fits easily.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")

HEALTHZ_PATH = "/healthz"


class RequestIdMiddleware:
    """Take the caller's X-Request-ID when sane, or make one; make it the current request
    id for logging, and send it back in the response.

    The id stays current until the response is closed (request_finished), not just until
    this middleware returns: Django logs 4xx and 5xx responses after the last middleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Read from META, as request.headers would: building request.headers copies every
        # header, a twentieth of the grant check's CPU, for one value.
        offered = request.META.get(REQUEST_ID_META, "")
        request_id = offered if SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id
        request_id_var.set(request_id)
        started = time.monotonic()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        if request.path != HEALTHZ_PATH:  # polled every few seconds; not worth a line
            self._log_access(request, response, started)
        return response

    @staticmethod
    def _log_access(request, response, started):
        user = getattr(request, "user", None)
        path = logged_path(request)
        access_log.info(
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "method": request.method,
                "path": path,  # never the query string, nor a code in the path
                "status_code": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "user": user.get_username() if user and user.is_authenticated else None,
            },
        )


# URL parameters that carry a secret (a one-time code in a link): logged masked.
SECRET_URL_KWARGS = ("code", "token")


def logged_path(request) -> str:
    """The request's path as the access log writes it: a one-time code or token in the path
    (Slack's account link, /account/slack/link/<code>/) is masked."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    for name in SECRET_URL_KWARGS:
        value = (match.kwargs.get(name) if match is not None else None) or ""
        if isinstance(value, str) and len(value) >= 8:
            path = path.replace(value, "[REDACTED]")
    return path


def _forget_request_id(**kwargs):
    request_id_var.set(None)


request_finished.connect(_forget_request_id, dispatch_uid="portal.middleware.request_id")


class HealthCheckMiddleware:
    """Answer /healthz before host validation and the HTTPS redirect: Docker and load
    balancers call it over plain HTTP with the container's address as the Host header,
    which ALLOWED_HOSTS rightly refuses for every other page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == HEALTHZ_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(values) -> bool:
    return any("\x00" in key or any("\x00" in v for v in vs) for key, vs in values.lists())


class RefuseNulMiddleware:
    """Refuse a NUL character in the path, the query string or form data with a 400,
    before the view runs.

    PostgreSQL text cannot hold NUL, and raw GET and POST values reach the ORM in more
    places than anyone can list: the admin's list filters, search and autocomplete, and
    any view that reads request.GET itself. Django's form fields refuse NUL in their own
    values; this refuses it in everything else, for every view, present and future. No
    Airlock input has a use for it.

    Form data is read here for urlencoded bodies (the raw body stays readable), and for
    multipart ones only where the CSRF check reads it anyway: a csrf_exempt view (the
    GitHub webhook) may read its body itself, which reading a multipart body here would
    forbid. Under /api/ the answer is in the API's error shape.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if "\x00" in request.path:
            where = "path"
        elif _has_nul(request.GET):
            where = "query string"
        elif self._reads_form(request, view_func) and _has_nul(request.POST):
            where = "form data"
        else:
            return None
        message = f"The request's {where} contains a NUL character."
        if "api" in request.resolver_match.namespaces:
            return api_error_response(message, status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")

    @staticmethod
    def _reads_form(request, view_func) -> bool:
        if request.method != "POST" or request.content_type not in FORM_CONTENT_TYPES:
            return False
        return request.content_type == FORM_CONTENT_TYPES[0] or not getattr(
            view_func, "csrf_exempt", False
        )
