"""The audit log's tables: the events themselves, append-only and hash-chained, the
chain's head (docs/audit-log.md), and each forwarding sink's cursor (audit/forwarding.py)."""

import hashlib
import json
from datetime import UTC

from django.db import models

from audit.keys import AuditKey, AuditKeyring, audit_keyring

# The hash an event links to when it is the first one.
GENESIS_HASH = ""


class AppendOnlyError(Exception):
    """Raised on an attempt to change or remove an audit event through the ORM."""


def canonical_json(value) -> str:
    """The one byte-exact spelling of a JSON value that hashes are taken over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def chain_hash(fields: dict, key: AuditKey | None) -> str:
    """The link: HMAC-SHA256 under key of the canonical fields (which hold prev_hash).

    key None is the unkeyed link of events chained before the chain had a key: a plain
    sha256 that anyone can compute, trusted only as far as a keyed event follows it.
    """
    message = canonical_json(fields).encode("ascii")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return key.sign(message)


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit log is append-only: events cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit log is append-only: events cannot be deleted")


class AuditEvent(models.Model):
    """Who did what to which target, when and why. Created only by audit.log_event()."""

    id = models.BigAutoField(primary_key=True)
    # Position in the chain: 1, 2, 3... without gaps, so a deleted row shows as a gap.
    # Kept apart from id because the id is only known after the insert and PostgreSQL's
    # sequences skip numbers on rollback; seq is taken under the chain lock instead.
    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    created_at = models.DateTimeField(db_index=True, editable=False)
    # A plain number, not a foreign key: the row must outlive the user, and a foreign key's
    # on_delete would have to UPDATE or DELETE it. actor_label keeps the name as it was.
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True, editable=False)
    actor_label = models.CharField(max_length=150, editable=False)
    # No index of its own: audit_event_action_seq_idx (action, -seq) serves every lookup by
    # action, and each index on this table is one more write per event in the chain.
    action = models.CharField(max_length=100, editable=False)
    target_type = models.CharField(max_length=100, blank=True, editable=False)
    target_id = models.CharField(max_length=255, blank=True, editable=False)
    target_repr = models.CharField(max_length=255, blank=True, editable=False)
    reason = models.TextField(blank=True, editable=False)
    detail = models.JSONField(default=dict, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    # The id of the key the hash is keyed with (audit/keys.py); empty for events chained
    # before the chain had a key. Not itself hashed: a wrong id only fails verification.
    key_id = models.CharField(max_length=16, blank=True, default="", editable=False)
    hash = models.CharField(max_length=64, editable=False)  # unique: audit_event_hash_unique

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [
            # "Everything that happened to this request/grant" (admin search, target pages).
            models.Index(fields=["target_type", "target_id"], name="audit_event_target_idx"),
            # The admin's audit list filtered by action or target type, newest first: read down
            # the index instead of sorting every match (grant.checked alone is most rows).
            models.Index(fields=["action", "-seq"], name="audit_event_action_seq_idx"),
            models.Index(fields=["target_type", "-seq"], name="audit_event_type_seq_idx"),
        ]
        constraints = [
            # verify_chain() reads seq 1, 2, 3...; log_event() starts at 1.
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_event_seq_from_1"),
            # A constraint rather than unique=True, which on PostgreSQL also builds a
            # pattern-matching (LIKE) index that nothing asks of a hash.
            models.UniqueConstraint(fields=["hash"], name="audit_event_hash_unique"),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action} {self.target_repr}".rstrip()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit log is append-only: events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit log is append-only: events cannot be deleted")

    def chained_fields(self) -> dict:
        """What the hash covers: everything but the database id, the key id and the hash.

        Every value is plain JSON and reads back from the database exactly as written, so a
        reloaded row hashes the same: created_at is spelled in UTC to the microsecond (what
        both SQLite and PostgreSQL keep), and detail was made plain JSON by log_event().
        """
        return {
            "seq": self.seq,
            "created_at": self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_repr": self.target_repr,
            "reason": self.reason,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self, keyring: AuditKeyring | None = None) -> str:
        """The hash this event must have, under the key its key_id names.

        Raises UnknownAuditKeyError when none of the configured keys has that id.
        """
        key = (keyring or audit_keyring()).get(self.key_id) if self.key_id else None
        return chain_hash(self.chained_fields(), key)


class AuditChainHead(models.Model):
    """The newest event's seq and hash, in a single row.

    Whoever appends to the chain holds this row (SELECT ... FOR UPDATE) until its
    transaction ends, so the chain never forks; a writer that finds it held leaves its
    event in AuditPendingEvent instead of queueing (audit.services). It also remembers how
    far the chain reached, so deleting the newest events cannot pass as a shorter, intact
    chain.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True, default=GENESIS_HASH)

    class Meta:
        constraints = [
            # log_event() and verify_chain() read "the" head: there is exactly one row.
            models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton"),
        ]

    def __str__(self):
        return f"audit chain head at seq {self.seq}"


class AuditPendingEvent(models.Model):
    """An event committed while another transaction held the chain head, waiting for its
    seal: the next holder of the head moves it into AuditEvent, linked, in id order, and
    deletes it here in the same transaction (audit.services.audit_pending_seal).

    Only PostgreSQL writers ever wait here; on SQLite every writer holds the head anyway.
    The fields are AuditEvent's content, as log_event() made them; created_at is when the
    event happened, not when it was sealed.
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(editable=False)
    actor_id = models.BigIntegerField(null=True, blank=True, editable=False)
    actor_label = models.CharField(max_length=150, editable=False)
    action = models.CharField(max_length=100, editable=False)
    target_type = models.CharField(max_length=100, blank=True, editable=False)
    target_id = models.CharField(max_length=255, blank=True, editable=False)
    target_repr = models.CharField(max_length=255, blank=True, editable=False)
    reason = models.TextField(blank=True, editable=False)
    detail = models.JSONField(default=dict, blank=True, editable=False)
    # log_event()'s HMAC over the content, under the key key_id names: the sealer signs
    # into the chain only what the holder of the key wrote, never a row someone put here.
    key_id = models.CharField(max_length=16, editable=False)
    mac = models.CharField(max_length=64, editable=False)

    CONTENT_FIELDS = (
        "created_at",
        "actor_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "reason",
        "detail",
    )

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"pending {self.action} {self.target_repr}".rstrip()


def pending_mac(event: "AuditEvent", key: AuditKey) -> str:
    """The MAC a waiting event carries: over what the chain's hash will cover but its place
    (seq, prev_hash), with its own label so that it can never pass for a chain link."""
    fields = event.chained_fields()
    del fields["seq"], fields["prev_hash"]
    return chain_hash({"pending": fields}, key)


class AuditSink(models.Model):
    """One place the audit log is forwarded to ("http", "syslog"), and how far it got.

    cursor is the highest seq the sink accepted: audit.forwarding sends seq > cursor, in
    order, and advances it only after the sink accepted the batch (at least once, never
    skipping). The lease is taken by compare-and-set so two workers never deliver to the
    same sink at once, and no transaction is held open across the network call.
    """

    name = models.CharField(max_length=20, editable=False)
    # Where it sends to, safe to show (integrations.siem.Sink.target: no token).
    target = models.CharField(max_length=500, blank=True, editable=False)
    # 0: nothing accepted yet, so a new sink starts from the first event.
    cursor = models.PositiveBigIntegerField(default=0, editable=False)
    lease_owner = models.CharField(max_length=200, blank=True, editable=False)
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Consecutive failed batches; the next try waits until next_attempt_at (backoff).
    failures = models.PositiveIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_delivered_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When platform admins were told the backlog got old; cleared once it caught up.
    alerted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # audit.forwarding sends one sink's batches in order under one name: a second
            # row for the same name would deliver the log twice with separate cursors.
            models.UniqueConstraint(fields=["name"], name="audit_sink_unique_name"),
            # The lease is held or free as a whole: audit.forwarding's compare-and-set takes
            # a lease when leased_until is empty or past, and checks lease_owner to keep it.
            models.CheckConstraint(
                condition=(
                    models.Q(lease_owner="", leased_until__isnull=True)
                    | (~models.Q(lease_owner="") & models.Q(leased_until__isnull=False))
                ),
                name="audit_sink_lease_whole",
            ),
        ]

    def __str__(self):
        return f"{self.name} sink at seq {self.cursor}"
