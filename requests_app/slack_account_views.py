"""The portal's side of linking a Slack account: the page the `/airlock link` link opens
(confirm while signed in), and the account's Slack page (its links, removing one). The
rules are in requests_app.services.slack_links."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from core.errors import NotAllowed, WrongState
from requests_app.selectors import user_is_approver
from requests_app.services.slack_links import (
    slack_link_code_find,
    slack_link_code_refusal,
    slack_link_confirm,
    slack_unlink,
)
from requests_app.slack_models import SlackLink


def _render(request, template, context, status=200):
    response = render(
        request,
        template,
        {"nav": "slack", "airlock_is_approver": user_is_approver(user=request.user), **context},
        status=status,
    )
    add_never_cache_headers(response)
    return response


@login_required
def slack_link(request, code):
    found = slack_link_code_find(code)
    refusal = slack_link_code_refusal(found)
    if refusal:
        status = 404 if found is None else 410
        return _render(request, "requests_app/slack/link.html", {"refusal": refusal}, status)
    if request.method == "POST":
        try:
            link = slack_link_confirm(raw_code=code, user=request.user)
        except (NotAllowed, WrongState) as error:
            return _render(
                request, "requests_app/slack/link.html", {"refusal": str(error)}, status=409
            )
        messages.success(
            request, f"Slack user {link.slack_user_id} ({link.team_id}) is linked to you."
        )
        return redirect("slack-account")
    return _render(request, "requests_app/slack/link.html", {"code": found})


@login_required
def slack_account(request):
    links = SlackLink.objects.filter(user=request.user)
    return _render(request, "requests_app/slack/account.html", {"links": links})


@login_required
@require_POST
def slack_unlink_view(request, pk):
    link = get_object_or_404(SlackLink.objects.filter(user=request.user), pk=pk)
    try:
        slack_unlink(link=link, user=request.user)
    except (NotAllowed, WrongState) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Slack user {link.slack_user_id} is no longer linked.")
    return redirect("slack-account")
