"""Reads about grants, for the pages, the admin and the API."""

from django.db.models import QuerySet

from grants.models import Grant


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
