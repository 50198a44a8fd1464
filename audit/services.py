"""Writing to the audit log: log_event() appends one event to the keyed hash chain, and
unkeyed_events_seal() vouches for events chained before the chain had a key."""

import hmac
import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.keys import AuditKey, UnknownAuditKeyError, audit_keyring
from audit.models import (
    GENESIS_HASH,
    AuditChainHead,
    AuditEvent,
    AuditPendingEvent,
    chain_hash,
    pending_mac,
)
from core import metrics

logger = logging.getLogger(__name__)

SYSTEM_ACTOR_LABEL = "system"
ANONYMOUS_ACTOR_LABEL = "anonymous"

_ACTION_MAX = AuditEvent._meta.get_field("action").max_length
_TARGET_REPR_MAX = AuditEvent._meta.get_field("target_repr").max_length
_ACTOR_LABEL_MAX = AuditEvent._meta.get_field("actor_label").max_length
_PENDING_CONTENT = AuditPendingEvent.CONTENT_FIELDS
# Pending events sealed per statement (and per transaction of audit_pending_seal).
SEAL_BATCH = 500
# Dead rows (waiting events written, moves of the head) a process leaves in the seal's two
# tables before it vacuums them, after a commit (audit_tables_vacuum).
VACUUM_AFTER = 2000
_dead_rows_left = 0  # this process's, since its last vacuum


def log_event(
    *,
    action: str,  # an audit.actions.AuditAction; the log itself takes any name
    actor=None,
    actor_label: str = "",
    target=None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    reason: str = "",
    detail: dict | None = None,
    sealed: bool = False,
) -> AuditEvent:
    """Append one event to the audit log and return it.

    Call it inside the transaction of the change it records, so both commit or neither
    does; outside any transaction it opens its own.

    The event is linked at once when this transaction can take the chain head: it then
    holds the head until it ends, and first seals any events waiting for it. When another
    transaction holds the head (PostgreSQL only), the event is written to
    AuditPendingEvent instead, without waiting, and sealed as soon as the head is free
    (docs/audit-log.md "Sealing"); the event returned then has no seq or hash yet.
    sealed=True waits for the head instead, for a caller that needs the event's place in
    the chain (an export stops just before its own record).

    actor is a User or None (the system). target is a saved model instance, or give
    target_type/target_id/target_repr yourself (those also override what target gives).
    detail is any JSON-serialisable dict; dates, decimals and UUIDs become strings.
    """
    if not action or len(action) > _ACTION_MAX:
        raise ValueError(f"action must be 1 to {_ACTION_MAX} characters, got {action!r}")

    actor_id = None
    if actor is not None and not actor.is_authenticated:
        actor_label = actor_label or ANONYMOUS_ACTOR_LABEL
    elif actor is not None:
        actor_id = actor.pk
        actor_label = actor_label or actor.get_username()
    actor_label = (actor_label or SYSTEM_ACTOR_LABEL)[:_ACTOR_LABEL_MAX]

    if target is not None:
        if target.pk is None:
            raise ValueError("the audit target must be saved first: it has no primary key")
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_repr = target_repr or str(target)

    event = AuditEvent(
        actor_id=actor_id,
        actor_label=actor_label,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_repr=_shorten(target_repr, _TARGET_REPR_MAX),
        reason=reason or "",
        detail=plain_json(detail or {}),
    )
    # Before the transaction: a key that is not configured right must fail the caller
    # cleanly (naming the variable), whether the event is sealed now or later.
    key = audit_keyring().signing
    using = router.db_for_write(AuditEvent)
    def _seal_after_commit():
        # Bounded: a request that commits into a long backlog seals a batch, not all of it
        # (beat's "airlock: audit seal" takes what is left).
        audit_pending_seal(using=using, limit=SEAL_BATCH)
        audit_tables_vacuum(using=using)

    # No savepoint: if the audit write fails, the change it records must not commit alone.
    with transaction.atomic(using=using, savepoint=False):
        head = _lock_chain_head(using, skip_locked=not sealed)
        if head is None:
            # Another transaction holds the head until it commits. Rather than queue behind
            # it, this event waits for its seal in AuditPendingEvent, committed with the
            # change it records; the next holder of the head links it. (Written by the
            # statement that found the head held, it cost a lone writer a tenth more CPU
            # and gained four writers nothing: benchmark 8's notes.)
            event.created_at = timezone.now()
            _pending_insert(event, key, using)
            _left_dead(1)  # by whoever seals it
            transaction.on_commit(_seal_after_commit, using=using, robust=True)
        else:
            if head.pending:
                _seal_pending_within(head, key, using)
            # Taken under the lock, so created_at follows seq (as far as the clock allows).
            event.created_at = timezone.now()
            _link([event], head, key)
            if _can_defer(using):
                _event_insert(event, using)
                # Events that went pending while this transaction held the head are sealed
                # once it lets go of it.
                transaction.on_commit(_seal_after_commit, using=using, robust=True)
            else:
                event.save(using=using, force_insert=True)
            _head_move(head, using)
        metrics.audit_event_written(action=action, using=using)
    return event


def audit_pending_seal(*, using: str | None = None, limit: int | None = None) -> int:
    """Seal the events waiting in AuditPendingEvent, unless another transaction holds the
    chain head (it seals them itself, or once it commits); return how many were sealed.

    Called after every commit that left or saw pending events, and by beat's "airlock:
    audit seal" for any a race left behind (one that committed just as the holder of the
    head last looked). limit bounds one call's work, in batches of SEAL_BATCH.
    """
    using = using or router.db_for_write(AuditEvent)
    if not _can_defer(using):
        return 0  # on SQLite nothing ever waits: every writer holds the head
    if not _seal_wanted(using):
        # The usual answer, in one read and without a transaction: nothing waits, or the
        # head's holder will seal it.
        return 0
    key = audit_keyring().signing
    sealed = 0
    # Until a pass finds nothing waiting: events committed while this call held the head
    # (their own call found it held) are sealed by the next pass, not left behind.
    while limit is None or sealed < limit:
        with transaction.atomic(using=using):
            # None: another transaction holds the head, and will seal what waits.
            _, head = _head_locked(using, skip_locked=True)
            if head is None or not head.pending:
                break
            batch = _seal_pending(head, key, using)
        if not batch:
            break
        sealed += batch
    return sealed


def audit_tables_vacuum(*, using: str | None = None, force: bool = False) -> bool:
    """VACUUM the seal's two tables on PostgreSQL, once this process has left VACUUM_AFTER
    dead rows in them since its last vacuum (or with force, as beat's "airlock: audit
    seal" does every sweep); True if it ran.

    Every waiting event is a row inserted and deleted, and every move of the head a new
    version of its one row, so both tables are nearly all dead rows between vacuums, and
    every audited write reads both: whether anything waits walks the pending table's dead
    rows, and the head's read its dead versions. Benchmark 8 found that, after 85,000
    events with autovacuum off, one "does anything wait?" took 1.4 ms, against 0.005 ms
    vacuumed, and every line ran slower than the one before. Autovacuum, when it is on,
    looks at a database once a minute, in which a busy portal leaves tens of thousands.
    SKIP_LOCKED: while a vacuum already runs, this one does not queue for the table.
    TRUNCATE false: VACUUM would otherwise try, for up to 5 seconds, to take the table's
    exclusive lock to cut empty pages off its end, and every audited transaction holds a
    lock on the pending table until it commits: the caller waited those 5 seconds, and
    writers queued behind it (migration 0008 sets the same for autovacuum). Never inside a
    transaction, where VACUUM cannot run.
    """
    global _dead_rows_left
    using = using or router.db_for_write(AuditEvent)
    connection = connections[using]
    # Not in a transaction: neither an atomic block nor autocommit turned off by hand.
    if not _can_defer(using) or connection.in_atomic_block or not connection.get_autocommit():
        return False
    if not force and _dead_rows_left < VACUUM_AFTER:
        return False
    _dead_rows_left = 0
    with connection.cursor() as cursor:
        cursor.execute(_VACUUM_SQL)
    return True


def _left_dead(rows: int) -> None:
    global _dead_rows_left
    _dead_rows_left += rows


def unkeyed_events_seal() -> AuditEvent | None:
    """Append one keyed event after events chained before the chain had a key, if the
    newest event is one of those; return it, or None when there is nothing to seal.

    Unkeyed links are plain sha256s that anyone can compute, so verification trusts them
    only as far as a keyed event follows: its keyed link covers their hashes. Until one
    does, a log rewritten by anyone would verify as well as the real one. Run after every
    migrate (audit/apps.py), so an upgraded log is sealed before it is next verified.
    """
    newest = AuditEvent.objects.order_by("-seq").first()
    if newest is None or newest.key_id:
        return None
    return log_event(
        action=AuditAction.AUDIT_UNKEYED_SEALED,
        reason="events chained before the audit log had a key are vouched for by this one",
        detail={"unkeyed_events": AuditEvent.objects.filter(key_id="").count()},
        sealed=True,
    )


def plain_json(value):
    """value as plain JSON data, exactly as it will read back from the database.

    DjangoJSONEncoder turns dates, decimals and UUIDs into strings. Whole floats become
    integers because PostgreSQL's jsonb reads 1e+20 back as 100000000000000000000: JSON
    has one kind of number, so the hash must not depend on how one was spelled.
    """
    text = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)
    return json.loads(text, parse_float=_float_or_whole)


def _float_or_whole(text: str):
    number = float(text)
    return int(number) if number.is_integer() else number


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(events: list[AuditEvent], head: AuditChainHead, key: AuditKey) -> None:
    """Chain events after head, in list order, and move head (in memory) to the last."""
    for event in events:
        event.seq = head.seq + 1
        event.prev_hash = head.hash
        event.key_id = key.id
        event.hash = chain_hash(event.chained_fields(), key)
        head.seq, head.hash = event.seq, event.hash


def _seal_pending(
    head: AuditChainHead, key: AuditKey, using: str, *, head_row: bool = True
) -> int:
    """With head locked, move up to SEAL_BATCH pending events into the chain, oldest first, and
    advance head past them; with head_row, its row too, in the same statement (a caller
    that writes the head itself afterwards passes False). Returns how many moved.

    Only the holder of the head seals, and it deletes what it sealed in the same
    transaction, so no pending event is sealed twice; one committed after this read waits
    for the next holder.
    """
    # Only on PostgreSQL: nothing waits anywhere else. Written out, like the statements
    # below, and the move itself is one statement: delete from the pending table, insert
    # into the chain.
    with connections[using].cursor() as cursor:
        cursor.execute(_PENDING_OLDEST_SQL, [SEAL_BATCH])
        rows = cursor.fetchall()
        if not rows:
            return 0
        events = [_pending_event(row) for row in rows]
        _link(events, head, key)
        values = []
        for event in events:
            values += [
                json.dumps(event.detail) if name == "detail" else getattr(event, name)
                for name in _EVENT_COLUMNS
            ]
        # One INSERT, in seq order: ids still rise with seq (verification checks it).
        moved = [head.seq, head.hash, AuditChainHead.SINGLETON_ID] if head_row else []
        cursor.execute(
            (_SEAL_MOVE_SQL if head_row else _SEAL_SQL).format(
                rows=", ".join([_EVENT_ROW] * len(events))
            ),
            [[row[0] for row in rows], *moved, *values],
        )
    if head_row:
        _left_dead(1)  # the head's old version (the deleted rows were counted when written)
    return len(events)


def _pending_event(row) -> AuditEvent:
    """The event a pending row holds, once its MAC shows log_event() wrote it; otherwise
    an audit.pending_refused event in its place, so that nothing anyone put in the table
    is ever signed into the chain, and the attempt is on the record."""
    pending_id, *content = row[: 1 + len(_PENDING_CONTENT)]
    key_id, mac = row[1 + len(_PENDING_CONTENT) :]
    fields = dict(zip(_PENDING_CONTENT, content, strict=True))
    problem = ""
    try:
        if isinstance(fields["detail"], str):
            fields["detail"] = json.loads(fields["detail"])
        event = AuditEvent(**fields)
        expected = pending_mac(event, audit_keyring().get(key_id))
        if not hmac.compare_digest(expected, mac or ""):
            problem = "its MAC does not match its content: log_event() did not write it so"
    except UnknownAuditKeyError:
        problem = f"its MAC is under audit key {key_id!r}, which AIRLOCK_AUDIT_KEYS does not hold"
    except (TypeError, ValueError) as exc:
        problem = f"it cannot be read ({type(exc).__name__})"
    if not problem:
        return event
    logger.error("Audit seal: pending event %s refused: %s", pending_id, problem)
    return AuditEvent(
        created_at=timezone.now(),
        actor_label=SYSTEM_ACTOR_LABEL,
        action=AuditAction.AUDIT_PENDING_REFUSED,
        target_type=AuditPendingEvent._meta.label_lower,
        target_id=str(pending_id),
        target_repr=f"pending event {pending_id}",
        reason=f"not sealed into the chain: {problem}",
        detail=plain_json(
            {
                "claimed": {
                    name: str(fields.get(name, ""))[:200]
                    for name in ("created_at", "actor_label", "action", "target_type",
                                 "target_id")
                }
            }
        ),
    )


def _seal_pending_within(head: AuditChainHead, key: AuditKey, using: str) -> None:
    """Seal what waits inside the caller's transaction, in a savepoint: should it fail, the
    caller's own change and event still commit, and the events stay waiting. The head's
    row is left to the caller, which writes it once, after its own event."""
    seq, hash_ = head.seq, head.hash
    try:
        with transaction.atomic(using=using):
            _seal_pending(head, key, using, head_row=False)
    except DatabaseError:
        logger.exception("Audit seal: waiting events could not be sealed; they keep waiting")
        head.seq, head.hash = seq, hash_


def _can_defer(using: str) -> bool:
    # Only where a writer can pass over a locked head (PostgreSQL). On SQLite every
    # transaction begins IMMEDIATE, so a writer holds the head as soon as it writes at all.
    return connections[using].features.has_select_for_update_skip_locked


def _lock_chain_head(using: str, *, skip_locked: bool = False) -> AuditChainHead | None:
    """Lock the chain head row until this transaction ends, creating it on the first
    append; .pending tells whether events wait for their seal.

    On PostgreSQL the row lock makes every other transaction that wants the head wait
    here until this one ends, or with skip_locked pass it by: None then means another
    transaction holds it. On SQLite select_for_update() does nothing, but Airlock opens
    every transaction with BEGIN IMMEDIATE, which already lets only one writer in at a
    time, so there the head is always this transaction's and nothing is ever pending.
    """
    defer = _can_defer(using)
    present, head = _head_locked(using, skip_locked=skip_locked) if defer else (False, None)
    if head is None and present and skip_locked:
        return None  # another transaction holds it
    heads = AuditChainHead.objects.using(using).select_for_update()
    if head is None and not defer:
        head = heads.filter(pk=AuditChainHead.SINGLETON_ID).first()
    if head is None:
        # First event ever, or the tables were emptied (test flush). Start from whatever
        # the log holds. ignore_conflicts: a concurrent first appender may insert the row
        # too; this insert then waits for it and does nothing, and the locking read below
        # (which waits, whatever skip_locked says) sees its row.
        newest = AuditEvent.objects.using(using).order_by("-seq").first()
        AuditChainHead.objects.using(using).bulk_create(
            [
                AuditChainHead(
                    pk=AuditChainHead.SINGLETON_ID,
                    seq=newest.seq if newest else 0,
                    hash=newest.hash if newest else GENESIS_HASH,
                )
            ],
            ignore_conflicts=True,
        )
        head = heads.get(pk=AuditChainHead.SINGLETON_ID)
        head.pending = defer and _pending_any(using)
    elif not defer:
        head.pending = False
    return head


# The statements of the path every audited transaction takes on PostgreSQL, written out once:
# the ORM's own compilation of them cost more than the round trips (benchmark 8).
_HEAD = AuditChainHead._meta.db_table
_PENDING = AuditPendingEvent._meta.db_table
# One statement: whether the head exists, the head itself if this transaction could lock it,
# and whether events wait for their seal. The lock is taken in the WITH part, so an absent
# head (first event) and one another transaction holds tell apart without a second read.
_HEAD_LOCK_SQL = (
    f"WITH locked AS (SELECT seq, hash FROM {_HEAD} WHERE id = %s FOR UPDATE{{skip}}) "
    f"SELECT EXISTS (SELECT 1 FROM {_HEAD} WHERE id = %s), locked.seq, locked.hash, "
    f"EXISTS (SELECT 1 FROM {_PENDING}) FROM (SELECT 1) AS one LEFT JOIN locked ON true"
)
_HEAD_LOCK_WAIT_SQL = _HEAD_LOCK_SQL.format(skip="")
_HEAD_LOCK_SKIP_SQL = _HEAD_LOCK_SQL.format(skip=" SKIP LOCKED")
# Outside a transaction: is the head free with events waiting? (The lock ends with the
# statement: it only tells whether a sealing transaction would find work.)
# The pending table is asked first (CASE decides the order): when nothing waits, the head
# is not even tried, so the probe locks nothing and needs no transaction id.
_SEAL_WANTED_SQL = (
    f"WITH locked AS (SELECT 1 FROM {_HEAD} WHERE id = %s FOR UPDATE SKIP LOCKED) "
    f"SELECT CASE WHEN EXISTS (SELECT 1 FROM {_PENDING}) "
    "THEN EXISTS (SELECT 1 FROM locked) ELSE false END"
)
_PENDING_ANY_SQL = f"SELECT EXISTS (SELECT 1 FROM {_PENDING})"
_VACUUM_SQL = f"VACUUM (SKIP_LOCKED, TRUNCATE false) {_PENDING}, {_HEAD}"
_PENDING_INSERT_SQL = (
    f"INSERT INTO {_PENDING} ({', '.join(_PENDING_CONTENT)}, key_id, mac) VALUES "
    f"({', '.join('%s::jsonb' if name == 'detail' else '%s' for name in _PENDING_CONTENT)}, "
    "%s, %s)"
)


def _head_locked(using: str, *, skip_locked: bool) -> tuple[bool, AuditChainHead | None]:
    """PostgreSQL: whether the head exists, and the head, locked, with .pending; None when
    absent or (with skip_locked) held by another transaction."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            _HEAD_LOCK_SKIP_SQL if skip_locked else _HEAD_LOCK_WAIT_SQL,
            [AuditChainHead.SINGLETON_ID, AuditChainHead.SINGLETON_ID],
        )
        present, seq, hash_, pending = cursor.fetchone()
    if seq is None:
        return present, None
    head = AuditChainHead(id=AuditChainHead.SINGLETON_ID, seq=seq, hash=hash_)
    head.pending = pending
    return present, head


def _seal_wanted(using: str) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute(_SEAL_WANTED_SQL, [AuditChainHead.SINGLETON_ID])
        return cursor.fetchone()[0]


def _pending_any(using: str) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute(_PENDING_ANY_SQL)
        return cursor.fetchone()[0]


_EVENT_COLUMNS = ("seq", *_PENDING_CONTENT, "prev_hash", "key_id", "hash")
_EVENT_ROW = f"({', '.join('%s::jsonb' if name == 'detail' else '%s' for name in _EVENT_COLUMNS)})"
_EVENT_INSERT_SQL = (
    f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(_EVENT_COLUMNS)}) VALUES "
    f"{_EVENT_ROW} RETURNING id"
)
_HEAD_MOVE_SQL = f"UPDATE {_HEAD} SET seq = %s, hash = %s WHERE id = %s"
_PENDING_OLDEST_SQL = (
    f"SELECT id, {', '.join(_PENDING_CONTENT)}, key_id, mac FROM {_PENDING} "
    "ORDER BY id LIMIT %s"
)
_SEAL_SQL = (
    f"WITH sealed AS (DELETE FROM {_PENDING} WHERE id = ANY(%s)) "
    f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(_EVENT_COLUMNS)}) VALUES {{rows}}"
)
# The same, moving the head in the same statement.
_SEAL_MOVE_SQL = (
    f"WITH sealed AS (DELETE FROM {_PENDING} WHERE id = ANY(%s)), "
    f"moved AS ({_HEAD_MOVE_SQL}) "
    f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(_EVENT_COLUMNS)}) VALUES {{rows}}"
)


def _event_insert(event: AuditEvent, using: str) -> None:
    """PostgreSQL: event.save(force_insert=True), written out (see above)."""
    values = [
        json.dumps(event.detail) if name == "detail" else getattr(event, name)
        for name in _EVENT_COLUMNS
    ]
    with connections[using].cursor() as cursor:
        cursor.execute(_EVENT_INSERT_SQL, values)
        event.id = cursor.fetchone()[0]
    event._state.adding = False
    event._state.db = using


def _head_move(head: AuditChainHead, using: str) -> None:
    """Write head (moved in memory by _link) back to its row. The seal's statement moves it
    with the same UPDATE (_SEAL_MOVE_SQL)."""
    with connections[using].cursor() as cursor:
        cursor.execute(_HEAD_MOVE_SQL, [head.seq, head.hash, AuditChainHead.SINGLETON_ID])
    _left_dead(1)


def _pending_insert(event: AuditEvent, key: AuditKey, using: str) -> None:
    values = [
        json.dumps(event.detail) if name == "detail" else getattr(event, name)  # plain JSON
        for name in _PENDING_CONTENT
    ]
    with connections[using].cursor() as cursor:
        cursor.execute(_PENDING_INSERT_SQL, [*values, key.id, pending_mac(event, key)])
