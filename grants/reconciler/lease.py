"""A target's lease: one reconcile per target at a time, across workers, no held transaction."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now

from integrations.github import LeaseLost


def _lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """Holds a target's lease: acquire() by compare-and-set, renew() before each GitHub call
    (throttled), release() only when no reconcile was requested meanwhile."""

    def __init__(self, model, pk: int):
        self.model = model
        self.pk = pk
        self.owner = _lease_owner()
        self.generation: int | None = None
        self._renewed = 0.0

    def _until(self):
        # The database's clock, not the worker's: two workers whose clocks disagree must
        # still agree on whether a lease has run out. At least three request timeouts, so a
        # lease cannot lapse while one GitHub call is in flight.
        seconds = max(settings.AIRLOCK_LEASE_SECONDS, 3 * settings.AIRLOCK_GITHUB_TIMEOUT_SECONDS)
        return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())

    def acquire(self) -> bool:
        taken = (
            self.model.objects.filter(pk=self.pk)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=Now()))
            .update(lease_owner=self.owner, lease_until=self._until())
        )
        if taken != 1:
            return False
        self._renewed = time.monotonic()
        self.generation = self._current_generation()
        return True

    def _current_generation(self) -> int:
        return self.model.objects.filter(pk=self.pk).values_list("generation", flat=True).get()

    def renew(self) -> None:
        if time.monotonic() - self._renewed < settings.AIRLOCK_LEASE_SECONDS / 3:
            return
        kept = self.model.objects.filter(pk=self.pk, lease_owner=self.owner).update(
            lease_until=self._until()
        )
        if kept != 1:
            raise LeaseLost(f"lost the lease on {self.model.__name__} {self.pk}")
        self._renewed = time.monotonic()

    def release_if_unchanged(self) -> bool:
        """Let go unless someone asked for a reconcile since we started; then take the new
        generation and return False so the caller makes another pass."""
        released = self.model.objects.filter(
            pk=self.pk, lease_owner=self.owner, generation=self.generation
        ).update(lease_owner="", lease_until=None)
        if released == 1:
            self.generation = None
            return True
        self.generation = self._current_generation()
        return False

    def release(self) -> None:
        self.model.objects.filter(pk=self.pk, lease_owner=self.owner).update(
            lease_owner="", lease_until=None
        )


def request_reconcile(model, pk: int) -> None:
    """Mark a target as needing a reconcile: a lease holder sees this and passes again."""
    model.objects.filter(pk=pk).update(generation=F("generation") + 1)
