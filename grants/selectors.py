"""Reads about grants, for the pages, the admin and the API."""

from django.db.models import QuerySet
from django_celery_beat.models import PeriodicTask

from grants.models import Grant
from grants.schedule import beat_schedule


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
