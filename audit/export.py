"""The audit log as data for others: one event as a dict, and JSON Lines for a SIEM.

A line carries everything its hash covers, so a reader can check each event on its own:
drop "id" and "hash", and sha256 of the rest as compact, key-sorted, ASCII JSON is "hash".
"""

import json
from collections.abc import Iterable, Iterator

from audit.models import AuditEvent

JSON_LINES_CONTENT_TYPE = "application/x-ndjson"
EXPORT_CHUNK_SIZE = 2000


def event_record(event: AuditEvent) -> dict:
    """One event as plain JSON data: the admin and every export use this shape."""
    return {"id": event.id, **event.chained_fields(), "hash": event.hash}


def json_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Each event as one line of JSON, newline included, in the order given."""
    for event in events:
        yield json.dumps(event_record(event), ensure_ascii=False) + "\n"


def events_for_export(queryset=None):
    """Oldest first, streamed: a SIEM reads the log in the order it was written."""
    queryset = AuditEvent.objects.all() if queryset is None else queryset
    return queryset.order_by("seq").iterator(chunk_size=EXPORT_CHUNK_SIZE)
