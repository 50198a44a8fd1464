"""A sink's delivery lease: one deliverer per sink at a time across workers, taken by
compare-and-set so no transaction or row lock is held during the network call."""

import os
import socket
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from audit.models import AuditSink

# A lease outlives any one batch: three sink timeouts, and never under a minute.
_MIN_LEASE_SECONDS = 60


def lease_owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def in_seconds(seconds: float):
    """A time `seconds` from now on the database's clock: workers whose clocks disagree
    must still agree on whether a lease ran out or a backoff is over."""
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


class SinkLease:
    """acquire() takes the lease when it is free or ran out and no backoff is pending;
    renew() before each batch; release() at the end. Every write of the holder is
    filtered on lease_owner, so a holder whose lease was taken over writes nothing."""

    def __init__(self, pk: int):
        self.pk = pk
        self.owner = lease_owner_name()

    @staticmethod
    def seconds() -> float:
        return max(_MIN_LEASE_SECONDS, 3 * settings.AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS)

    def acquire(self) -> bool:
        taken = (
            AuditSink.objects.filter(pk=self.pk)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=Now()))
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=Now()))
            .update(lease_owner=self.owner, leased_until=in_seconds(self.seconds()))
        )
        return taken == 1

    def held(self):
        """The sink's row, as a queryset, while this lease holds it."""
        return AuditSink.objects.filter(pk=self.pk, lease_owner=self.owner)

    def renew(self) -> bool:
        return self.held().update(leased_until=in_seconds(self.seconds())) == 1

    def release(self) -> None:
        self.held().update(lease_owner="", leased_until=None)
