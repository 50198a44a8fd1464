"""The "API tokens" page: a person's personal API tokens, making one (shown once) and
revoking one. The rules are in requests_app.tokens."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from core.errors import NotAllowed, WrongState
from requests_app import tokens
from requests_app.selectors import user_is_approver

LIFETIME_CHOICES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Name",
        label_suffix="",
        help_text="What the token is for, e.g. deploy script on my laptop.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    lifetime_days = forms.TypedChoiceField(
        label="Expires after",
        label_suffix="",
        choices=LIFETIME_CHOICES,
        coerce=int,
        initial="30",
    )


def _page(request, *, form, new_token=None, status=200):
    response = render(
        request,
        "requests_app/tokens/api_tokens.html",
        {
            "form": form,
            "tokens": tokens.api_tokens_of(user=request.user),
            "new_token": new_token,
            "now": timezone.now(),
            "nav": "api-tokens",
            "airlock_is_approver": user_is_approver(user=request.user),
        },
        status=status,
    )
    # The page may carry a token in clear: no cache may keep it.
    add_never_cache_headers(response)
    return response


@login_required
def api_tokens(request):
    if request.method != "POST":
        return _page(request, form=ApiTokenForm())
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    token, raw = tokens.api_token_create(
        user=request.user,
        name=form.cleaned_data["name"],
        lifetime=timedelta(days=form.cleaned_data["lifetime_days"]),
    )
    # Rendered, not redirected: the token text is never stored anywhere to show it later.
    return _page(request, form=ApiTokenForm(), new_token={"token": token, "raw": raw})


@login_required
@require_POST
def api_token_revoke(request, pk):
    token = get_object_or_404(tokens.api_tokens_of(user=request.user), pk=pk)
    try:
        tokens.api_token_revoke(token=token, user=request.user)
    except (NotAllowed, WrongState) as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"The token {token.prefix}… ({token.name}) is revoked.")
    return redirect("api-tokens")
