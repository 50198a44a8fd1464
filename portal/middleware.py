"""Request plumbing that runs before everything else: the request id every log line
carries, one access log line per request, and /healthz."""

import logging
import re
import time
import uuid

from django.core.signals import request_finished

from portal.health import healthz
from portal.logging import request_id_var

access_log = logging.getLogger("portal.access")

REQUEST_ID_HEADER = "X-Request-ID"
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
        offered = request.headers.get(REQUEST_ID_HEADER, "")
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
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,  # never the query string: it can carry codes
                "status_code": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "user": user.get_username() if user and user.is_authenticated else None,
            },
        )


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
