"""The portal's side of linking a Slack account: the page the `/airlock link` link opens
(confirm while signed in), and the account's Slack page (its links, removing one). The
rules are in requests_app.services.slack_links.

The link page asks Slack who the Slack user is (users.info, best effort, within
LOOKUP_TIMEOUT_SECONDS) so that a person sent someone else's link reads that person's name;
a deleted or bot Slack user is refused, on the page and again on confirming."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from core.errors import NotAllowed, WrongState
from integrations.slack import SlackPerson, slack_person
from requests_app.selectors import user_is_approver
from requests_app.services.slack_links import (
    slack_link_code_find,
    slack_link_code_refusal,
    slack_link_confirm,
    slack_unlink,
)
from requests_app.slack_models import SlackLink, SlackLinkCode

LOOKUP_TIMEOUT_SECONDS = 2


def _render(request, template, context, status=200):
    response = render(
        request,
        template,
        {"nav": "slack", "airlock_is_approver": user_is_approver(user=request.user), **context},
        status=status,
    )
    add_never_cache_headers(response)
    return response


def _person_refusal(code: SlackLinkCode, person: SlackPerson | None) -> str | None:
    """Why Slack's answer rules the link out (a deactivated or bot user), or None."""
    if person is None:
        return None
    if person.deleted:
        return (
            f"Slack user {code.slack_user_id} is deactivated in Slack: it cannot be linked. "
            "Run /airlock link from your own, active Slack account."
        )
    if person.is_bot:
        return (
            f"Slack user {code.slack_user_id} is a bot or an app, not a person: it cannot "
            "be linked."
        )
    return None


def _named(person: SlackPerson | None) -> str:
    """Real Name (@handle), or the one of the two Slack has; "" when Slack cannot say."""
    if person is None:
        return ""
    handle = f"@{person.handle}" if person.handle else ""
    if person.real_name and handle:
        return f"{person.real_name} ({handle})"
    return person.real_name or handle


@login_required
def slack_link(request, code):
    found = slack_link_code_find(code)
    refusal = slack_link_code_refusal(found)
    if refusal:
        status = 404 if found is None else 410
        return _render(request, "requests_app/slack/link.html", {"refusal": refusal}, status)
    person = slack_person(found.slack_user_id, timeout=LOOKUP_TIMEOUT_SECONDS)
    refusal = _person_refusal(found, person)
    if refusal:
        return _render(request, "requests_app/slack/link.html", {"refusal": refusal}, 409)
    if request.method == "POST":
        try:
            link = slack_link_confirm(raw_code=code, user=request.user)
        except (NotAllowed, WrongState) as error:
            return _render(
                request, "requests_app/slack/link.html", {"refusal": str(error)}, status=409
            )
        named = _named(person)
        who = f"{named}, {link.slack_user_id}" if named else link.slack_user_id
        messages.success(request, f"Slack user {who} ({link.team_id}) is linked to you.")
        return redirect("slack-account")
    context = {"code": found, "person": person, "named": _named(person)}
    return _render(request, "requests_app/slack/link.html", context)


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
