"""Reads about grants, for the pages, the admin, the API and /metrics."""

from datetime import datetime

from django.db.models import Count, QuerySet
from django_celery_beat.models import PeriodicTask

from grants.models import Grant
from grants.schedule import beat_schedule
from requests_app.models import AccessRequest


def grants_visible_to(*, user) -> QuerySet[Grant]:
    """A user's own grants; platform admins see all of them."""
    grants = Grant.objects.select_related(
        "access_request", "target", "org_secret", "secret", "access_request__requester"
    )
    if user.is_superuser or user.has_perm("grants.view_grant"):
        return grants
    return grants.filter(access_request__requester=user)


def grants_revocation_overdue() -> QuerySet[Grant]:
    """Grants still on GitHub after they should have ended, oldest first: what to alert on."""
    return Grant.objects.revocation_overdue().order_by("revocation_overdue_since")


def beat_entries_out_of_place() -> dict[str, list[str]]:
    """Airlock's beat entries (grants.schedule) that are missing or disabled: the sweep and
    its siblings are what make access end on time, so the dashboard and /healthz say so.
    install_beat_schedule (run at every migrate and when beat starts) puts them back."""
    declared = list(beat_schedule())
    enabled = dict(
        PeriodicTask.objects.filter(name__in=declared).values_list("name", "enabled")
    )
    return {
        "missing": [name for name in declared if name not in enabled],
        "disabled": [name for name in declared if enabled.get(name) is False],
    }


def grants_in_force_count_by_kind(*, now: datetime) -> dict[str, int]:
    """How many grants are in force, by kind, every kind named (0 included): those whose
    request is active and has not yet expired, as the grant check counts them."""
    counts = dict.fromkeys(Grant.Kind.values, 0)
    rows = (
        Grant.objects.filter(
            access_request__status=AccessRequest.Status.ACTIVE,
            access_request__expires_at__gt=now,
        )
        .values_list("kind")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts.update(dict(rows))
    return counts
