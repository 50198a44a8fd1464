"""The audit log as data for others: one event as a dict, JSON Lines for a SIEM, and the
log's head to keep outside the database (the line format: docs/audit-log.md)."""

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from audit.models import AuditEvent

JSON_LINES_CONTENT_TYPE = "application/x-ndjson"
EXPORT_CHUNK_SIZE = 2000
KEPT_HEAD_PATTERN = re.compile(r"([1-9][0-9]*):([0-9a-f]{64})")


@dataclass(frozen=True)
class KeptHead:
    """An event's place in the chain, written SEQ:HASH, to keep outside the database.

    Whoever can write to the database can empty the log and let it grow again, a sound
    chain with nothing to show for what was lost. A head kept elsewhere catches that:
    the log must still hold that event, at that seq, with that hash (verify_audit_log
    --head).
    """

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> "KeptHead":
        match = KEPT_HEAD_PATTERN.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not SEQ:HASH")
        return cls(seq=int(match[1]), hash=match[2])

    @classmethod
    def of(cls, event: AuditEvent) -> "KeptHead":
        return cls(seq=event.seq, hash=event.hash)

    def __str__(self):
        return f"{self.seq}:{self.hash}"


def log_head() -> KeptHead | None:
    """The newest event's place, or None while the log is empty."""
    newest = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
    return KeptHead.of(newest) if newest is not None else None


def event_record(event: AuditEvent) -> dict:
    """One event as plain JSON data: the admin and every export use this shape."""
    return {"id": event.id, **event.chained_fields(), "key_id": event.key_id, "hash": event.hash}


def json_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Each event as one line of JSON, newline included, in the order given."""
    for event in events:
        yield json.dumps(event_record(event), ensure_ascii=False) + "\n"


def events_for_export(queryset=None):
    """Oldest first, streamed: a SIEM reads the log in the order it was written."""
    queryset = AuditEvent.objects.all() if queryset is None else queryset
    return queryset.order_by("seq").iterator(chunk_size=EXPORT_CHUNK_SIZE)
