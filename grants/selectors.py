"""Reads about grants, for the pages, the admin, the API and /metrics."""

from datetime import datetime

from django.db.models import Count, QuerySet
from django_celery_beat.models import PeriodicTask

from grants.models import Grant
from grants.schedule import beat_schedule
from requests_app.models import in_force_at


def user_is_grants_admin(*, user, permission: str = "grants.view_grant") -> bool:
    """Platform admins of grants: active staff with the permission (superusers have every
    one). The admin admits only staff, so a permission on an account that is not staff
    opens nothing, and neither does the staff flag without it: the same rule as
    requests_app.selectors.user_sees_all_requests. The grant list, the grant check's `user=`,
    revocation and the dashboard all ask this."""
    return bool(user.is_active and user.is_staff and user.has_perm(permission))


def grants_visible_to(*, user) -> QuerySet[Grant]:
    """A user's own grants; platform admins see all of them."""
    grants = Grant.objects.select_related(
        "access_request", "target", "org_secret", "secret", "access_request__requester"
    )
    if user_is_grants_admin(user=user):
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
        Grant.objects.filter(in_force_at(now, prefix="access_request__"))
        .values_list("kind")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts.update(dict(rows))
    return counts
