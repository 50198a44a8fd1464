"""Notifications: who is told what, sent by Celery after the commit, retried, never in the
way of a transition. Email is read from Django's outbox, or from a small SMTP server on
loopback when the test is about SMTP; Slack is a local HTTP endpoint standing in for an
incoming webhook, spoken to over real HTTP."""

import json
import socketserver
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_create_for_request
from requests_app import notifications
from requests_app.models import AccessPolicy, AccessRequest
from requests_app.services import (
    access_request_deny,
    access_request_extend,
    access_requests_remind_expiring,
)
from tests.requests_app.factories import AccessRequestFactory, UserFactory, approver_setup
from tests.requests_app.lifecycle import (
    active_on_github,
    approve,
    file_request,
    grant_now,
    move_expiry,
    policy_and_approvers,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status


# --- a Slack incoming webhook on loopback ---------------------------------------------------


class SlackHook:
    """Records every POST; answers with the queued statuses first, then 200 "ok"."""

    def __init__(self):
        self.posts: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with hook.lock:
                    hook.posts.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("content-type"),
                            "json": json.loads(body),
                        }
                    )
                    status = hook.answers.pop(0) if hook.answers else 200
                payload = b"ok" if status == 200 else b"no_service"
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [post["json"]["text"] for post in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def slack(settings):
    hook = SlackHook()
    settings.AIRLOCK_SLACK_WEBHOOK_URL = hook.url
    yield hook
    hook.close()


# --- a small SMTP server on loopback -----------------------------------------------------------


class SmtpServer:
    """Enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT. The first `busy` deliveries
    are answered 451 (try again later) at MAIL FROM."""

    def __init__(self, busy: int = 0):
        self.messages: list[dict] = []
        self.busy = busy
        smtp = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 localhost ESMTP test")
                envelope = {"from": None, "to": [], "data": ""}
                while line := self.rfile.readline():
                    command = line.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 localhost")
                    elif verb == "MAIL":
                        if smtp.busy:
                            smtp.busy -= 1
                            self.reply("451 4.3.0 Busy, try again later")
                            continue
                        envelope["from"] = command
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        envelope["to"].append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            lines.append(data.decode())
                        envelope["data"] = "".join(lines)
                        smtp.messages.append(dict(envelope))
                        self.reply("250 OK queued")
                    elif verb == "RSET":
                        envelope = {"from": None, "to": [], "data": ""}
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def use_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_TIMEOUT = 5


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def approvers(gh):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production")
    _, users = policy_and_approvers()
    return users


@pytest.fixture
def sent(eager_celery, django_capture_on_commit_callbacks):
    """Run what a block enqueues after its commit, with the tasks run where they are sent."""
    mail.outbox.clear()

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            result = action()
        return result

    return run


def to_whom(subject_part: str) -> list[str]:
    return sorted(m.to[0] for m in mail.outbox if subject_part in m.subject)


# --- who is told what ------------------------------------------------------------------------


def test_approvers_are_told_of_a_request_routed_to_them_with_a_link_to_decide(
    approvers, sent, slack
):
    get_user_model().objects.filter(username="carol").update(email="")  # no email: skipped
    UserFactory(username="dave")  # the requester, not told of their own request
    access_request = sent(lambda: file_request("dave"))

    assert to_whom("awaits your decision") == ["alice@example.com", "bob@example.com"]
    message = next(m for m in mail.outbox if "awaits your decision" in m.subject)
    admin_link = "http://127.0.0.1:8000" + reverse(
        "admin:requests_app_accessrequest_change", args=[access_request.pk]
    )
    assert admin_link in message.body
    assert "Deploying the hotfix for INC-1234" in message.body
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and admin_link in html
    [post] = slack.posts
    assert post["content_type"] == "application/json"
    assert f"Request #{access_request.pk} awaits your decision" in post["json"]["text"]
    assert f"<{admin_link}|Open in Airlock>" in post["json"]["text"]


def test_messages_about_a_token_request_say_the_permissions_it_would_grant(approvers, sent):
    AccessPolicy.objects.update(
        access_kinds=["token"], token_permissions={"contents": "write", "secrets": "write"}
    )
    access_request = sent(lambda: file_request("dave", access="token"))

    message = next(m for m in mail.outbox if "awaits your decision" in m.subject)
    assert "Token:       contents: write, secrets: write, in acme/api only" in message.body
    [(html, _)] = message.alternatives
    assert "<code>contents: write, secrets: write</code>, in <code>acme/api</code> only" in html
    # The policy narrowed since the filing: what the request grants is still what is said.
    AccessPolicy.objects.update(token_permissions={"contents": "read"})
    later = notifications.build_message("request_routed", request_id=access_request.pk)
    assert "contents: write, secrets: write" in later.body
    assert "contents: read" not in later.body


def test_messages_about_a_reviewer_request_name_no_token(approvers):
    access_request = file_request("dave")

    message = notifications.build_message("request_routed", request_id=access_request.pk)

    assert "Token:" not in message.body and "Token permissions" not in (message.html or "")


def test_the_requester_hears_of_approval_and_of_the_grant_being_applied(approvers, sent, slack):
    access_request = file_request("dave")
    mail.outbox.clear()

    sent(lambda: approve(access_request, approvers["alice"]))
    sent(lambda: grant_now(access_request))

    assert to_whom("approved") == ["dave@example.com"]
    assert to_whom("Access granted until") == ["dave@example.com"]
    granted = next(m for m in mail.outbox if "Access granted" in m.subject)
    assert "http://127.0.0.1:8000" + reverse(
        "requests_app:detail", args=[access_request.pk]
    ) in granted.body
    # The channel hears of decisions, not of personal messages.
    assert any("approved" in text for text in slack.texts())
    assert not any("Access granted" in text for text in slack.texts())


def test_the_requester_hears_of_a_denial_with_the_approvers_reason(approvers, sent):
    access_request = file_request("dave")
    sent(
        lambda: access_request_deny(
            access_request=access_request,
            approver=approvers["bob"],
            comment="Not during the freeze",
        )
    )
    [message] = [m for m in mail.outbox if "denied" in m.subject]
    assert message.to == ["dave@example.com"]
    assert "Not during the freeze" in message.body and "bob" in message.body


def test_the_requester_hears_when_github_refuses_the_grant(gh, sent):
    gh.add_environment("acme/api", "production")
    _, users = policy_and_approvers()
    access_request = approve(file_request("nobody-on-github"), users["alice"])  # no such user
    mail.outbox.clear()

    sent(lambda: grant_now(access_request))

    assert access_request.status == Status.FAILED
    [message] = [m for m in mail.outbox if "could not be granted" in m.subject]
    assert message.to == ["nobody-on-github@example.com"]
    assert "GitHub has no user named nobody-on-github" in message.body


def test_an_extension_tells_approvers_what_it_extends_and_the_requester_the_new_end(
    approvers, sent
):
    original = active_on_github(approvers["alice"])
    extension = sent(
        lambda: access_request_extend(
            original=original,
            requester=original.requester,
            reason="The migration needs another half hour",
            duration_minutes=30,
        )
    )
    routed = next(m for m in mail.outbox if "awaits your decision" in m.subject)
    assert routed.subject.startswith(f"[Airlock] Extension #{extension.pk}")
    assert f"more time on request #{original.pk}" in routed.body

    sent(lambda: grant_now(approve(extension, approvers["bob"])))
    [extended] = [m for m in mail.outbox if "Access extended" in m.subject]
    assert "continues without a break" in extended.body


def test_admins_hear_of_an_overdue_revocation(gh, approvers, sent, slack, settings):
    settings.AIRLOCK_ADMIN_EMAILS = ["oncall@example.com"]
    UserFactory(username="root", email="root@example.com", is_staff=True)
    access_request = active_on_github(approvers["alice"])
    gh.faults.add("PUT", "/repos/*/*/environments/*", status=403, times=None,
                  body={"message": "Resource not accessible by integration"})
    mail.outbox.clear()

    sent(lambda: reconcile_environment(move_expiry(access_request).grant.target_id))

    grant = Grant.objects.get(access_request=access_request)
    assert grant.is_revocation_overdue
    assert to_whom("Revocation overdue") == ["oncall@example.com", "root@example.com"]
    message = next(m for m in mail.outbox if "Revocation overdue" in m.subject)
    assert "Resource not accessible by integration" in message.body
    assert reverse("admin:grants_grant_change", args=[grant.pk]) in message.body
    assert any("Revocation overdue" in text for text in slack.texts())
    gh.faults.clear()


# --- reminders -----------------------------------------------------------------------------------


def test_the_requester_is_reminded_once_before_their_access_ends(approvers, sent, settings):
    settings.AIRLOCK_EXPIRY_REMINDER_MINUTES = 10
    access_request = active_on_github(approvers["alice"], duration_minutes=60)
    assert access_requests_remind_expiring() == 0  # an hour left: not yet

    # 55 minutes later (moved here, as time would move):
    AccessRequest.objects.filter(pk=access_request.pk).update(
        granted_at=timezone.now() - timedelta(minutes=55),
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert sent(access_requests_remind_expiring) == 1
    assert sent(access_requests_remind_expiring) == 0  # once only

    [reminder] = mail.outbox
    assert reminder.to == ["dave@example.com"]
    assert "ends in" in reminder.subject and "Need more time?" in reminder.body
    access_request.refresh_from_db()
    assert access_request.expiry_reminder_sent_at is not None


def test_access_an_extension_continues_is_not_reminded_but_the_extension_is(
    approvers, sent, settings
):
    settings.AIRLOCK_EXPIRY_REMINDER_MINUTES = 10
    original = active_on_github(approvers["alice"], duration_minutes=60)
    extension = grant_now(
        approve(
            access_request_extend(
                original=original,
                requester=original.requester,
                reason="The migration needs another half hour",
                duration_minutes=30,
            ),
            approvers["bob"],
        )
    )
    soon, long_ago = timezone.now() + timedelta(minutes=5), timezone.now() - timedelta(hours=2)
    AccessRequest.objects.filter(pk=original.pk).update(granted_at=long_ago, expires_at=soon)
    assert sent(access_requests_remind_expiring) == 0

    AccessRequest.objects.filter(pk=extension.pk).update(granted_at=long_ago, expires_at=soon)
    assert sent(access_requests_remind_expiring) == 1
    extension.refresh_from_db()
    assert extension.expiry_reminder_sent_at is not None


def test_no_reminder_for_access_shorter_than_the_reminder_window(approvers, settings):
    settings.AIRLOCK_EXPIRY_REMINDER_MINUTES = 10
    active_on_github(approvers["alice"], duration_minutes=5)
    assert access_requests_remind_expiring() == 0


# --- sending: after the commit, retried, never in the way ------------------------------------


def test_nothing_is_sent_for_a_transition_that_rolls_back(approvers, sent):
    class Abandon(Exception):
        pass

    def file_then_fail():
        with pytest.raises(Abandon), transaction.atomic():
            file_request("dave")
            raise Abandon

    sent(file_then_fail)
    assert mail.outbox == []
    assert not AccessRequest.objects.exists()


def test_email_goes_out_over_smtp_and_a_busy_server_is_retried(approvers, sent, settings):
    server = SmtpServer(busy=1)
    try:
        use_smtp(settings, server.port)
        access_request = file_request("dave")
        sent(lambda: approve(access_request, approvers["alice"]))
    finally:
        server.close()

    [delivered] = [m for m in server.messages if "approved" in m["data"]]
    assert delivered["to"] == ["dave@example.com"]
    assert "Subject: [Airlock] Request #" in delivered["data"]


def test_a_mail_server_that_is_down_never_blocks_or_undoes_the_transition(
    approvers, sent, settings, caplog
):
    server = SmtpServer()
    port = server.port
    server.close()  # nothing listens there any more
    use_smtp(settings, port)
    access_request = file_request("dave")

    sent(lambda: approve(access_request, approvers["alice"]))

    access_request.refresh_from_db()
    assert access_request.status == Status.ACTIVE  # approved, and granted after the commit
    assert any("not sent after 6 tries" in r.getMessage() for r in caplog.records)


def test_slack_errors_are_retried_and_a_wrong_url_is_not(approvers, sent, slack):
    slack.answers = [500, 503]
    sent(lambda: file_request("dave"))
    assert len(slack.posts) == 3  # two failures, then delivered

    slack.posts.clear()
    slack.answers = [404]
    sent(lambda: file_request("erin"))
    assert len(slack.posts) == 1  # "no_service": the URL is wrong; trying again won't help


def test_a_broker_that_is_down_does_not_break_the_transition(
    approvers, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from requests_app import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.send_notification, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify("request_routed", request_id=1)
    assert "Could not enqueue the request_routed notification" in caplog.text


def test_every_event_has_a_message(approvers):
    access_request = active_on_github(approvers["alice"])
    grant = Grant.objects.get(access_request=access_request)
    for event in notifications.EVENTS:
        message = notifications.build_message(
            event, request_id=access_request.pk, grant_id=grant.pk
        )
        assert message.subject.startswith("[Airlock]"), event
        assert "\n" not in message.subject and "&#x27;" not in message.body, event
        assert message.link.startswith("http://127.0.0.1:8000/"), event


# --- untrusted text is quoted: it cannot forge our lines, links or mentions --------------------


def test_a_reason_cannot_forge_the_decide_here_line_of_the_email(approvers, sent):
    forged = "Deploying the hotfix for INC-1234\nDecide here: https://evil.example/x"
    access_request = sent(lambda: file_request("dave", reason=forged))

    message = next(m for m in mail.outbox if "awaits your decision" in m.subject)
    admin_link = "http://127.0.0.1:8000" + reverse(
        "admin:requests_app_accessrequest_change", args=[access_request.pk]
    )
    decide = [
        line for line in message.body.splitlines() if line.lstrip().startswith("Decide here:")
    ]
    assert decide == [f"Decide here: {admin_link}"]
    # The reason is all there, quoted, every line of it.
    assert "  > Deploying the hotfix for INC-1234\n  > Decide here: https://evil.example/x" in (
        message.body
    )


def test_the_html_email_shows_untrusted_text_escaped_and_links_only_to_us(approvers, sent):
    reason = 'Hotfix INC-1234 <a href="https://evil.example/x">Decide here</a>'
    access_request = sent(lambda: file_request("dave", reason=reason))

    message = next(m for m in mail.outbox if "awaits your decision" in m.subject)
    [(html, _)] = message.alternatives
    admin_link = "http://127.0.0.1:8000" + reverse(
        "admin:requests_app_accessrequest_change", args=[access_request.pk]
    )
    assert html.count("<a ") == 1 and f'<a href="{admin_link}">' in html
    assert "&lt;a href=&quot;https://evil.example/x&quot;&gt;" in html


FORGED = "FORGED"
# Every way text can end a line: \n, \r, \r\n, and the Unicode line and paragraph breaks.
BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]


def crafted(text: str) -> str:
    # Short enough for every column it goes in (a GitHub login: 100 characters).
    return text + "".join(f"{brk}{FORGED}" for brk in BREAKS)


@pytest.fixture
def crafted_request(settings):
    """A request and its grant whose every free or foreign text tries to start lines of its
    own. Made directly in the database: names stored before stricter validation, or text
    GitHub sent back, reach the messages all the same."""
    from tests.grants.factories import approved_request

    settings.AIRLOCK_DRY_RUN = True
    access_request = approved_request(
        "mallory",
        reason=crafted("Deploying the hotfix"),
        close_comment=crafted("Not now"),
        closed_by=UserFactory(username=crafted("bob")),
    )
    grant = grant_create_for_request(access_request=access_request)
    Grant.objects.filter(pk=grant.pk).update(
        login=crafted("mallory"),
        last_error=crafted("GitHub said no"),
        revocation_overdue_since=timezone.now(),
    )
    # The engine grants no target outside GitHub's naming rules (core.names), so the crafted
    # names go in afterwards, as rows stored before those rules would be.
    AccessRequest.objects.filter(pk=access_request.pk).update(
        repository=crafted("acme/api"),
        environment=crafted("production"),
        # And the claims of a workflow run, as a token could carry them.
        run_id=1234,
        run_attempt=1,
        run_workflow_ref=crafted("acme/api/.github/workflows/deploy.yml@refs/heads/main"),
        run_ref=crafted("refs/heads/main"),
        run_sha=crafted("abc"),
        granted_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=30),
    )
    access_request.refresh_from_db()
    return access_request, grant


@pytest.mark.parametrize("event", sorted(notifications.EVENTS))
def test_no_untrusted_text_starts_a_line_of_its_own_in_any_message(event, crafted_request):
    access_request, grant = crafted_request

    message = notifications.build_message(
        event, request_id=access_request.pk, grant_id=grant.pk
    )

    assert len(message.subject.splitlines()) == 1
    lines = message.body.splitlines()
    forged = [line for line in lines if line.lstrip().startswith("FORGED")]
    assert forged == [], message.body
    assert "FORGED" in message.body  # shown, but inside our lines or quoted


def test_untrusted_text_reaches_slack_escaped_and_not_parsed(slack, sent):
    # A name stored before the stricter name rules (made directly in the database).
    policy, _group, _users = approver_setup(approvals_required=1)
    access_request = AccessRequestFactory(
        requester=UserFactory(username="mallory"),
        environment="<https://evil.example|click> <!channel> @here https://evil.example/x",
        policy=policy,
    )

    sent(lambda: notifications.notify("request_routed", request_id=access_request.pk))

    [post] = slack.posts
    payload = post["json"]
    [block] = payload["blocks"]
    # verbatim: Slack turns no bare URL into a link, and no @here or #name into a mention.
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["verbatim"] is True
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    admin_link = "http://127.0.0.1:8000" + reverse(
        "admin:requests_app_accessrequest_change", args=[access_request.pk]
    )
    for text in (block["text"]["text"], payload["text"]):
        assert "&lt;https://evil.example|click&gt; &lt;!channel&gt;" in text
        # The only Slack markup left is our own link.
        assert text.replace(f"<{admin_link}|Open in Airlock>", "").count("<") == 0
