"""Django handlers with a middleware list of their own: the benchmarks' bare view (none)."""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler


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
