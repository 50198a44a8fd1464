"""Checking the audit log's hash chain from the first event to the head."""

from dataclasses import dataclass

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent

# Rows fetched per round trip; memory use stays flat however long the log is.
CHUNK_SIZE = 2000


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checked: int
    # The first event whose link is wrong (None when the log is intact, or when what is
    # wrong is that events after the last one present are gone).
    first_broken: AuditEvent | None = None
    problem: str = ""
    # The newest event's hash when the chain is intact.
    head_hash: str = ""


def verify_chain() -> VerificationResult:
    """Walk the events in seq order and report the first one that breaks the chain.

    Each event must come at the next seq (a gap is a deleted row), link to the previous
    event's hash, and hash to what it stores (a mismatch is an edited row). The chain
    must then reach the head recorded by log_event(), or its newest events were deleted.
    """
    # The head is read before the events: events appended meanwhile only extend the
    # chain past it, while reading it afterwards could see a head the events don't reach.
    head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON_ID).first()

    expected_seq = 1
    prev_hash = GENESIS_HASH
    prev_id = 0
    checked = 0
    head_event_hash = None
    events = AuditEvent.objects.order_by("seq").iterator(chunk_size=CHUNK_SIZE)
    for event in events:
        problem = _link_problem(event, expected_seq, prev_hash, prev_id)
        if problem:
            return VerificationResult(
                ok=False, checked=checked, first_broken=event, problem=problem
            )
        checked += 1
        if head is not None and event.seq == head.seq:
            head_event_hash = event.hash
        expected_seq = event.seq + 1
        prev_hash = event.hash
        prev_id = event.id

    last_seq = expected_seq - 1
    if head is None:
        if checked:
            return VerificationResult(
                ok=False,
                checked=checked,
                problem=f"the chain head record is missing while the log holds {checked} events",
            )
    elif last_seq < head.seq:
        return VerificationResult(
            ok=False,
            checked=checked,
            problem=(
                f"the log ends at seq {last_seq} but reached seq {head.seq}: "
                f"the newest {head.seq - last_seq} event(s) were deleted"
            ),
        )
    elif head.seq and head_event_hash != head.hash:
        return VerificationResult(
            ok=False,
            checked=checked,
            problem=f"seq {head.seq} does not have the hash recorded in the chain head",
        )
    return VerificationResult(ok=True, checked=checked, head_hash=prev_hash)


def _link_problem(event: AuditEvent, expected_seq: int, prev_hash: str, prev_id: int) -> str:
    if event.seq != expected_seq:
        missing = (
            f"seq {expected_seq}"
            if event.seq == expected_seq + 1
            else f"seq {expected_seq} to {event.seq - 1}"
        )
        return f"{missing} missing before it (deleted rows)"
    if event.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash (broken link)"
    if event.hash != event.compute_hash():
        return "stored hash does not match its contents (row edited)"
    if event.id <= prev_id:
        # Ids come from the insert under the chain lock, so they rise with seq.
        return f"id {event.id} is not after the previous event's id {prev_id} (reordered)"
    return ""
