"""Fixtures of the portal's tests: the production logging config captured, and the admin
signed in with one request to list."""

import io
import json
import logging
import logging.config

import pytest

from portal.logging import logging_config
from tests.requests_app.factories import AccessRequestFactory


class CapturedLogs:
    def __init__(self, buffer: io.StringIO):
        self.buffer = buffer

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[dict]:
        """Each line, parsed: fails unless every line is one JSON object."""
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def capture_logs():
    """capture_logs(log_format="json"): the production logging config, writing to a
    buffer instead of stdout."""

    def configure(log_format="json", level="DEBUG") -> CapturedLogs:
        logging.config.dictConfig(logging_config(log_format=log_format, level=level))
        handler = logging.getLogger().handlers[0]
        buffer = io.StringIO()
        handler.setStream(buffer)
        return CapturedLogs(buffer)

    previous_root = logging.getLogger().handlers[:], logging.getLogger().level
    yield configure
    # Put back the test run's own logging (pytest's capture handlers included).
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    root.handlers[:] = previous_root[0]
    root.setLevel(previous_root[1])


@pytest.fixture
def admin_client(root_client):
    """root signed in on the admin, with one request in its lists (pytest-django's own
    admin_client, overridden here, has none)."""
    AccessRequestFactory()
    return root_client
