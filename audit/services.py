"""Writing to the audit log: log_event() appends one event to the keyed hash chain, and
unkeyed_events_seal() vouches for events chained before the chain had a key."""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router, transaction
from django.db.models import Exists
from django.utils import timezone

from audit.actions import AuditAction
from audit.keys import AuditKey, audit_keyring
from audit.models import (
    GENESIS_HASH,
    AuditChainHead,
    AuditEvent,
    AuditPendingEvent,
    chain_hash,
)
from core import metrics

SYSTEM_ACTOR_LABEL = "system"
ANONYMOUS_ACTOR_LABEL = "anonymous"

_ACTION_MAX = AuditEvent._meta.get_field("action").max_length
_TARGET_REPR_MAX = AuditEvent._meta.get_field("target_repr").max_length
_ACTOR_LABEL_MAX = AuditEvent._meta.get_field("actor_label").max_length
_PENDING_CONTENT = AuditPendingEvent.CONTENT_FIELDS
# Pending events sealed per statement (and per transaction of audit_pending_seal).
SEAL_BATCH = 500


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
    # No savepoint: if the audit write fails, the change it records must not commit alone.
    with transaction.atomic(using=using, savepoint=False):
        if sealed:
            head = _lock_chain_head(using)
            head.pending = _can_defer(using) and AuditPendingEvent.objects.using(using).exists()
        else:
            head = _try_lock_chain_head(using)
        if head is None:
            # Another transaction holds the head until it commits. Rather than queue behind
            # it, this event waits for its seal in AuditPendingEvent, committed with the
            # change it records; the next holder of the head links it.
            event.created_at = timezone.now()
            AuditPendingEvent.objects.using(using).create(**_content(event))
            transaction.on_commit(lambda: audit_pending_seal(using=using), using=using,
                                  robust=True)
        else:
            _seal_pending(head, key, using)
            # Taken under the lock, so created_at follows seq (as far as the clock allows).
            event.created_at = timezone.now()
            _link([event], head, key)
            event.save(using=using, force_insert=True)
            _move_head(head, event, using)
            if _can_defer(using):
                # Events that went pending while this transaction held the head are sealed
                # once it lets go of it.
                transaction.on_commit(lambda: audit_pending_seal(using=using), using=using,
                                      robust=True)
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
    if not AuditPendingEvent.objects.using(using).exists():
        return 0  # the usual answer, in one read and without taking the head
    key = audit_keyring().signing
    sealed = 0
    # Until a pass finds nothing waiting: events committed while this call held the head
    # (their own call found it held) are sealed by the next pass, not left behind.
    while limit is None or sealed < limit:
        with transaction.atomic(using=using):
            head = _try_lock_chain_head(using)
            if head is None or not head.pending:
                break
            batch = _seal_pending(head, key, using)
            if batch:
                AuditChainHead.objects.using(using).filter(pk=head.pk).update(
                    seq=head.seq, hash=head.hash
                )
        if not batch:
            break
        sealed += batch
    return sealed


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


def _content(event: AuditEvent) -> dict:
    return {name: getattr(event, name) for name in AuditPendingEvent.CONTENT_FIELDS}


def _link(events: list[AuditEvent], head: AuditChainHead, key: AuditKey) -> None:
    """Chain events after head, in list order, and move head (in memory) to the last."""
    for event in events:
        event.seq = head.seq + 1
        event.prev_hash = head.hash
        event.key_id = key.id
        event.hash = chain_hash(event.chained_fields(), key)
        head.seq, head.hash = event.seq, event.hash


def _move_head(head: AuditChainHead, event: AuditEvent, using: str) -> None:
    AuditChainHead.objects.using(using).filter(pk=head.pk).update(seq=event.seq, hash=event.hash)


def _seal_pending(head: AuditChainHead, key: AuditKey, using: str) -> int:
    """With head locked, move up to SEAL_BATCH pending events into the chain, oldest first, and
    advance head past them in memory (the caller writes it). Returns how many moved.

    Only the holder of the head seals, and it deletes what it sealed in the same
    transaction, so no pending event is sealed twice; one committed after this read waits
    for the next holder.
    """
    if not getattr(head, "pending", False):
        return 0
    pending = list(
        AuditPendingEvent.objects.using(using).order_by("id").values("id", *_PENDING_CONTENT)[
            :SEAL_BATCH
        ]
    )
    if not pending:
        return 0
    events = [AuditEvent(**{name: row[name] for name in _PENDING_CONTENT}) for row in pending]
    _link(events, head, key)
    # One INSERT, in seq order: ids still rise with seq (verification checks it).
    AuditEvent.objects.using(using).bulk_create(events)
    AuditPendingEvent.objects.using(using).filter(
        id__in=[row["id"] for row in pending]
    ).delete()
    return len(events)


def _can_defer(using: str) -> bool:
    # Only where a writer can pass over a locked head (PostgreSQL). On SQLite every
    # transaction begins IMMEDIATE, so a writer holds the head as soon as it writes at all.
    return connections[using].features.has_select_for_update_skip_locked


def _try_lock_chain_head(using: str) -> AuditChainHead | None:
    """The chain head, locked until this transaction ends, with .pending telling whether
    events wait for their seal; None when another transaction holds it.

    Creates the head on the first append, like _lock_chain_head.
    """
    if not _can_defer(using):
        head = _lock_chain_head(using)
        head.pending = False
        return head
    head = (
        AuditChainHead.objects.using(using)
        .select_for_update(skip_locked=True)
        .annotate(pending=Exists(AuditPendingEvent.objects.using(using)))
        .filter(pk=AuditChainHead.SINGLETON_ID)
        .first()
    )
    if head is not None:
        return head
    if AuditChainHead.objects.using(using).filter(pk=AuditChainHead.SINGLETON_ID).exists():
        return None  # held by another transaction
    head = _lock_chain_head(using)
    head.pending = AuditPendingEvent.objects.using(using).exists()
    return head


def _lock_chain_head(using: str) -> AuditChainHead:
    """Lock the chain head row, creating it on the first append.

    On PostgreSQL the row lock makes every other appender wait here until this transaction
    ends. On SQLite select_for_update() does nothing, but Airlock opens every transaction
    with BEGIN IMMEDIATE, which already lets only one writer in at a time.
    """
    heads = AuditChainHead.objects.using(using).select_for_update()
    head = heads.filter(pk=AuditChainHead.SINGLETON_ID).first()
    if head is not None:
        return head
    # First event ever, or the tables were emptied (test flush). Start from whatever the
    # log holds. ignore_conflicts: a concurrent first appender may insert the row too; this
    # insert then waits for it and does nothing, and the locking read below sees its row.
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
    return heads.get(pk=AuditChainHead.SINGLETON_ID)
