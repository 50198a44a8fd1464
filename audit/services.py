"""Writing to the audit log: log_event() appends one event to the keyed hash chain, and
unkeyed_events_seal() vouches for events chained before the chain had a key."""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router, transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.keys import audit_keyring
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, chain_hash
from core import metrics

SYSTEM_ACTOR_LABEL = "system"
ANONYMOUS_ACTOR_LABEL = "anonymous"

_ACTION_MAX = AuditEvent._meta.get_field("action").max_length
_TARGET_REPR_MAX = AuditEvent._meta.get_field("target_repr").max_length
_ACTOR_LABEL_MAX = AuditEvent._meta.get_field("actor_label").max_length


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
) -> AuditEvent:
    """Append one event to the audit log and return it.

    Call it inside the transaction of the change it records, so both commit or neither
    does; outside any transaction it opens its own. It holds the chain lock until that
    transaction ends, so call it once the change's own rows are locked and written.

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
    key = audit_keyring().signing
    using = router.db_for_write(AuditEvent)
    # No savepoint: if the audit write fails, the change it records must not commit alone.
    with transaction.atomic(using=using, savepoint=False):
        head = _lock_chain_head(using)
        event.seq = head.seq + 1
        event.prev_hash = head.hash
        # Taken under the lock, so created_at follows seq (as far as the clock allows).
        event.created_at = timezone.now()
        event.key_id = key.id
        event.hash = chain_hash(event.chained_fields(), key)
        event.save(using=using, force_insert=True)
        AuditChainHead.objects.using(using).filter(pk=head.pk).update(
            seq=event.seq, hash=event.hash
        )
        metrics.audit_event_written(action=action, using=using)
    return event


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
