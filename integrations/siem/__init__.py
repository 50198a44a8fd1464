"""Where the audit log is forwarded to (audit/forwarding.py): a SIEM's HTTP collector
(integrations/siem/http.py) or a syslog receiver (integrations/siem/syslog.py).

A sink takes one batch of events, each the plain JSON record of `audit.export.event_record`
(with `seq`, `hash` and `prev_hash`), and either returns once the receiver accepted all of it
or raises SinkError. It keeps no cursor and never skips: what was accepted is recorded by
audit/forwarding.py, which sends the same batch again after an error.
"""

import re
from collections.abc import Sequence
from typing import Protocol

# How much of a receiver's own words (an HTTP reason phrase) an error keeps: enough to read,
# not enough for a hostile receiver to fill the database and the admin with.
RECEIVER_TEXT_LIMIT = 200
# C0 and C1 controls and DEL: PostgreSQL refuses a NUL in text, and the others have no
# business in an admin page or a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SinkError(Exception):
    """The receiver did not accept the batch (refused, unreachable, timed out, a non-2xx
    answer). The message says what happened, for the admin and /metrics; it never holds a
    credential."""


def printable_text(text: str, limit: int = RECEIVER_TEXT_LIMIT) -> str:
    """`text` as safe to store and show: each control character as a \\x escape, a lone
    surrogate (no UTF-8 form) as a \\u one, and cut to `limit` characters with an ellipsis."""
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class Sink(Protocol):
    # "http" or "syslog": the sink's name in the database, the admin and /metrics.
    name: str
    # Where it sends to, safe to show (no token, no credentials in the URL).
    target: str

    def send(self, records: Sequence[dict]) -> None:
        """Deliver `records` (oldest first) or raise SinkError."""
