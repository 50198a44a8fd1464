"""Test data for the audit app. Events are made through log_event(), the only way in;
unkeyed_events() writes them as the code before the keyed chain did."""

import hashlib

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, canonical_json
from audit.services import log_event


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"auditee{n}")


class AuditEventFactory(factory.Factory):
    """AuditEventFactory(action=..., actor=..., ...) appends a real, chained event."""

    class Meta:
        model = dict  # only the keyword arguments; _create hands them to log_event()

    action = "request.created"
    target_type = "requests_app.accessrequest"
    target_id = factory.Sequence(str)
    target_repr = factory.LazyAttribute(lambda event: f"request #{event.target_id}")
    reason = "ship the hotfix"
    detail = factory.LazyAttribute(lambda event: {"environment": "production"})

    @classmethod
    def _create(cls, model_class, **kwargs):
        return log_event(**kwargs)


def unkeyed_events(count: int, action: str = "request.created") -> list[AuditEvent]:
    """Events as Airlock chained them before the chain had a key: no key id, and the
    link a plain sha256 of the canonical fields. Appended after whatever the log holds."""
    events = []
    for _ in range(count):
        head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON_ID).first()
        event = AuditEvent(
            seq=(head.seq if head else 0) + 1,
            prev_hash=head.hash if head else GENESIS_HASH,
            created_at=timezone.now(),
            actor_label="system",
            action=action,
            reason="before the chain was keyed",
        )
        event.hash = sha256_link(event.chained_fields())
        event.save(force_insert=True)
        AuditChainHead.objects.update_or_create(
            pk=AuditChainHead.SINGLETON_ID, defaults={"seq": event.seq, "hash": event.hash}
        )
        events.append(event)
    return events


def sha256_link(fields: dict) -> str:
    """The unkeyed link: what anyone can compute, with no key."""
    return hashlib.sha256(canonical_json(fields).encode("ascii")).hexdigest()
