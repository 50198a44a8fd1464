"""How grants answers requests_app: following its signals, reading grants for its messages."""

from grants.models import Grant
from grants.tasks import enqueue_deployment_gates_for_request, enqueue_grant_for_request
from requests_app.models import AccessRequest

# The deployment gates waiting on the request's person and environment are decided
# (grants.gates) once its access is active, or once it ended without access.
_DECIDES_DEPLOYMENT_GATES = (AccessRequest.Status.ACTIVE, *AccessRequest.CLOSED_STATUSES)


def start_grant_engine(sender, *, request_id: int, **kwargs) -> None:
    enqueue_grant_for_request(request_id)


def follow_deployment_gates(sender, *, request_id: int, status: str, **kwargs) -> None:
    if status in _DECIDES_DEPLOYMENT_GATES:
        enqueue_deployment_gates_for_request(request_id)


def grant_for_message(grant_id: int) -> Grant | None:
    return (
        Grant.objects.select_related("access_request", "target", "secret", "org_secret")
        .filter(pk=grant_id)
        .first()
    )
