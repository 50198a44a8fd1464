"""Who is told what about a request, by email and (optionally) a Slack incoming webhook
(events, recipients and quoting: docs/notifications.md)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models.functions import Lower
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from integrations.github.permissions import format_permissions

logger = logging.getLogger(__name__)

# Seconds one Slack POST may take; Slack answers in well under one.
SLACK_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Event:
    audience: str  # "approvers", "requester" or "admins"
    slack: bool


EVENTS = {
    "request_routed": Event("approvers", slack=True),
    "break_glass_used": Event("approvers", slack=True),
    "request_approved": Event("requester", slack=True),
    "request_denied": Event("requester", slack=True),
    "request_timed_out": Event("requester", slack=True),
    "grant_applied": Event("requester", slack=False),
    "grant_failed": Event("requester", slack=True),
    "expiry_reminder": Event("requester", slack=False),
    "revocation_overdue": Event("admins", slack=True),
}


@dataclass
class Message:
    event: str
    subject: str
    body: str
    html: str | None
    link: str
    recipients: list[str] = field(default_factory=list)
    slack: bool = False

    @property
    def slack_text(self) -> str:
        return f"*{_slack_escape(self.subject)}*\n<{self.link}|Open in Airlock>"


class SlackError(Exception):
    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


# --- enqueueing (inside the service's transaction) -------------------------------------------


def notify(event: str, *, request_id: int | None = None, grant_id: int | None = None) -> None:
    """Send the event's message after the current transaction commits (never if it rolls
    back). Pass ids, not objects: the message is built from the committed rows."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    transaction.on_commit(lambda: _enqueue(event, request_id, grant_id))


def _enqueue(event: str, request_id: int | None, grant_id: int | None) -> None:
    from requests_app.tasks import send_notification

    try:
        send_notification.apply_async(
            args=[event], kwargs={"request_id": request_id, "grant_id": grant_id}
        )
    except Exception:  # any broker error: the transition has happened, the message is lost
        logger.exception("Could not enqueue the %s notification (request %s, grant %s)",
                         event, request_id, grant_id)


# --- building a message ----------------------------------------------------------------------

# Grant events (revocation_overdue) carry a grant's id. Grants sit a layer above this app,
# so they say how to read one (grants/apps.py) rather than requests_app importing them.
_read_grant = None


def read_grants_with(reader) -> None:
    """reader(grant_id) returns the grant a message is about (with its access_request_id,
    and what its template shows), or None when it is gone."""
    global _read_grant
    _read_grant = reader



def build_message(
    event: str, *, request_id: int | None = None, grant_id: int | None = None
) -> Message | None:
    """The message for an event, from the rows as they are now; None when there is nothing
    to say any more (the request or grant is gone)."""
    from requests_app.models import AccessRequest

    spec = EVENTS[event]
    grant = None
    if grant_id is not None:
        if _read_grant is None:
            # grants registers its reader when its app is ready; without it a grant's
            # message would be dropped without a word.
            raise ImproperlyConfigured("No grant reader: is the grants app installed?")
        grant = _read_grant(grant_id)
        if grant is None:
            return None
        request_id = request_id or grant.access_request_id
    access_request = (
        AccessRequest.objects.select_related(
            "requester", "policy", "secret", "extends", "closed_by", "reviewed_by"
        )
        .filter(pk=request_id)
        .first()
    )
    if access_request is None:
        return None

    if spec.audience == "approvers":
        link = absolute(
            reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
        )
        recipients = approver_emails(access_request)
    elif spec.audience == "admins":
        path = (
            reverse("admin:grants_grant_change", args=[grant.pk]) if grant is not None
            else reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
        )
        link = absolute(path)
        recipients = admin_emails()
    else:
        link = absolute(reverse("requests_app:detail", args=[access_request.pk]))
        email = access_request.requester.email
        recipients = [email] if email else []

    context = {
        "event": event,
        "r": access_request,
        "grant": grant,
        "link": link,
        "request_url": absolute(reverse("requests_app:detail", args=[access_request.pk])),
        "approvals": [a.approver.get_username() for a in access_request.approvals.all()],
        "minutes_left": _minutes_left(access_request),
        "reminder_minutes": settings.AIRLOCK_EXPIRY_REMINDER_MINUTES,
        "dry_run": settings.AIRLOCK_DRY_RUN,
    }
    text = render_to_string(f"notifications/{event}.txt", context).strip()
    subject, _, body = text.partition("\n")
    try:
        html = render_to_string(f"notifications/{event}.html", context)
    except TemplateDoesNotExist:
        html = None
    return Message(
        event=event,
        subject=" ".join(subject.split())[:200],
        body=body.strip() + "\n",
        html=html,
        link=link,
        recipients=recipients,
        slack=spec.slack,
    )


# Audit forwarding's alerts (audit.forwarding.alerts): a sink fell behind, or caught up.
AUDIT_SINK_EVENTS = {"stale": "audit_sink_stale", "caught_up": "audit_sink_caught_up"}


def build_audit_sink_message(*, sink_id: int, state: str) -> Message | None:
    """The platform admins' message about a forwarding sink, from its row and backlog as
    they are now; None when the row is gone."""
    from audit.models import AuditSink
    from audit.selectors import sink_backlog

    if state not in AUDIT_SINK_EVENTS:
        raise ValueError(f"unknown audit sink alert state {state!r}")
    event = AUDIT_SINK_EVENTS[state]
    sink = AuditSink.objects.filter(pk=sink_id).first()
    if sink is None:
        return None
    now = timezone.now()
    backlog = sink_backlog(sink)
    link = absolute(reverse("admin:audit_auditsink_changelist"))
    context = {
        "sink": sink,
        "backlog": backlog,
        "backlog_minutes": int(backlog.age_seconds(now) // 60),
        "alert_minutes": settings.AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES,
        "link": link,
        "dry_run": settings.AIRLOCK_DRY_RUN,
    }
    text = render_to_string(f"notifications/{event}.txt", context).strip()
    subject, _, body = text.partition("\n")
    return Message(
        event=event,
        subject=" ".join(subject.split())[:200],
        body=body.strip() + "\n",
        html=None,
        link=link,
        recipients=admin_emails(),
        slack=True,
    )


def absolute(path: str) -> str:
    return urljoin(settings.AIRLOCK_BASE_URL + "/", path.lstrip("/"))


def approver_emails(access_request) -> list[str]:
    """Emails of the users behind the logins of the request's approver groups, but not the
    requester's (they cannot decide their own request)."""
    from requests_app.selectors import request_approver_logins

    logins = request_approver_logins(access_request=access_request)
    users = (
        get_user_model()
        .objects.annotate(login=Lower("username"))
        .filter(login__in=logins, is_active=True)
        .exclude(pk=access_request.requester_id)
        .exclude(email="")
        .order_by("username")
    )
    return _unique(user.email for user in users)


def admin_emails() -> list[str]:
    staff = (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .exclude(email="")
        .order_by("username")
        .values_list("email", flat=True)
    )
    return _unique([*staff, *settings.AIRLOCK_ADMIN_EMAILS])


def _unique(emails) -> list[str]:
    seen, result = set(), []
    for email in emails:
        if email and email.lower() not in seen:
            seen.add(email.lower())
            result.append(email)
    return result


def _minutes_left(access_request) -> int | None:
    if access_request.expires_at is None:
        return None
    return max(0, int((access_request.expires_at - timezone.now()).total_seconds() // 60))


# What would end a line of plain text (every break str.splitlines knows, which mail readers
# share), other control characters, and the bidirectional controls that make a line show
# other than it reads.
_NOT_INLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
QUOTE_MARK = "  > "


def quote_inline(value) -> str:
    """Untrusted text inside one of our lines (a name, a login): it stays on that line."""
    return _NOT_INLINE.sub(" ", str(value))


def quote_block(value) -> str:
    """Untrusted free text (a reason, a comment, GitHub's error) as a quoted block of its
    own lines, each starting with QUOTE_MARK: no line of it can pass for one of ours."""
    lines = str(value).splitlines() or [""]
    return "\n".join(f"{QUOTE_MARK}{quote_inline(line)}".rstrip() for line in lines)


def run_lines(access_request) -> list[str]:
    """The run a workflow-filed request is bound to, as lines of a plain-text message (none
    for a person's request): the words of templates/requests_app/_run.html, in text. The
    claims are quoted like any other text; the links are the model's, and a sha that is
    not a commit id is shown but not linked."""
    r = access_request
    if not r.is_run_bound:
        return []
    if r.run_commit_url:
        commit = f"{r.run_short_sha} {r.run_commit_url}"
    elif r.run_sha:
        commit = f"{quote_inline(r.run_sha)} (not a commit id, so not linked)"
    else:
        commit = "-"
    attempt = f", attempt {r.run_attempt}" if r.run_attempt else ""
    return [
        "Filed by:    a workflow, for its run: Airlock's check and deployment protection "
        "rule answer only this run",
        "Ends:        when the run completes or releases it",
        "On GitHub:   the access is the environment's while it lasts (an environment secret "
        "reaches every job entering it; a reviewer may approve any run's deployment)",
        f"Workflow:    {quote_inline(r.run_workflow) or '-'}",
        f"Ref:         {quote_inline(r.run_ref) or '-'}",
        f"Commit:      {commit}",
        f"Run:         Run {r.run_id}{attempt} {r.run_url}",
    ]


def token_lines(access_request) -> list[str]:
    """What a token minted under the request's grant may do, as lines of a plain-text
    message (none when the request records no token permissions): the words of
    templates/requests_app/_token.html, in text. The request's own permissions, copied when
    it was filed (a token request's from its policy, a github_token secret's from its
    definition), not the policy's of today: approving grants exactly these."""
    permissions = access_request.token_permissions
    if not isinstance(permissions, dict) or not permissions:
        return []
    return [
        f"Token:       {format_permissions(permissions)}, in "
        f"{quote_inline(access_request.repository)} only",
        "             what each token minted under the grant may do, as filed (a policy "
        "edit since does not change it)",
        "             each token lasts at most an hour, and is revoked when the access ends",
    ]


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters: escaped, a crafted name
    # makes no <link|label>, <!channel> or <@U123> of its own.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- sending (from the Celery tasks) ---------------------------------------------------------


def send_email(*, subject: str, body: str, html: str | None, to: str) -> None:
    """One email to one person, so a refused address does not hold up the others."""
    message = EmailMultiAlternatives(subject=subject, body=body, to=[to])
    if html:
        message.attach_alternative(html, "text/html")
    message.send()


def slack_payload(text: str) -> dict:
    """The incoming webhook's JSON for a message's mrkdwn text (Message.slack_text). The
    block is what Slack shows, `text` the fallback for notifications. verbatim: Slack makes
    no link or mention of a bare URL, @here or #name in the names quoted there; our own
    <link|label> still works."""
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def post_to_slack(text: str) -> None:
    """POST the message to the incoming webhook. Raises SlackError; transient ones (no
    answer, 429, 5xx) are worth retrying, others (a wrong or revoked URL) are not."""
    url = settings.AIRLOCK_SLACK_WEBHOOK_URL
    if not url:
        return
    try:
        response = requests.post(url, json=slack_payload(text), timeout=SLACK_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise SlackError(f"{type(exc).__name__}: {exc}", transient=True) from exc
    if response.status_code < 300:
        return
    retry_after = response.headers.get("retry-after")
    raise SlackError(
        f"Slack answered {response.status_code}: {response.text[:200]}",
        transient=response.status_code == 429 or response.status_code >= 500,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )
