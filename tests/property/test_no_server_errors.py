"""No input gets a 5xx: every URL that takes input, fuzzed with Hypothesis.

- Every HTML form of the portal, the admin and sign-in, read from its page as a browser
  reads it (tests/property/html_forms.py), signed in as someone the page is for, and
  POSTed as the browser would send it with arbitrary values put into it. On Airlock's own
  pages every field first gets each of a few values that have broken web applications
  (SWEEP), one field at a time, so that a field that breaks only when the rest of the form
  is valid is reached; then Hypothesis makes up more (any text, control characters, huge
  numbers, broken dates and JSON, fields the form has not, fields left out). A page that
  refuses that person still gets the POST: it must refuse it, not fail. Pages that read
  their query string (list filters and search, the request form's policy check,
  pagination) get the same, in the parameters their own links and forms use.
- The GitHub webhook: real payloads with fields replaced by arbitrary JSON, and bodies that
  are no payload at all, signed with the secret so that they get past the signature check.
- The Slack endpoints: interaction payloads and slash commands of arbitrary shapes, signed
  with the signing secret so that they get past the signature check.
- The REST API is fuzzed from its own schema by tests/api/test_schemathesis.py.

test_every_url_pattern_is_fuzzed_or_said_to_take_no_input keeps this complete: a URL
pattern that is neither fuzzed here, nor in the API's schema, nor listed in NO_INPUT with
the reason, fails it. The admin's pages come from its registry, so a new ModelAdmin is
fuzzed without being named here.

Each example runs in a savepoint that is rolled back, so that no example's changes (a
deleted policy, a cancelled request) hide a page from the next, and nothing is sent after
a commit. Bounded and derandomized: the same examples on every run, in about half a
minute.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlencode

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    PeriodicTask,
    SolarSchedule,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit.models import AuditSink
from grants.minted import minted_token_record
from grants.models import DeploymentGate, MintedToken, OrgSecretTarget, WorkflowRunDelivery
from integrations.github.tokens import InstallationToken
from requests_app.services.slack_links import code_digest
from requests_app.slack_models import SlackLink, SlackLinkCode
from requests_app.tokens import api_token_create
from tests.api.conftest import active_request
from tests.property.html_forms import Form, read_page
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    SecretDefinitionFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db

# Generated examples per surface, besides the sweep (SWEEP, below) that Airlock's own pages
# get; Django's and allauth's pages, tested by their makers, get a few through Airlock's
# middleware and settings.
EXAMPLES = 6
FEW = 3
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SLACK_ROUTES = {"slack/interactions", "slack/commands"}
SLACK_CODE = "fuzz-slack-link-code"
SLACK_SECRET = "fuzz-slack-signing-secret"

# --- what to type -------------------------------------------------------------------------------

# Values that have broken web applications, each standing for a class: characters a
# database cannot store, numbers no column, datetime or timedelta holds, nesting no parser
# survives, sizes nobody expects, dates that do not exist, markup and quoting.
NASTY = [
    "\x00",
    "99999999999999999999999",
    "-1",
    "[" * 5000,
    "x" * 10_000,
    "9999-12-31 23:59:59",
    "",
    "-9223372036854775809",
    "2026-02-30",
    "99999999999 00:00:00",
    "1e309",
    "NaN",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "\u202e😀",
    "\r\n",
]
# Every field and query parameter of Airlock's own pages gets each of these, one field at a
# time, the rest of the form as a browser would send it (explicit Hypothesis examples): a
# field that breaks only when the others are valid is reached too.
SWEEP = NASTY[:6]
# Any text a browser can send (UTF-8 cannot carry lone surrogates).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
ANY_VALUE = st.one_of(st.sampled_from(NASTY), TEXT, st.integers().map(str))
UNEXPECTED = "unexpected"  # a field no form has


def with_value(data: dict[str, list[str]], name: str, value) -> dict[str, list[str]]:
    return {**data, name: value if isinstance(value, list) else [value]}


@st.composite
def changed(draw, baseline: dict[str, list[str]], names: list[str]):
    """The baseline with arbitrary values in one or two fields (or a field it does not
    have), a value now and then repeated, and now and then a field left out."""
    data = dict(baseline)
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(names + [UNEXPECTED]))
        data = with_value(data, name, [draw(ANY_VALUE)] * draw(st.integers(1, 2)))
    if data and draw(st.booleans()):
        del data[draw(st.sampled_from(sorted(data)))]
    return data


def sweep(action: str, baseline: dict[str, list[str]], names: list[str]):
    return [(action, with_value(baseline, name, value)) for name in names for value in SWEEP]


# --- who and what is there ----------------------------------------------------------------------


@dataclass
class World:
    users: dict
    pending: object  # dev's pending request, routed to alice
    active: object  # dev's active request, with its grant on GitHub
    break_glass: object  # dev's break-glass access, awaiting review

    def login(self, client: Client, who: str) -> None:
        client.logout()
        if who:
            client.force_login(self.users[who])


@pytest.fixture
def world(settings):
    settings.AIRLOCK_BASE_URL = "https://airlock.test"
    # Sessions in the cookie: a sign-in outlives the savepoint each example rolls back.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    policy, group, approvers = approver_setup(approvals_required=1, break_glass=True)
    secret = SecretDefinitionFactory(name="DEPLOY_TOKEN")
    policy.secrets.set([secret])
    dev = UserFactory(username="dev")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    pending = AccessRequestFactory(requester=dev, policy=policy)
    active = active_request("dev", policy=policy)
    break_glass = active_request("dev", policy=policy, environment="staging", break_glass=True)
    # A workflow's request, bound to its run: the lists and the admin show its run.
    AccessRequestFactory(
        requester=dev,
        policy=policy,
        environment="canary",
        run_id=1234,
        run_attempt=1,
        run_workflow_ref="acme/api/.github/workflows/deploy.yml@refs/heads/main",
        run_ref="refs/heads/main",
        run_sha="0" * 40,
    )
    # Token access: a policy offering it, a GitHub token secret, and dev's token grant with
    # a token minted for a job (the request page and the admin list it).
    token_policy = AccessPolicyFactory(
        name="publish",
        environment_patterns=["release"],
        access_kinds=["token", "secret"],
        token_permissions={"contents": "read", "packages": "write"},
        approvals_required=0,
        secrets=[
            SecretDefinitionFactory(
                name="PACKAGES_TOKEN", kind="github_token", permissions={"packages": "write"}
            )
        ],
    )
    token_request = active_request(
        "dev", policy=token_policy, environment="release", access="token"
    )
    minted_token_record(
        grant=token_request.grant,
        purpose=MintedToken.Purpose.EXCHANGE,
        repository="acme/api",
        minted=InstallationToken(
            token="ghs_" + "0" * 36,
            expires_at=timezone.now() + timedelta(hours=1),
            permissions={"packages": "write"},
            repositories=("acme/api",),
        ),
    )
    api_token_create(user=dev, name="laptop")  # so that the tokens page offers to revoke it
    # A Slack link (the account's Slack page offers to remove it) and a code to link another.
    SlackLink.objects.create(user=dev, team_id="T0FUZZ", slack_user_id="U0DEV")
    SlackLinkCode.objects.create(
        digest=code_digest(SLACK_CODE),
        team_id="T0FUZZ",
        slack_user_id="U0NEW",
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    # A row for every model the admin shows, so that each change and delete page exists.
    Group.objects.create(name="auditors")
    EmailAddress.objects.create(user=dev, email="dev@example.com", primary=True, verified=True)
    # Not GitHub's: that app is configured in settings, and allauth refuses a second one.
    app = SocialApp.objects.create(provider="gitlab", name="GitLab", client_id="id", secret="s")
    account = SocialAccount.objects.create(user=dev, provider="github", uid="583231")
    SocialToken.objects.create(app=app, account=account, token="gho_token")
    OrgSecretTarget.objects.create(org="acme", name="NPM_PUBLISH_TOKEN")
    # An audit forwarding sink that failed (the dashboard card and its read-only admin page).
    AuditSink.objects.create(
        name="http", target="https://siem.example.com/ingest", cursor=3, failures=2,
        last_error="HTTP 503 <b>down</b>", last_error_at=timezone.now(),
    )
    DeploymentGate.objects.create(
        delivery_id="d-1",
        subject="deployment_protection_rule.requested installation=1 run=7 deployment=3 "
        "environment=production",
        repository="acme/api",
        environment="production",
        run_id=7,
        callback_url="https://api.github.test/repos/acme/api/actions/runs/7/"
        "deployment_protection_rule",
        installation_id=1,
        login="dev",
        deployment_id=3,
    )
    WorkflowRunDelivery.objects.create(
        delivery_id="d-2", repository="acme/api", run_id=7, run_attempt=1, conclusion="success"
    )
    # The beat admin: a task of someone else's beside Airlock's own (installed at migrate),
    # on a schedule of each kind.
    nightly = CrontabSchedule.objects.create(minute="0", hour="3")
    PeriodicTask.objects.create(name="nightly report", task="reports.nightly", crontab=nightly)
    SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4)
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    return World(
        users={"dev": dev, "root": root, "alice": approvers["alice"]},
        pending=pending,
        active=active,
        break_glass=break_glass,
    )


# --- the surfaces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surface:
    """One URL pattern, and how it is fuzzed: "form" POSTs the forms that `page` offers
    for it; "query" GETs it with arbitrary query strings. `user` is who is signed in."""

    route: str  # as the URLconf spells it
    kind: str
    user: str
    page: Callable[[World], str]
    ours: bool = True  # Airlock's own page: swept, and EXAMPLES generated (else FEW)
    params: tuple[str, ...] = ()  # query parameters the view reads that no link shows

    def __str__(self):
        return f"{self.kind} {self.route} as {self.user or 'nobody'}"


def theirs(route: str, kind: str, user: str, page) -> Surface:
    """A page of Django's or allauth's."""
    return Surface(route, kind, user, page, ours=False)


def _url(name, *args):
    return lambda world: reverse(name, args=[a(world) if callable(a) else a for a in args])


def _pending(world):
    return world.pending.pk


def _active(world):
    return world.active.pk


NEW = lambda world: reverse("requests_app:new") + (  # noqa: E731
    "?repository=acme/api&environment=production&access=secret"
)

PORTAL = [
    Surface("requests/", "query", "dev", _url("requests_app:my-requests"), params=("page",)),
    Surface("requests/new/", "query", "dev", NEW),
    Surface("requests/new/", "form", "dev", NEW),
    Surface("requests/<int:pk>/", "query", "dev", _url("requests_app:detail", _active)),
    Surface("requests/<int:pk>/cancel/", "form", "dev", _url("requests_app:detail", _pending)),
    Surface("requests/<int:pk>/extend/", "form", "dev", _url("requests_app:detail", _active)),
    Surface(
        "requests/<int:pk>/give-back/", "form", "dev", _url("requests_app:detail", _active)
    ),
    Surface("account/tokens/", "form", "dev", _url("api-tokens")),
    Surface("account/tokens/<int:pk>/revoke/", "form", "dev", _url("api-tokens")),
    Surface("account/slack/", "form", "dev", _url("slack-account")),
    Surface("account/slack/<int:pk>/remove/", "form", "dev", _url("slack-account")),
    Surface("account/slack/link/<str:code>/", "form", "dev", _url("slack-link", SLACK_CODE)),
    Surface("api/schema/", "query", "dev", _url("api:schema")),
    Surface("api/docs/", "query", "dev", _url("api:docs")),
]

# allauth's pages (Airlock's adapter decides who may sign in and sign up).
SIGN_IN = [
    theirs("accounts/login/", "form", "", _url("account_login")),
    theirs("accounts/login/", "query", "", _url("account_login")),
    theirs("accounts/logout/", "form", "dev", _url("account_logout")),
    theirs("accounts/signup/", "form", "", _url("account_signup")),
    theirs("accounts/reauthenticate/", "form", "dev", _url("account_reauthenticate")),
    theirs(
        "accounts/reauthenticate/code/",
        "form",
        "dev",
        _url("account_request_reauthentication_code"),
    ),
    theirs(
        "accounts/reauthenticate/code/confirm/",
        "form",
        "dev",
        _url("account_confirm_reauthentication_code"),
    ),
    theirs("accounts/email/", "form", "dev", _url("account_email")),
    theirs("accounts/password/change/", "form", "dev", _url("account_change_password")),
    theirs("accounts/password/set/", "form", "dev", _url("account_set_password")),
    theirs("accounts/password/reset/", "form", "", _url("account_reset_password")),
    theirs("accounts/login/code/confirm/", "form", "", _url("account_confirm_login_code")),
    theirs(
        "accounts/^confirm-email/(?P<key>[-:\\w]+)/$",
        "form",
        "",
        _url("account_confirm_email", "no-such-key"),
    ),
    theirs(
        "accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        "form",
        "",
        _url("account_reset_password_from_key", "1", "set-password"),
    ),
    theirs("accounts/3rdparty/signup/", "form", "", _url("socialaccount_signup")),
    theirs("accounts/3rdparty/", "form", "dev", _url("socialaccount_connections")),
    theirs("accounts/github/login/", "form", "", _url("account_login")),
    theirs("accounts/github/login/callback/", "query", "", _url("github_callback")),
]


def _admin_url(suffix: str, model_admin, world=None):
    opts = model_admin.model._meta
    name = f"admin:{opts.app_label}_{opts.model_name}_{suffix}"
    if suffix in ("changelist", "add"):
        return reverse(name)
    instance = model_admin.model._default_manager.order_by("pk").first()
    assert instance is not None, f"the fuzz world has no {opts.label}: add one to world()"
    return reverse(name, args=[instance.pk])


def admin_surfaces() -> list[Surface]:
    """The admin site's own pages, and every registered model's, as the registry lists
    them: what a new ModelAdmin adds is fuzzed without being named here."""
    surfaces = [
        theirs("admin/", "form", "root", _url("admin:index")),  # the logout button
        Surface("admin/login/", "form", "", _url("admin:login")),  # Airlock's login form
        theirs("admin/password_change/", "form", "root", _url("admin:password_change")),
        theirs("admin/autocomplete/", "query", "root", _url("admin:autocomplete")),
        theirs("admin/logout/", "form", "root", _url("admin:index")),
    ]
    for model, model_admin in admin.site._registry.items():
        base = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        ours = model._meta.app_label in AIRLOCK_APPS  # else Django's or allauth's model

        def page(suffix, model_admin=model_admin):
            return lambda world: _admin_url(suffix, model_admin)

        surfaces += [
            Surface(base, "query", "root", page("changelist"), ours),  # filters, search
            Surface(base, "form", "root", page("changelist"), ours),  # actions
            Surface(base + "add/", "form", "root", page("add"), ours),
            Surface(base + "<path:object_id>/change/", "form", "root", page("change"), ours),
            # Confirmations and a read-only page, Django's own: a few examples each.
            theirs(base + "<path:object_id>/delete/", "form", "root", page("delete")),
            theirs(base + "<path:object_id>/history/", "query", "root", page("history")),
        ]
    decision = lambda suffix: lambda world: reverse(  # noqa: E731
        f"admin:requests_app_accessrequest_{suffix}",
        args=[world.break_glass.pk if suffix == "review" else world.pending.pk],
    )
    surfaces += [
        Surface(
            f"admin/requests_app/accessrequest/<path:object_id>/{suffix}/",
            "form",
            "alice",
            decision(suffix),
        )
        for suffix in ("approve", "deny", "review")
    ]
    surfaces += [
        Surface(
            "admin/audit/auditevent/export/", "query", "root", _url("admin:audit_auditevent_export")
        ),
        Surface(
            "admin/auth/user/<id>/password/",
            "form",
            "root",
            lambda world: reverse("admin:auth_user_password_change", args=[world.users["dev"].pk]),
        ),
    ]
    return surfaces


AIRLOCK_APPS = {"requests_app", "grants", "audit"}
WEBHOOK_ROUTE = "github/webhook"

# URL patterns that take no input worth fuzzing, each with the reason.
NO_INPUT = {
    "": "redirects to the list of one's requests",
    "admin/password_change/done/": "a notice",
    "admin/jsi18n/": "the admin's JavaScript catalogue",
    "admin/r/<path:content_type_id>/<path:object_id>/": (
        "Django's view-on-site redirect: path ids only, a bad one is a 404"
    ),
    "admin/(?P<url>.*)$": "the admin's catch-all 404",
    "accounts/inactive/": "a notice",
    "accounts/confirm-email/": "a notice",
    "accounts/password/reset/key/done/": "a notice",
    "accounts/password/reset/done/": "a notice",
    "accounts/3rdparty/login/cancelled/": "a notice",
    "accounts/3rdparty/login/error/": "a notice",
    "accounts/social/login/cancelled/": "allauth's old address: a redirect",
    "accounts/social/login/error/": "allauth's old address: a redirect",
    "accounts/social/signup/": "allauth's old address: a redirect",
    "accounts/social/connections/": "allauth's old address: a redirect",
    "api/^.*$": "the API's catch-all JSON 404",
}
# Every registered model's bare object URL redirects to its change page.
ADMIN_OBJECT_REDIRECT = re.compile(r"admin/[a-z_]+/[a-z_]+/<path:object_id>/")
# The apps' model lists (one pattern naming every app with a registered model, in the
# registry's order): they take no input.
ADMIN_APP_INDEX = re.compile(r"admin/\^\(\?P<app_label>[a-z_|]+\)/\$")


def url_patterns(patterns=None, prefix=""):
    """Every URL pattern the portal serves, as its full route."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def api_schema_routes(client) -> set[str]:
    """The routes of the operations in the API's schema (fuzzed by schemathesis)."""
    schema = client.get("/api/schema/?format=json").json()
    routes = set()
    for path in schema["paths"]:
        routes.add(re.sub(r"\{(\w+)\}", r"<object_id:\1>", path.lstrip("/")))
    return routes


def test_every_url_pattern_is_fuzzed_or_said_to_take_no_input(client, world):
    fuzzed = {surface.route for surface in PORTAL + SIGN_IN + admin_surfaces()}
    fuzzed |= api_schema_routes(client) | {WEBHOOK_ROUTE} | SLACK_ROUTES
    served = set(url_patterns())
    unaccounted = sorted(
        route
        for route in served
        if route not in fuzzed and route not in NO_INPUT
        and not ADMIN_OBJECT_REDIRECT.fullmatch(route)
        and not ADMIN_APP_INDEX.fullmatch(route)
    )
    assert unaccounted == [], (
        "URL patterns nobody fuzzes: add each to a surface in this module (or, if it truly "
        "takes no input, to NO_INPUT with the reason)"
    )
    assert sorted((fuzzed | set(NO_INPUT)) - served) == [], "listed, but no longer served"


# --- fuzzing ------------------------------------------------------------------------------------


def _route_of(path: str) -> str | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.route


def _send(client, world, surface, method, path, data):
    """One request, as `surface.user`, in a savepoint rolled back afterwards. The cache is
    emptied first: allauth's rate limits would otherwise answer 429 before the form."""
    cache.clear()
    try:
        with transaction.atomic():
            world.login(client, surface.user)
            response = getattr(client, method)(path, data)
            transaction.set_rollback(True)
    except Exception as failure:  # the test client raises what the view raised
        failure.add_note(f"{method.upper()} {path} {data!r}")
        raise
    assert response.status_code < 500, f"{surface}: {method} {path} {data!r}"


def fuzz(client, world, surface: Surface):
    world.login(client, surface.user)
    url = surface.page(world)
    response = client.get(url)
    html = response.content.decode() if "html" in response.get("Content-Type", "") else ""
    page = read_page(url, html)
    path, _, query = url.partition("?")
    # Where examples start: (action, what a browser sends, the fields to change).
    if surface.kind == "query":
        baseline = parse_qs(query)
        names = page.link_parameters | set(baseline) | set(surface.params)
        names |= {name for form in page.forms if form.method == "get" for name in form.offered}
        starts = [(path, baseline, sorted(names))]
    else:
        # A page that refuses this user offers no form: POST anyway; it must refuse that too.
        forms = [
            form
            for form in page.forms
            if form.method == "post" and _route_of(form.action) == surface.route
        ] or [Form(method="post", action=path)]
        starts = []
        for form in forms:
            baseline = {k: v for k, v in form.values.items() if k != "csrfmiddlewaretoken"}
            names = sorted(set(form.offered) - {"csrfmiddlewaretoken"})
            starts.append((form.action, baseline, names))
            starts += [(form.action, with_value(baseline, *b), names) for b in form.buttons]
    # Swept: the first form's fields (the page's main form), with no button pressed.
    explicit = sweep(*starts[0]) if surface.ours else []
    requests = st.sampled_from(starts).flatmap(
        lambda start: st.tuples(st.just(start[0]), changed(start[1], start[2]))
    )
    method = "get" if surface.kind == "query" else "post"

    def send(request):
        action, data = request
        _send(client, world, surface, method, action, data)

    test = given(request=requests)(send)
    for request in explicit:
        test = example(request=request)(test)
    test = settings(FUZZ, max_examples=EXAMPLES if surface.ours else FEW)(test)
    try:
        test()
    except Exception as failure:
        failure.add_note(f"while fuzzing {surface}")
        raise


def test_no_portal_or_sign_in_page_fails_on_any_input(client, world):
    for surface in PORTAL + SIGN_IN:
        fuzz(client, world, surface)


def test_no_admin_page_fails_on_any_input(client, world):
    for surface in admin_surfaces():
        fuzz(client, world, surface)


# --- the webhook --------------------------------------------------------------------------------

SECRET = "webhook-s3cret"
# Integers, and those at the edges of the columns that keep them.
INTEGERS = st.one_of(
    st.integers(),
    st.integers(2**63 - 2, 2**63 + 1),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**64]),
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    INTEGERS,
    st.floats(allow_nan=False),
    TEXT,
    st.sampled_from(NASTY),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PAYLOAD_PATHS = [
    ("action",),
    ("environment",),
    ("event",),
    ("ref",),
    ("sha",),
    ("deployment_callback_url",),
    ("deployment",),
    ("deployment", "id"),
    ("installation",),
    ("installation", "id"),
    ("repository",),
    ("repository", "full_name"),
    ("sender",),
    ("sender", "login"),
    ("sender", "id"),
]
ID_PATHS = [("deployment", "id"), ("installation", "id"), ("sender", "id")]


def _replace(payload, path, value):
    node = payload
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@pytest.fixture
def signed_webhook(github, settings):
    settings.GITHUB_API_URL = github.api_url
    settings.AIRLOCK_GITHUB_WEBHOOK_SECRET = SECRET
    settings.GITHUB_APP_ID = "4242"
    settings.GITHUB_APP_PRIVATE_KEY = "a key: the fuzz never gets as far as posting"
    github.add_repo("acme/api")
    github.add_user("dave")
    github.add_environment("acme/api", "production")
    return github


WEBHOOK_FUZZ = settings(FUZZ, max_examples=80)


def _deliver(client, event: str, body: bytes, delivery: str):
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    with transaction.atomic():
        response = client.post(
            reverse("github-webhook"), data=body, content_type="application/json", headers=headers
        )
        transaction.set_rollback(True)
    assert response.status_code < 500, (event, delivery, body[:500])


def test_no_signed_deployment_protection_rule_fails(client, signed_webhook):
    github = signed_webhook
    active_request("dave")  # so that a payload that gets through is approved, and posted

    @WEBHOOK_FUZZ
    @given(
        run_id=st.one_of(st.integers(1, 2**63 - 1), st.integers(2**63 - 1, 10**19 - 1)),
        changes=st.lists(
            st.tuples(st.sampled_from(ID_PATHS), INTEGERS)
            | st.tuples(st.sampled_from(PAYLOAD_PATHS), JSON_VALUES),
            max_size=3,
        ),
    )
    def example(run_id, changes):
        payload = github.deployment_protection_rule_event(
            "acme/api", "production", run_id=run_id, login="dave", installation_id=1
        )
        for path, value in changes:
            _replace(payload, path, value)
        _deliver(client, "deployment_protection_rule", json.dumps(payload).encode(), str(run_id))

    example()


def test_no_signed_delivery_of_anything_else_fails(client, signed_webhook):
    bodies = st.one_of(
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        st.sampled_from(NASTY).map(str.encode),  # not JSON, or JSON no parser survives
    )

    @WEBHOOK_FUZZ
    @given(
        event=st.one_of(
            st.sampled_from(["deployment_protection_rule", "workflow_run", "ping"]), TEXT
        ),
        body=bodies,
        delivery=st.one_of(st.uuids().map(str), TEXT),
    )
    def example_(event, body, delivery):
        _deliver(client, event, body, delivery)

    for value in NASTY:  # each as the whole body of the event Airlock acts on
        example_ = example(
            event="deployment_protection_rule", body=value.encode(), delivery="d-1"
        )(example_)
    example_()


# --- Slack ----------------------------------------------------------------------------------

_slack_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


def _slack_post(client, route: str, body: bytes):
    timestamp = str(int(timezone.now().timestamp()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    with transaction.atomic():
        response = client.post(
            "/" + route,
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
        transaction.set_rollback(True)
    assert response.status_code < 500, (route, body[:500])


@pytest.fixture
def signed_slack(settings):
    settings.AIRLOCK_SLACK_SIGNING_SECRET = SLACK_SECRET
    settings.SLACK_API_URL = "http://127.0.0.1:9/api"  # nothing listens: a refusal is logged


@settings(FUZZ, max_examples=60)
@given(
    kind=st.sampled_from(["block_actions", "view_submission"]) | _slack_json,
    actions=_slack_json
    | st.lists(
        st.fixed_dictionaries(
            {
                "action_id": st.sampled_from(["airlock_approve", "airlock_deny"]),
                "value": _slack_json,
            }
        ),
        max_size=2,
    ),
    rest=st.dictionaries(
        st.sampled_from(["user", "team", "channel", "view", "trigger_id"]), _slack_json
    ),
    raw=st.none() | st.binary(max_size=200),
)
def test_no_signed_slack_interaction_fails(client, world, signed_slack, kind, actions, rest, raw):
    payload = {"type": kind, "actions": actions, "user": {"id": "U0DEV"}, **rest}
    body = raw if raw is not None else urlencode({"payload": json.dumps(payload)}).encode()
    _slack_post(client, "slack/interactions", body)


@settings(FUZZ, max_examples=40)
@given(
    form=st.dictionaries(
        st.sampled_from(["text", "team_id", "user_id", "command"]) | st.text(max_size=8),
        st.text(max_size=40),
    ),
    raw=st.none() | st.binary(max_size=200),
)
def test_no_signed_slack_command_fails(client, world, signed_slack, form, raw):
    _slack_post(client, "slack/commands", raw if raw is not None else urlencode(form).encode())
