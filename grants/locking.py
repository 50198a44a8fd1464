"""The one order in which a transaction that changes requests and grants locks their rows."""

from grants.models import Grant
from requests_app.models import AccessRequest


def lock_requests_then_grants(*, request_ids, grant_ids=None) -> None:
    """Lock the requests, then the grants (those of grant_ids, or every grant of the
    requests when it is None), each by primary key, before the transaction's first audit
    event takes the audit chain's lock (audit.log_event holds it to the end of the
    transaction).

    Every transaction that changes both keeps this order: the reconciler's outcomes,
    grant_revoke, and the request services, which lock their request first. So none waits
    for a row while holding the chain another is queued on, which PostgreSQL would abort as
    a deadlock."""
    request_ids = sorted(set(request_ids))
    if not request_ids and not grant_ids:
        return
    list(
        AccessRequest.objects.select_for_update()
        .filter(pk__in=request_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    grants = Grant.objects.select_for_update()
    if grant_ids is None:
        grants = grants.filter(access_request_id__in=request_ids)
    else:
        grants = grants.filter(pk__in=sorted(set(grant_ids)))
    list(grants.order_by("pk").values_list("pk", flat=True))
