"""What GitHub shows on a waiting run: the approved, rejected and waiting comments."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.urls import reverse

from requests_app.models import AccessRequest
from requests_app.selectors import requests_serving_github_person

Status = AccessRequest.Status
MAX_COMMENT = 1000


def _portal_url(path: str) -> str:
    return settings.AIRLOCK_BASE_URL.rstrip("/") + path


def _target(gate) -> str:
    return f"{gate.repository} environment '{gate.environment}'"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_COMMENT else text[: MAX_COMMENT - 1] + "…"


def approved_comment(gate, access_request) -> str:
    return _clip(
        f"Airlock: approved. {gate.login} holds {access_request.access} access to "
        f"{_target(gate)} until {access_request.expires_at:%Y-%m-%d %H:%M %Z} "
        f"(request #{access_request.pk}: "
        f"{_portal_url(reverse('requests_app:detail', args=[access_request.pk]))})."
    )


_CLOSED_WORDS = {
    Status.DENIED: "was denied",
    Status.CANCELLED: "was cancelled",
    Status.TIMED_OUT: "timed out before it was decided",
    Status.FAILED: "failed: GitHub refused the grant",
    Status.REVOKED: "was revoked",
    Status.EXPIRED: "expired",
}


def rejected_comment(gate, access_request) -> str:
    words = _CLOSED_WORDS.get(access_request.status, f"is {access_request.status}")
    why = f": {access_request.close_comment}" if access_request.close_comment else ""
    if access_request.status == Status.FAILED:
        why = f" ({access_request.close_comment})" if access_request.close_comment else ""
    return _clip(
        f"Airlock: rejected. {gate.login}'s request #{access_request.pk} for {_target(gate)} "
        f"{words}{why}. Ask again at {_new_request_url(gate)} and re-run the job."
    )


def _new_request_url(gate) -> str:
    query = urlencode(
        {"repository": gate.repository, "environment": gate.environment, "access": "reviewer"}
    )
    return _portal_url(f"{reverse('requests_app:new')}?{query}")


def waiting_comment(gate, refusals: list[str]) -> str:
    open_request = (
        AccessRequest.objects.filter(
            requests_serving_github_person(login=gate.login, github_id=gate.sender_id),
            status__in=(Status.PENDING, Status.APPROVED),
            repository=gate.repository,
            environment=gate.environment,
        )
        # A request bound to another run could never approve this deployment.
        .filter(Q(run_id__isnull=True) | Q(run_id=gate.run_id))
        .order_by("-created_at", "-pk")
        .first()
    )
    if refusals:
        held = (
            f"{gate.login}'s active grant does not cover this deployment "
            f"({'; '.join(refusals)}; a deployment webhook names no workflow, and a ref "
            "only by name)."
        )
    else:
        held = f"{gate.login} holds no active Airlock grant for {_target(gate)}."
    if open_request is not None:
        follow = (
            f"Request #{open_request.pk} is {open_request.status}: "
            f"{_portal_url(reverse('requests_app:detail', args=[open_request.pk]))}"
        )
    else:
        follow = f"Request access: {_new_request_url(gate)}"
    return _clip(
        f"Airlock: waiting. {held} {follow}. This deployment is approved as soon as a grant "
        "is active, and rejected if the request is denied or times out."
    )
