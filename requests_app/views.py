"""The requester's pages: file a request (and check which policy covers it first), follow
one's requests, cancel a pending one, ask for more time (giving access back: grants.views)."""

from datetime import timedelta

from django.apps import apps
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import select_template
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.errors import NotAllowed, WrongState
from integrations.github.permissions import format_permissions
from requests_app.forms import AccessRequestForm, CancelForm, ExtendForm
from requests_app.models import AccessKind, AccessPolicy, AccessRequest
from requests_app.policies import policy_for_target
from requests_app.selectors import (
    request_approval_counts,
    request_extended_until,
    request_open_extension,
    request_pending_approvers,
    requests_extended_until,
    requests_visible_to,
    user_is_approver,
)
from requests_app.services import (
    access_request_cancel,
    access_request_create,
    access_request_extend,
)

GRANT_STATE_TEMPLATE = "grants/_grant_state.html"
REQUEST_AUDIT_TARGET_TYPE = "requests_app.accessrequest"
REQUESTS_PER_PAGE = 50


def render_page(request, template: str, context: dict, *, status: int = 200):
    context = {"airlock_is_approver": user_is_approver(user=request.user), **context}
    return render(request, template, context, status=status)


@login_required
def my_requests(request):
    own = (
        AccessRequest.objects.filter(requester=request.user)
        .select_related("secret")
        .order_by("-created_at", "-id")
    )
    page = Paginator(own, REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    # Read for the rows shown only, in a fixed number of queries (not one per row).
    approval_counts = request_approval_counts(access_requests=rows)
    continuing = [
        r for r in rows
        if r.status in (AccessRequest.Status.ACTIVE, AccessRequest.Status.APPROVED)
    ]
    extended_until = requests_extended_until(access_requests=continuing)
    for access_request in rows:
        access_request.approval_count = approval_counts[access_request.pk]
        # Where an extension continues the access, its end is the one that counts.
        access_request.extended_until = extended_until.get(access_request.pk)
    return render_page(
        request,
        "requests_app/my_requests.html",
        {"page": page, "access_requests": rows, "nav": "my-requests"},
    )


@login_required
def new_request(request):
    data = request.POST if request.method == "POST" else request.GET
    previewing = request.method == "GET" or "preview" in request.POST
    target = {name: data.get(name, "").strip() for name in AccessRequestForm.TARGET_FIELDS}
    target_given = all(target.values())
    # The target alone is judged first: the policy is looked up by its canonical names, and
    # a name outside GitHub's rules is an error on its field, never a policy lookup.
    judged = AccessRequestForm(data, preview=True) if target_given else None
    target_refused = judged is not None and any(
        name in judged.errors for name in AccessRequestForm.TARGET_FIELDS
    )
    policy = None
    if target_given and not target_refused:
        target = {name: judged.cleaned_data[name] for name in AccessRequestForm.TARGET_FIELDS}
        policy = policy_for_target(**target)

    if previewing:
        # Unbound, so checking a policy does not flag the fields not filled in yet; bound to
        # the target's errors when it was refused.
        initial = {name: value for name, value in data.items() if name != "preview"}
        if policy and not initial.get("duration_minutes"):
            initial["duration_minutes"] = _minutes(policy.default_duration)
        form = judged if target_refused else AccessRequestForm(initial=initial)
    else:
        form = AccessRequestForm(request.POST)
        if form.is_valid():
            try:
                access_request = access_request_create(
                    requester=request.user,
                    repository=form.cleaned_data["repository"],
                    environment=form.cleaned_data["environment"],
                    access=form.cleaned_data["access"],
                    secret_name=form.cleaned_data["secret"] or None,
                    reason=form.cleaned_data["reason"],
                    duration_minutes=form.cleaned_data["duration_minutes"],
                    starts_at=form.cleaned_data["starts_at"],
                    break_glass=form.cleaned_data["break_glass"],
                    workflow_ref_pattern=form.cleaned_data["workflow_ref_pattern"],
                    ref_pattern=form.cleaned_data["ref_pattern"],
                )
            except ValidationError as exc:
                _add_service_errors(form, exc)
            else:
                messages.success(request, _created_message(access_request))
                return redirect("requests_app:detail", pk=access_request.pk)

    return render_page(
        request,
        "requests_app/new_request.html",
        {
            "form": form,
            "nav": "new",
            "previewed": previewing and target_given and not target_refused,
            "policy": _policy_summary(policy) if policy else None,
            "target": target,
        },
    )


@login_required
def request_detail(request, pk: int, *, extend_form=None, status=200):
    access_request = get_object_or_404(
        requests_visible_to(user=request.user).select_related(
            "requester", "policy", "secret", "closed_by", "extends", "reviewed_by"
        ),
        pk=pk,
    )
    approvals = access_request.approvals.select_related("approver")
    is_pending = access_request.status == AccessRequest.Status.PENDING
    return render_page(
        request,
        "requests_app/request_detail.html",
        {
            "access_request": access_request,
            "approvals": approvals,
            "pending_approvers": (
                request_pending_approvers(access_request=access_request) if is_pending else []
            ),
            "timeline": _timeline(access_request),
            "grant_template": grant_state_template(),
            "can_cancel": is_pending and access_request.requester_id == request.user.pk,
            "cancel_form": CancelForm(),
            **_lifecycle_context(request, access_request, extend_form),
        },
        status=status,
    )


def _lifecycle_context(request, access_request: AccessRequest, extend_form) -> dict:
    """Giving access back, asking for more time, and the extensions either way."""
    Status = AccessRequest.Status
    own = access_request.requester_id == request.user.pk
    grant = getattr(access_request, "grant", None) if own else None
    in_force = access_request.is_in_force(timezone.now())
    # Past its expiry an active request is only waiting for the engine to remove it:
    # there is nothing left to give back.
    can_give_back = (
        grant is not None
        and grant.state in ("pending", "applied")
        and grant.revoke_requested_at is None
        and (in_force or access_request.status == Status.APPROVED)
    )
    open_extension = request_open_extension(access_request=access_request)
    policy = access_request.policy
    return {
        "can_give_back": can_give_back,
        "give_back_form": CancelForm(),
        # A run-bound request ends with its run (the service refuses to extend it).
        "can_extend": (
            own and in_force and open_extension is None and not access_request.is_run_bound
        ),
        "extend_refused": own and in_force and access_request.is_run_bound,
        "extend_form": extend_form
        or ExtendForm(initial={"duration_minutes": _minutes(policy.default_duration)}),
        "extend_max_label": duration_label(policy.max_duration),
        "open_extension": open_extension,
        "extensions": list(access_request.extensions.order_by("pk")),
        "extended_until": request_extended_until(access_request=access_request),
    }


@login_required
@require_POST
def request_extend(request, pk: int):
    access_request = get_object_or_404(requests_visible_to(user=request.user), pk=pk)
    form = ExtendForm(request.POST)
    if not form.is_valid():
        return request_detail(request, pk, extend_form=form, status=400)
    try:
        extension = access_request_extend(
            original=access_request,
            requester=request.user,
            reason=form.cleaned_data["reason"],
            duration_minutes=form.cleaned_data["duration_minutes"],
        )
    except NotAllowed as exc:
        return render_page(
            request,
            "requests_app/refused.html",
            {"message": str(exc), "access_request": access_request},
            status=403,
        )
    except WrongState as exc:
        messages.error(request, str(exc))
        return redirect("requests_app:detail", pk=pk)
    except ValidationError as exc:
        _add_service_errors(form, exc)
        return request_detail(request, pk, extend_form=form, status=400)
    messages.success(request, _extension_message(extension))
    return redirect("requests_app:detail", pk=extension.pk)


@login_required
@require_POST
def request_cancel(request, pk: int):
    access_request = get_object_or_404(requests_visible_to(user=request.user), pk=pk)
    form = CancelForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        access_request_cancel(access_request=access_request, user=request.user, comment=comment)
    except NotAllowed as exc:
        return render_page(
            request,
            "requests_app/refused.html",
            {"message": str(exc), "access_request": access_request},
            status=403,
        )
    except WrongState:
        access_request.refresh_from_db(fields=["status"])
        messages.error(
            request,
            f"Request #{pk} is already decided ({access_request.get_status_display()}); "
            f"there is nothing to cancel.",
        )
    else:
        messages.success(request, f"Request #{pk} is cancelled.")
    next_url = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(next_url)
    return redirect("requests_app:detail", pk=pk)


# --- page helpers ------------------------------------------------------------------------------


def _add_service_errors(form: AccessRequestForm, exc: ValidationError) -> None:
    """Put a service's ValidationError beside the fields it names; the rest on top."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        if field in form.fields:
            form.add_error(field, errors)
        elif field == NON_FIELD_ERRORS:
            form.add_error(None, errors)
        else:
            form.add_error(None, [f"{field}: {message}" for e in errors for message in e])


def _created_message(access_request: AccessRequest) -> str:
    if access_request.status == AccessRequest.Status.PENDING:
        needed = access_request.approvals_required
        return (
            f"Request #{access_request.pk} is filed. It needs {needed} "
            f"approval{'s' if needed != 1 else ''} before access is granted."
        )
    if access_request.break_glass:
        return (
            f"Break-glass request #{access_request.pk} is approved; access is being granted "
            f"and approvers have been told."
        )
    return f"Request #{access_request.pk} is approved automatically by its policy."


def _extension_message(extension: AccessRequest) -> str:
    if extension.status == AccessRequest.Status.PENDING:
        needed = extension.approvals_required
        return (
            f"Request #{extension.pk} for more time is filed. Once it has {needed} "
            f"approval{'s' if needed != 1 else ''}, your access continues without a break."
        )
    return (
        f"Request #{extension.pk} for more time is approved automatically by its policy; "
        "your access continues without a break."
    )


def _policy_summary(policy: AccessPolicy) -> dict:
    groups = list(policy.approver_groups.all())
    return {
        "policy": policy,
        "max_minutes": _minutes(policy.max_duration),
        "max_label": duration_label(policy.max_duration),
        "default_minutes": _minutes(policy.default_duration),
        "default_label": duration_label(policy.default_duration),
        "pending_label": duration_label(policy.pending_ttl),
        "break_glass_label": duration_label(policy.break_glass_max_duration),
        "groups": [(group, group.member_logins()) for group in groups],
        "secrets": [secret.name for secret in policy.secrets.all()],
        # What a token minted under a grant of this policy may do (token access only).
        "token_permissions": (
            format_permissions(policy.token_permissions)
            if AccessKind.TOKEN in policy.access_kinds and policy.token_permissions
            else ""
        ),
    }


def _timeline(access_request: AccessRequest) -> list:
    # The audit app owns AuditEvent; until it exists the page simply has no timeline.
    try:
        audit_event = apps.get_model("audit", "AuditEvent")
    except LookupError:
        return []
    return list(
        audit_event.objects.filter(
            target_type=REQUEST_AUDIT_TARGET_TYPE, target_id=str(access_request.pk)
        ).order_by("seq")
    )


def grant_state_template() -> str | None:
    # The grant engine contributes the grant's state; the page works without it.
    try:
        select_template([GRANT_STATE_TEMPLATE])
    except TemplateDoesNotExist:
        return None
    return GRANT_STATE_TEMPLATE


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def duration_label(duration: timedelta) -> str:
    minutes = _minutes(duration)
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes >= size and minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
