"""Scheduling the reconcile that ends a grant at its expiry, expiries close together batched."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from grants.models import Grant
from grants.scheduling import schedule_reconcile

from .plan import EXPIRY_TOLERANCE


def schedule_expiries(model, pk: int, grants) -> None:
    """After the commit, ask for a reconcile at each expiry that falls before the sweep
    after next; later ones the sweep schedules when they come within reach. No long ETAs:
    brokers redeliver or drop them. Expiries close together share one message."""
    horizon = timezone.now() + timedelta(seconds=2 * settings.AIRLOCK_SWEEP_SECONDS)
    due = [g for g in grants if g.expires_at and g.expires_at <= horizon]
    for eta, together in expiry_batches(due):
        Grant.objects.filter(pk__in=[g.pk for g in together]).update(
            reconcile_scheduled_for=F("expires_at")
        )
        transaction.on_commit(lambda eta=eta: schedule_reconcile(model, pk, eta=eta))


def expiry_batches(grants) -> list[tuple[datetime, list[Grant]]]:
    """The grants of one target grouped by when a reconcile should run for them: a pass at
    eta ends every grant expiring up to EXPIRY_TOLERANCE later (plan.is_wanted), so one
    message serves a batch instead of one per grant (a mass expiry sends one per
    environment, not twenty)."""
    batches: list[tuple[datetime, list[Grant]]] = []
    for grant in sorted(grants, key=lambda g: (g.expires_at, g.pk)):
        if batches and grant.expires_at <= batches[-1][0] + EXPIRY_TOLERANCE:
            batches[-1][1].append(grant)
        else:
            batches.append((grant.expires_at, [grant]))
    return batches
