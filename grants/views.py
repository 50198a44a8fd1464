"""The grant actions on the requester's pages: giving access back."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from core.errors import NotAllowed, WrongState
from grants.models import Grant
from grants.services import grant_revoke
from requests_app.forms import CancelForm
from requests_app.selectors import requests_visible_to
from requests_app.views import render_page


@login_required
@require_POST
def request_give_back(request, pk: int):
    """The requester ends their own access (or an approved grant before it starts)."""
    access_request = get_object_or_404(requests_visible_to(user=request.user), pk=pk)
    grant = Grant.objects.filter(access_request=access_request).first()
    form = CancelForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    if access_request.requester_id != request.user.pk:
        return render_page(
            request,
            "requests_app/refused.html",
            {
                "message": "Only the requester can give access back here.",
                "access_request": access_request,
            },
            status=403,
        )
    if grant is None:
        messages.error(
            request,
            f"Request #{pk} has no access to give back "
            f"({access_request.get_status_display()}).",
        )
        return redirect("requests_app:detail", pk=pk)
    try:
        grant_revoke(grant=grant, user=request.user, comment=comment)
    except WrongState as exc:
        messages.error(request, str(exc))
    except NotAllowed as exc:
        return render_page(
            request,
            "requests_app/refused.html",
            {"message": str(exc), "access_request": access_request},
            status=403,
        )
    else:
        messages.success(
            request,
            f"Access of request #{pk} is given back: workflows are refused from now on, and "
            "Airlock is removing it from GitHub.",
        )
    return redirect("requests_app:detail", pk=pk)


# Served in the requests_app namespace beside the request's own pages (portal/urls.py).
request_urlpatterns = [
    path("<int:pk>/give-back/", request_give_back, name="give-back"),
]
