"""Checking the audit log's keyed hash chain from the first event to the head, and
against a head kept outside the database."""

from dataclasses import dataclass

from audit.export import KeptHead
from audit.keys import AuditKeyring, UnknownAuditKeyError, audit_keyring
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, AuditPendingEvent

# Rows fetched per round trip; memory use stays flat however long the log is.
CHUNK_SIZE = 2000
HASH_PREFIX_LENGTH = 12

BROKEN, REWOUND, REWRITTEN = "broken", "rewound", "rewritten"


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    checked: int
    # The first event whose link is wrong (None when the log is intact, or when what is
    # wrong is not one event's link: events after the last one present are gone, say).
    first_broken: AuditEvent | None = None
    problem: str = ""
    # BROKEN: the chain itself. REWOUND or REWRITTEN: a sound chain that no longer holds
    # the kept head.
    failure: str = ""
    # The newest event's hash when the chain is intact.
    head_hash: str = ""
    # Events chained before the chain had a key: seq 1 to this one.
    unkeyed: int = 0
    # Events committed but not sealed into the chain yet (audit.services), when the walk
    # ended: the chain does not vouch for them until they are.
    pending: int = 0


def verify_chain(*, kept_head: KeptHead | None = None) -> VerificationResult:
    """Walk the events in seq order and report the first one that breaks the chain.

    Each event must come at the next seq (a gap is a deleted row), link to the previous
    event's hash, and hash to what it stores under the key it names (a mismatch is an
    edited or forged row). Unkeyed events, from before the chain had a key, may only come
    first, and only a keyed event after them vouches for them. The chain must then reach
    the head recorded by log_event(), or its newest events were deleted; and it must
    still hold kept_head, when one is given, or it was rewound or rewritten since.
    """
    keyring = audit_keyring()
    # The head is read before the events: events appended meanwhile only extend the
    # chain past it, while reading it afterwards could see a head the events don't reach.
    head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON_ID).first()

    expected_seq = 1
    prev_hash = GENESIS_HASH
    prev_id = 0
    checked = unkeyed = 0
    head_event_hash = kept_event_hash = None
    events = AuditEvent.objects.order_by("seq").iterator(chunk_size=CHUNK_SIZE)
    for event in events:
        keyed = checked > unkeyed  # unkeyed events may only come first
        problem = _link_problem(event, expected_seq, prev_hash, prev_id, keyring, keyed)
        if problem:
            return VerificationResult(
                ok=False, checked=checked, first_broken=event, problem=problem, failure=BROKEN
            )
        checked += 1
        unkeyed += not event.key_id
        if head is not None and event.seq == head.seq:
            head_event_hash = event.hash
        if kept_head is not None and event.seq == kept_head.seq:
            kept_event_hash = event.hash
        expected_seq = event.seq + 1
        prev_hash = event.hash
        prev_id = event.id

    last_seq = expected_seq - 1
    problem = failure = ""
    if head is None:
        if checked:
            problem = f"the chain head record is missing while the log holds {checked} events"
    elif last_seq < head.seq:
        problem = (
            f"the log ends at seq {last_seq} but reached seq {head.seq}: "
            f"the newest {head.seq - last_seq} event(s) were deleted"
        )
    elif head.seq and head_event_hash != head.hash:
        problem = f"seq {head.seq} does not have the hash recorded in the chain head"
    if problem:
        failure = BROKEN
    elif unkeyed and unkeyed == checked:
        failure = BROKEN
        problem = (
            f"no keyed event follows the unkeyed {seq_span(1, unkeyed)} to vouch for it: "
            "written without the key"
        )
    elif kept_head is not None and last_seq < kept_head.seq:
        failure = REWOUND
        problem = (
            f"it ends at seq {last_seq}, before the kept head at seq {kept_head.seq}: "
            "events were removed after that head was kept"
        )
    elif kept_head is not None and kept_event_hash != kept_head.hash:
        failure = REWRITTEN
        problem = (
            f"seq {kept_head.seq} has hash {kept_event_hash[:HASH_PREFIX_LENGTH]}, not the "
            f"kept head's {kept_head.hash[:HASH_PREFIX_LENGTH]}: "
            "the log was rewritten after that head was kept"
        )
    if failure:
        return VerificationResult(
            ok=False, checked=checked, problem=problem, failure=failure, unkeyed=unkeyed
        )
    return VerificationResult(
        ok=True,
        checked=checked,
        head_hash=prev_hash,
        unkeyed=unkeyed,
        pending=AuditPendingEvent.objects.count(),
    )


def _link_problem(
    event: AuditEvent,
    expected_seq: int,
    prev_hash: str,
    prev_id: int,
    keyring: AuditKeyring,
    keyed: bool,
) -> str:
    if event.seq != expected_seq:
        return f"{seq_span(expected_seq, event.seq - 1)} missing before it (deleted rows)"
    if event.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash (broken link)"
    if keyed and not event.key_id:
        # Once the chain is keyed it stays keyed: an unkeyed link here is anyone's.
        return "unkeyed hash after keyed events (written without the key)"
    try:
        expected_hash = event.compute_hash(keyring)
    except UnknownAuditKeyError:
        return (
            f"chained under audit key {event.key_id}, which AIRLOCK_AUDIT_KEYS does not "
            "hold (wrong or missing key)"
        )
    if event.hash != expected_hash:
        return "stored hash does not match its contents (row edited)"
    if event.id <= prev_id:
        # Ids come from the insert under the chain lock, so they rise with seq.
        return f"id {event.id} is not after the previous event's id {prev_id} (reordered)"
    return ""


def seq_span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first} to {last}"
