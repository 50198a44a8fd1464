"""Airlock settings: one module, every value read from the environment (see README)."""

import re
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from core import metrics
from core.env import (
    env_bool,
    env_cache,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
    load_development_env_file,
    require_server_url,
)
from portal.error_tracking import error_tracking_init
from portal.logging import log_format_and_level_from_env, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
# `make run`'s development settings, for commands run beside it; never read in production.
load_development_env_file(BASE_DIR / ".env")
DATA_DIR = Path(env_str("AIRLOCK_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "airlock-insecure-development-key-do-not-deploy"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- HTTPS and proxies ----------------------------------------------------------------------
# With DEBUG off everything defaults to HTTPS only; each can be turned off for a deployment
# that knows better (README "Deployment"). `manage.py check --deploy` passes on the defaults.
# Behind a TLS-terminating proxy, trust its X-Forwarded-Proto and X-Forwarded-Host. Only
# then: a client that reaches gunicorn directly could otherwise claim to be on HTTPS.
AIRLOCK_BEHIND_PROXY = env_bool("AIRLOCK_BEHIND_PROXY", False)
if AIRLOCK_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# /healthz is exempt: portal.middleware answers it before this redirect.
SECURE_SSL_REDIRECT = env_bool("AIRLOCK_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("AIRLOCK_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env_int("AIRLOCK_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("AIRLOCK_HSTS_INCLUDE_SUBDOMAINS", True)
# The preload flag only allows submitting the domain to browsers' preload lists (which
# requires the apex domain); turn it off where someone else decides that.
SECURE_HSTS_PRELOAD = env_bool("AIRLOCK_HSTS_PRELOAD", True)

# --- The cache -------------------------------------------------------------------------------
# Brute-force counts, API request rates and the grant check's audit marks live here
# (portal/ratelimit.py, grants/check/). Unset, each process keeps its own in memory, so
# `make run` needs nothing: limits then count per process. With several processes (gunicorn
# workers) point it at Redis, redis://host:6379/1, so that they all count together.
CACHES = {"default": env_cache("CACHE_URL")}

# The public URL people and workflows reach the portal at: links in messages, and the
# default audience for Actions OIDC tokens.
AIRLOCK_BASE_URL = env_url("AIRLOCK_BASE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "portal.apps.AirlockAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "csp",
    "audit",
    "integrations.github.apps.GitHubIntegrationConfig",
    "requests_app",
    "grants",
]

MIDDLEWARE = [
    # First: every later log line carries the request id, and /healthz is answered before
    # host validation and the HTTPS redirect (see portal/middleware.py).
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.HealthCheckMiddleware",
    "portal.metrics_view.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which reads the form data this refuses NUL in.
    "portal.middleware.RefuseNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.airlock",
            ],
        },
    },
]


def _database(url: str) -> dict:
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj-database-url raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock when a transaction starts, so two writers queue
        # instead of one failing with "database is locked" halfway through.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # Django turns psycopg's prepared statements off for the sake of connection
        # poolers. Its own queries are bound on the client and never prepared either way;
        # this lets the grant check's one query (grants/check/, prepared on its first run by
        # core/statement.py) be planned once per connection instead of on every call. Off
        # behind a PgBouncer in transaction mode older than 1.21, which cannot carry prepared
        # statements.
        prepared = env_bool("DATABASE_PREPARED_STATEMENTS", True)
        config.setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5 if prepared else None)
    else:
        raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
    return config


DATABASES = {
    "default": _database(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'airlock.sqlite3'}"
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "requests_app:my-requests"
LOGOUT_REDIRECT_URL = "account_login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["portal.formats"]

STATIC_URL = "/static/"
# Where collectstatic puts the files WhiteNoise serves (the image collects them at build).
STATIC_ROOT = Path(env_str("AIRLOCK_STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- GitHub -------------------------------------------------------------------------------
GITHUB_URL = env_url("GITHUB_URL", "https://github.com")
GITHUB_API_URL = env_url("GITHUB_API_URL", "https://api.github.com")
GITHUB_TOKEN = env_str("GITHUB_TOKEN")
GITHUB_APP_ID = env_str("GITHUB_APP_ID")
GITHUB_APP_PRIVATE_KEY = env_str("GITHUB_APP_PRIVATE_KEY").replace("\\n", "\n")
GITHUB_APP_INSTALLATION_ID = env_str("GITHUB_APP_INSTALLATION_ID")
_app_values = [GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY, GITHUB_APP_INSTALLATION_ID]
if any(_app_values) and not all(_app_values):
    raise ImproperlyConfigured(
        "GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_APP_INSTALLATION_ID go together; "
        "set all three or none"
    )
if GITHUB_APP_INSTALLATION_ID and not GITHUB_APP_INSTALLATION_ID.isdigit():
    raise ImproperlyConfigured("GITHUB_APP_INSTALLATION_ID must be a number")
# No credentials means dry-run: Airlock works out and audits what it would do.
AIRLOCK_DRY_RUN = not (GITHUB_TOKEN or all(_app_values))
# The GitHub App's webhook secret: POST /github/webhook (deployment protection rule)
# verifies X-Hub-Signature-256 with it, and answers 503 while it is unset.
AIRLOCK_GITHUB_WEBHOOK_SECRET = env_str("AIRLOCK_GITHUB_WEBHOOK_SECRET")

GITHUB_OAUTH_CLIENT_ID = env_str("GITHUB_OAUTH_CLIENT_ID")
GITHUB_OAUTH_CLIENT_SECRET = env_str("GITHUB_OAUTH_CLIENT_SECRET")
if bool(GITHUB_OAUTH_CLIENT_ID) != bool(GITHUB_OAUTH_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "GITHUB_OAUTH_CLIENT_ID and GITHUB_OAUTH_CLIENT_SECRET go together; set both or none"
    )
AIRLOCK_GITHUB_SSO = bool(GITHUB_OAUTH_CLIENT_ID)
# Optional: only active members of this organization may sign in with GitHub.
AIRLOCK_GITHUB_ORG = env_str("AIRLOCK_GITHUB_ORG")

GITHUB_OIDC_ISSUER = env_url("GITHUB_OIDC_ISSUER", "https://token.actions.githubusercontent.com")
AIRLOCK_OIDC_AUDIENCE = env_str("AIRLOCK_OIDC_AUDIENCE", AIRLOCK_BASE_URL)

# --- Content-Security-Policy (django-csp) ------------------------------------------------------
# On every page. Scripts and styles come from the portal itself (the admin's, the pages',
# Swagger UI's from drf-spectacular-sidecar); the few inline ones, in the API docs' page,
# carry the request's nonce (templates/drf_spectacular/swagger_ui.html). No 'unsafe-inline',
# no 'unsafe-eval'. Forms post to the portal, and the GitHub sign-in form's redirect goes
# on to GitHub's authorize page, which form-action must allow. (Django's DEBUG error pages,
# which need inline code, are left without the header by django-csp.)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF, GITHUB_URL],
    }
}

# --- Sign-in (django-allauth) ---------------------------------------------------------------
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "requests_app.signin.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "requests_app.signin.SocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_QUERY_EMAIL = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS = {
    "github": {
        # allauth derives authorize, token and /user URLs from this (GHE layout: /api/v3).
        "GITHUB_URL": GITHUB_URL,
        "SCOPE": ["read:user", "user:email"] + (["read:org"] if AIRLOCK_GITHUB_ORG else []),
        "APPS": (
            [{"client_id": GITHUB_OAUTH_CLIENT_ID, "secret": GITHUB_OAUTH_CLIENT_SECRET}]
            if AIRLOCK_GITHUB_SSO
            else []
        ),
    }
}

# --- Brute-force limits (portal/ratelimit.py) -------------------------------------------------
# Failed password sign-ins (the admin's and the portal's) are counted per account and per
# client address, and unknown API tokens per address, in windows of AIRLOCK_LOCKOUT_SECONDS.
# At a limit the account or address is refused, the right password included, until the
# window ends. An address is shared by everyone behind one NAT: its limits are higher.
AIRLOCK_LOCKOUT_SECONDS = env_int("AIRLOCK_LOCKOUT_SECONDS", 900, minimum=1)
AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT = env_int(
    "AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT", 10, minimum=1
)
AIRLOCK_SIGN_IN_FAILURES_PER_ADDRESS = env_int(
    "AIRLOCK_SIGN_IN_FAILURES_PER_ADDRESS", 50, minimum=1
)
AIRLOCK_API_TOKEN_FAILURES_PER_ADDRESS = env_int(
    "AIRLOCK_API_TOKEN_FAILURES_PER_ADDRESS", 30, minimum=1
)
# allauth counts failed sign-ins too, by its own rules and message; the count above is the
# one that decides, for both sign-in pages alike. allauth's other limits stay, and its
# client address is ours (requests_app/signin.py).
ACCOUNT_RATE_LIMITS = {"login_failed": None}

# --- Secrets at rest ------------------------------------------------------------------------
# Fernet keys (comma-separated, newest first, so keys can be rotated). Without one, a key is
# derived from SECRET_KEY, which is fine for development only.
AIRLOCK_ENCRYPTION_KEYS = env_list("AIRLOCK_ENCRYPTION_KEYS")

# --- Audit log -------------------------------------------------------------------------------
# Keys of the audit log's hash chain (comma-separated secrets, 32 characters or more, newest
# first, so keys can be rotated), never stored in the database. Without one, a key derived
# from SECRET_KEY chains the log (audit/keys.py); `check --deploy` warns.
AIRLOCK_AUDIT_KEYS = env_list("AIRLOCK_AUDIT_KEYS")

# --- Celery ----------------------------------------------------------------------------------
# The default broker keeps its queue in a SQLite file, so `make run` needs no server.
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
# Run exactly one beat (compose does). Two would each send every sweep: harmless, since
# the tasks are idempotent, but double the work. The DatabaseScheduler keeps the schedule
# in PostgreSQL (grants/schedule.py installs it).
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Save each entry's last_run_at as soon as beat sends it (default: every 3 minutes), so
# /healthz and beat's health check see a sweep interval, not a sync interval.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers a message nobody acknowledged within the visibility timeout, and with
# acks_late a message is acknowledged only when its task ends. It must therefore outlast
# the longest ETA plus the task time limit, or a task would run twice. The engine never
# schedules further ahead than two sweep intervals (grants/reconciler/expiry.py: later expiries
# are scheduled by a later sweep), and tasks stop at CELERY_TASK_TIME_LIMIT, so an hour is
# ample; a worker that died mid-task has its message delivered again within that hour,
# and the sweep covers the gap long before. (Only brokers that have a visibility timeout
# take the option: the SQLite one hands its options to SQLAlchemy, which refuses it.)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sentinel://", "sqs://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    if not CELERY_BROKER_URL.startswith("sqs://"):
        # Redis: take the queues in the order below, not in turn (see CELERY_TASK_QUEUES).
        CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = "priority"
# When the broker connection drops, its unacknowledged messages go back to the queue and
# another worker takes them: stop our running copies instead of finishing them twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Task processes: two suit a 2-core host shared with web and beat. The work mostly waits
# on GitHub, so a bigger host can take more than one per core.
CELERY_WORKER_CONCURRENCY = env_int("AIRLOCK_WORKER_CONCURRENCY", 2, minimum=1)
# A fresh process now and then bounds what a slow leak can cost.
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
# Worker and beat log through LOGGING below (JSON, request and task ids, secrets masked)
# instead of replacing the root logger's handlers with Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Two queues, which a worker takes in this order (strictly, on Redis): the grant engine's,
# which also carries the sweep that backs everything up, then messages to people. When
# GitHub comes back after an outage, hundreds of notifications are due at once; in one
# queue with the engine they held expiries back by more than a sweep interval (the fault
# soak in benchmarks/). A worker consumes both unless told otherwise (celery -Q).
CELERY_TASK_QUEUES = (Queue("celery"), Queue("airlock.notify"))
CELERY_TASK_ROUTES = {
    f"requests_app.tasks.{name}": {"queue": "airlock.notify"}
    for name in (
        "send_notification", "send_email", "post_to_slack", "remind_expiring", "slack_card_sync",
        "slack_cards_sweep", "send_audit_sink_alert"
    )
}
# Audit forwarding can spend a round's budget on a slow SIEM: it waits behind the engine too.
CELERY_TASK_ROUTES["audit.tasks.forward_audit_log"] = {"queue": "airlock.notify"}
AIRLOCK_SWEEP_SECONDS = env_int("AIRLOCK_SWEEP_SECONDS", 15, minimum=1)
# The grant engine (grants/): how long one GitHub call may keep retrying transient errors,
# the backoff between tries, the reconciler's per-target lease, and how often a grant that
# cannot be applied is tried again before it fails. Revocations are retried for ever.
AIRLOCK_GITHUB_TIMEOUT_SECONDS = env_int("AIRLOCK_GITHUB_TIMEOUT_SECONDS", 10, minimum=1)
AIRLOCK_GITHUB_RETRY_MAX_SECONDS = env_int("AIRLOCK_GITHUB_RETRY_MAX_SECONDS", 60, minimum=0)
AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS = env_int("AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS", 6, minimum=1)
AIRLOCK_GITHUB_RETRY_BASE_SECONDS = env_int("AIRLOCK_GITHUB_RETRY_BASE_SECONDS", 1, minimum=0)
AIRLOCK_GITHUB_RETRY_CAP_SECONDS = env_int("AIRLOCK_GITHUB_RETRY_CAP_SECONDS", 20, minimum=0)
AIRLOCK_LEASE_SECONDS = env_int("AIRLOCK_LEASE_SECONDS", 30, minimum=5)
AIRLOCK_GRANT_MAX_ATTEMPTS = env_int("AIRLOCK_GRANT_MAX_ATTEMPTS", 8, minimum=1)
AIRLOCK_GRANT_RETRY_BASE_SECONDS = env_int("AIRLOCK_GRANT_RETRY_BASE_SECONDS", 15, minimum=1)
AIRLOCK_DRIFT_CHECK_SECONDS = env_int("AIRLOCK_DRIFT_CHECK_SECONDS", 3600, minimum=60)
# GitHub's hourly budget (integrations/github/budget.py): below LOW percent of the quota
# left, the drift check and the team sync wait for the next window; below CRITICAL percent,
# grants wait too and only revocations spend what is left.
AIRLOCK_GITHUB_BUDGET_LOW_PERCENT = env_int("AIRLOCK_GITHUB_BUDGET_LOW_PERCENT", 25, minimum=0)
AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT = env_int(
    "AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT", 10, minimum=0
)
if AIRLOCK_GITHUB_BUDGET_LOW_PERCENT > 100:
    raise ImproperlyConfigured(
        "AIRLOCK_GITHUB_BUDGET_LOW_PERCENT must be a percentage (0 to 100), got "
        f"{AIRLOCK_GITHUB_BUDGET_LOW_PERCENT}"
    )
if AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT > AIRLOCK_GITHUB_BUDGET_LOW_PERCENT:
    raise ImproperlyConfigured(
        "AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT must not be above "
        f"AIRLOCK_GITHUB_BUDGET_LOW_PERCENT ({AIRLOCK_GITHUB_BUDGET_LOW_PERCENT}), got "
        f"{AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT}"
    )

# --- API -------------------------------------------------------------------------------------
# Bearer tokens (GitHub Actions OIDC or personal API tokens) first: its challenge makes a
# missing credential a 401. Browsers use the session, with DRF's CSRF check.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # OIDC callers are not people: they may only call the grant check, which says so.
    "DEFAULT_PERMISSION_CLASSES": ["portal.authentication.IsPortalUser"],
    # JSON only, errors included; people read the API at /api/docs/.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.JSONParser"],  # bounded nesting
    "EXCEPTION_HANDLER": "portal.api_errors.api_exception_handler",
    # Requests per caller and minute (portal/ratelimit.py): the grant check per workflow
    # repository (OIDC) or person, sized for a busy CI; the rest of the API per person.
    # Beyond them: 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["portal.ratelimit.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api": env_rate("AIRLOCK_API_RATE", "1200/min"),
        "check": env_rate("AIRLOCK_CHECK_RATE", "6000/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Airlock API",
    "DESCRIPTION": (
        "Just-in-time access to GitHub environments. Authenticate with "
        "`Authorization: Bearer <token>`: a personal API token, or a GitHub Actions OIDC "
        "token (for the grant check, its own run's requests and release, and the token "
        "exchange). Errors are `{\"message\": ..., \"errors\": {field: "
        "[...]}}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from the drf-spectacular-sidecar package, not a CDN: the
    # docs work where the portal has no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    # No badge from validator.swagger.io: the docs make no request outside the portal
    # (and the Content-Security-Policy would refuse the image).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {
        "object_id": {"type": "integer", "minimum": 0, "maximum": 999999999999999999}
    },
}
INSTALLED_APPS.append("drf_spectacular_sidecar")

# --- Email and notifications ----------------------------------------------------------------
# Notifications (requests_app/notifications.py) are sent by the worker, never by a web
# request. With EMAIL_HOST set they go out over SMTP; otherwise to the console (the log).
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "EMAIL_USE_TLS (STARTTLS, port 587) and EMAIL_USE_SSL (port 465) exclude each other; "
        "set one of them to false"
    )
EMAIL_TIMEOUT = 20
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "airlock@localhost")
# Optional Slack incoming webhook: approvers' and admins' events are posted there too.
AIRLOCK_SLACK_WEBHOOK_URL = env_str("AIRLOCK_SLACK_WEBHOOK_URL").strip()
if AIRLOCK_SLACK_WEBHOOK_URL and not AIRLOCK_SLACK_WEBHOOK_URL.startswith(
    ("https://", "http://")
):
    raise ImproperlyConfigured("AIRLOCK_SLACK_WEBHOOK_URL must be an http(s) URL")
# Slack approvals (requests_app.slack): the app's bot token posts and updates the request
# cards in approver groups' channels; the signing secret authenticates Slack's calls to
# POST /slack/interactions and /slack/commands. SLACK_API_URL is Slack's Web API (tests
# point it at a local stand-in). Without the token, no cards are posted.
AIRLOCK_SLACK_BOT_TOKEN = env_str("AIRLOCK_SLACK_BOT_TOKEN").strip()
AIRLOCK_SLACK_SIGNING_SECRET = env_str("AIRLOCK_SLACK_SIGNING_SECRET").strip()
if AIRLOCK_SLACK_BOT_TOKEN and not AIRLOCK_SLACK_BOT_TOKEN.startswith("xoxb-"):
    # A user token (xoxp-) would post as a person; a webhook URL belongs to
    # AIRLOCK_SLACK_WEBHOOK_URL.
    raise ImproperlyConfigured(
        "AIRLOCK_SLACK_BOT_TOKEN must be the Slack app's bot token (xoxb-..., under OAuth & "
        "Permissions), not a user token (xoxp-...) or an incoming webhook URL"
    )
if bool(AIRLOCK_SLACK_BOT_TOKEN) != bool(AIRLOCK_SLACK_SIGNING_SECRET):
    # Cards whose clicks cannot be verified, or a verified command with no cards: half an
    # integration that looks whole.
    raise ImproperlyConfigured(
        "AIRLOCK_SLACK_BOT_TOKEN and AIRLOCK_SLACK_SIGNING_SECRET go together; set both or "
        "none"
    )
SLACK_API_URL = env_url("SLACK_API_URL", "https://slack.com/api")
# Audit forwarding (audit/forwarding.py, README "Audit forwarding"): the audit log streamed
# to a SIEM by the worker and beat, at least once and in seq order, each sink with its own
# cursor in the database. An HTTP sink (JSON Lines, or Splunk HEC events) and a syslog sink
# (RFC 5424 over TCP or TLS, octet-counted); either, both or neither.
# Credentials in it (https://user:pass@host/) are allowed, for receivers that take Basic
# auth, and never shown (integrations.siem.http.shown_target).
AIRLOCK_AUDIT_STREAM_URL = require_server_url(
    "AIRLOCK_AUDIT_STREAM_URL",
    env_str("AIRLOCK_AUDIT_STREAM_URL").strip(),
    schemes=("https", "http"),
)
AIRLOCK_AUDIT_STREAM_TOKEN = env_str("AIRLOCK_AUDIT_STREAM_TOKEN").strip()
AIRLOCK_AUDIT_STREAM_FORMAT = env_str("AIRLOCK_AUDIT_STREAM_FORMAT", "json-lines").strip()
if AIRLOCK_AUDIT_STREAM_FORMAT not in ("json-lines", "splunk-hec"):
    raise ImproperlyConfigured(
        "AIRLOCK_AUDIT_STREAM_FORMAT must be json-lines or splunk-hec, got "
        f"{AIRLOCK_AUDIT_STREAM_FORMAT!r}"
    )
# The scheme word before the token in the Authorization header: the contract's Bearer, or
# Splunk for a bare Splunk HEC, which documents `Authorization: Splunk <token>`.
AIRLOCK_AUDIT_STREAM_AUTH_SCHEME = (
    env_str("AIRLOCK_AUDIT_STREAM_AUTH_SCHEME").strip() or "Bearer"
)
# RFC 9110's auth-scheme is a token: one word of these characters, no space or separator.
if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", AIRLOCK_AUDIT_STREAM_AUTH_SCHEME):
    raise ImproperlyConfigured(
        "AIRLOCK_AUDIT_STREAM_AUTH_SCHEME must be one word such as Bearer or Splunk, got "
        f"{AIRLOCK_AUDIT_STREAM_AUTH_SCHEME!r}"
    )
AIRLOCK_AUDIT_SYSLOG_URL = require_server_url(
    "AIRLOCK_AUDIT_SYSLOG_URL",
    env_str("AIRLOCK_AUDIT_SYSLOG_URL").strip(),
    schemes=("tcp", "tls"),
    host_and_port_only=True,
)
# The CA bundle a tls:// syslog receiver's certificate is checked against (default: the
# system's).
AIRLOCK_AUDIT_SYSLOG_CA_FILE = env_str("AIRLOCK_AUDIT_SYSLOG_CA_FILE").strip()
if AIRLOCK_AUDIT_SYSLOG_CA_FILE and not Path(AIRLOCK_AUDIT_SYSLOG_CA_FILE).is_file():
    raise ImproperlyConfigured(
        f"AIRLOCK_AUDIT_SYSLOG_CA_FILE names no file: {AIRLOCK_AUDIT_SYSLOG_CA_FILE!r}"
    )
# How often beat starts a delivery round, how many events go in one batch, how long a sink
# may take to accept one, and after how many minutes of an unaccepted backlog platform
# admins are told.
AIRLOCK_AUDIT_FORWARD_SECONDS = env_int("AIRLOCK_AUDIT_FORWARD_SECONDS", 5, minimum=1)
AIRLOCK_AUDIT_FORWARD_BATCH = env_int("AIRLOCK_AUDIT_FORWARD_BATCH", 500, minimum=1)
if AIRLOCK_AUDIT_FORWARD_BATCH > 10000:
    raise ImproperlyConfigured(
        f"AIRLOCK_AUDIT_FORWARD_BATCH must be at most 10000, got {AIRLOCK_AUDIT_FORWARD_BATCH}"
    )
AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS = env_int(
    "AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS", 10, minimum=1
)
AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES = env_int("AIRLOCK_AUDIT_FORWARD_ALERT_MINUTES", 15, minimum=1)
# Requesters are reminded this many minutes before their access ends (0: never).
AIRLOCK_EXPIRY_REMINDER_MINUTES = env_int("AIRLOCK_EXPIRY_REMINDER_MINUTES", 10, minimum=0)
# Who hears about overdue revocations and audit forwarding that fell behind, besides staff
# users with an email (comma-separated).
AIRLOCK_ADMIN_EMAILS = env_list("AIRLOCK_ADMIN_EMAILS")
# How often approver groups with a github_team are synced from GitHub.
AIRLOCK_TEAM_SYNC_SECONDS = env_int("AIRLOCK_TEAM_SYNC_SECONDS", 900, minimum=60)

# --- Logging ---------------------------------------------------------------------------------
# One JSON object per line (text in DEBUG), with request and task ids; secrets are masked
# by a filter on the only handler (portal/logging.py).
LOG_FORMAT, LOG_LEVEL = log_format_and_level_from_env()
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# --- Metrics and error tracking -------------------------------------------------------------
# GET /metrics (portal/metrics_view.py) needs `Authorization: Bearer <this token>`; empty
# turns it off (404).
AIRLOCK_METRICS_TOKEN = env_str("AIRLOCK_METRICS_TOKEN").strip()
if AIRLOCK_METRICS_TOKEN and len(AIRLOCK_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "AIRLOCK_METRICS_TOKEN must be at least 16 characters (or empty: /metrics off)"
    )
# Where every process writes its metrics for /metrics to add up (checked by core.metrics
# when it is imported, above); unset: each process counts alone.
PROMETHEUS_MULTIPROC_DIR = metrics.MULTIPROCESS_DIR
# Optional Sentry (portal/error_tracking.py), events masked like the logs.
SENTRY_DSN = env_str("SENTRY_DSN").strip()
if SENTRY_DSN:
    error_tracking_init(dsn=SENTRY_DSN)
