"""Where the audit log is forwarded to (audit/forwarding.py): a SIEM's HTTP collector
(integrations/siem/http.py) or a syslog receiver (integrations/siem/syslog.py).

A sink takes one batch of events, each the plain JSON record of `audit.export.event_record`
(with `seq`, `hash` and `prev_hash`), and either returns once the receiver accepted all of it
or raises SinkError. It keeps no cursor and never skips: what was accepted is recorded by
audit/forwarding.py, which sends the same batch again after an error.
"""

from collections.abc import Sequence
from typing import Protocol


class SinkError(Exception):
    """The receiver did not accept the batch (refused, unreachable, timed out, a non-2xx
    answer). The message says what happened, for the admin and /metrics; it never holds a
    credential."""


class Sink(Protocol):
    # "http" or "syslog": the sink's name in the database, the admin and /metrics.
    name: str
    # Where it sends to, safe to show (no token, no credentials in the URL).
    target: str

    def send(self, records: Sequence[dict]) -> None:
        """Deliver `records` (oldest first) or raise SinkError."""
