"""Production settings, loaded in a fresh process from a production-like environment (the
one .env.example documents), the way the image loads them."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_env(tmp_path):
    """.env.example's values with a real secret key, a local database and metrics folder,
    and nothing from the test run's own environment (test settings set DEBUG, for one)."""
    example = (ROOT / ".env.example").read_text()
    env = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", example, re.MULTILINE))
    (tmp_path / "metrics").mkdir()
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        AIRLOCK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        # The compose volume's mount point, here a folder of the test's own.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        DJANGO_SETTINGS_MODULE="portal.settings",
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        HOME=str(tmp_path),
    )
    return env


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def read_settings(env: dict, *names: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_passes_with_no_warnings_on_the_documented_production_environment(
    production_env,
):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_would_catch_an_insecure_setting(production_env):
    # The same check fails once a protection is turned off, so the test above is not
    # passing for want of looking.
    production_env["AIRLOCK_SECURE_COOKIES"] = "false"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "security.W012" in result.stderr


def run_check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_warns_when_secret_values_are_encrypted_with_a_key_from_secret_key(
    production_env,
):
    production_env.pop("AIRLOCK_ENCRYPTION_KEYS")
    result = run_check_deploy(production_env)
    assert result.returncode != 0
    assert "airlock.W001" in result.stderr
    assert "AIRLOCK_ENCRYPTION_KEYS" in result.stderr


def test_check_deploy_refuses_an_encryption_key_that_is_no_fernet_key(production_env):
    production_env["AIRLOCK_ENCRYPTION_KEYS"] = f"{Fernet.generate_key().decode()},not-a-key"
    result = run_check_deploy(production_env)
    assert result.returncode != 0
    assert "airlock.E001" in result.stderr
    assert "key 2 of AIRLOCK_ENCRYPTION_KEYS" in result.stderr


CSP_OF = """
import sys, django
django.setup()
from django.test import Client
response = Client().get(sys.argv[1], secure=True, HTTP_HOST="airlock.example.com")
print(response.status_code, response.get("Content-Security-Policy", "(none)"))
"""


def test_with_debug_off_pages_carry_a_content_security_policy(production_env):
    # A page that needs neither the database nor collected static files; the policy itself,
    # on the pages people use, is tested in tests/portal/test_content_security_policy.py and
    # in a browser (tests/browser/test_content_security_policy.py).
    result = run_python(CSP_OF.replace("sys.argv[1]", repr("/no-such-page/")), production_env)
    assert result.returncode == 0, result.stderr
    status, policy = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "404"
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["form-action"] == ["'self'", "https://github.com"]


def test_production_defaults_are_https_only_and_json_logs(production_env):
    for name in ("AIRLOCK_BEHIND_PROXY", "LOG_FORMAT"):
        production_env.pop(name, None)
    values = read_settings(
        production_env,
        "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_PROXY_SSL_HEADER",
        "USE_X_FORWARDED_HOST", "LOG_FORMAT",
    )
    assert values == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        # Forwarded headers are not trusted unless AIRLOCK_BEHIND_PROXY says a proxy sets them.
        "SECURE_PROXY_SSL_HEADER": None,
        "USE_X_FORWARDED_HOST": False,
        "LOG_FORMAT": "json",
    }


def test_behind_a_proxy_its_forwarded_scheme_and_host_are_trusted(production_env):
    production_env["AIRLOCK_BEHIND_PROXY"] = "true"
    values = read_settings(production_env, "SECURE_PROXY_SSL_HEADER", "USE_X_FORWARDED_HOST")
    assert values == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "USE_X_FORWARDED_HOST": True,
    }


def test_each_https_protection_can_be_turned_off_for_plain_http(production_env):
    production_env.update(
        AIRLOCK_SSL_REDIRECT="false", AIRLOCK_SECURE_COOKIES="false", AIRLOCK_HSTS_SECONDS="0"
    )
    values = read_settings(
        production_env, "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "SECURE_HSTS_SECONDS"
    )
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
    }


def test_redis_broker_gets_a_visibility_timeout_longer_than_any_eta(production_env):
    values = read_settings(
        production_env,
        "CELERY_BROKER_TRANSPORT_OPTIONS", "CELERY_TASK_TIME_LIMIT", "AIRLOCK_SWEEP_SECONDS",
        "CELERY_WORKER_HIJACK_ROOT_LOGGER", "CELERY_BEAT_SYNC_EVERY",
    )
    timeout = values["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"]
    # ETAs reach at most two sweep intervals ahead, and a task then runs for at most its
    # time limit: a message must not be redelivered before both have passed.
    assert timeout > 2 * values["AIRLOCK_SWEEP_SECONDS"] + values["CELERY_TASK_TIME_LIMIT"]
    assert values["CELERY_WORKER_HIJACK_ROOT_LOGGER"] is False
    assert values["CELERY_BEAT_SYNC_EVERY"] == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD"), ("AIRLOCK_HSTS_SECONDS", "a year"),
        ("CACHE_URL", "memcached://cache:11211"), ("AIRLOCK_CHECK_RATE", "lots"),
        ("AIRLOCK_API_RATE", "100/fortnight"), ("AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT", "0"),
        ("AIRLOCK_GITHUB_BUDGET_LOW_PERCENT", "150"),
        ("AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT", "a tenth"),
        # The critical share above the low one would make "low" a band nothing is ever in.
        ("AIRLOCK_GITHUB_BUDGET_CRITICAL_PERCENT", "30"),
    ],
)
def test_a_bad_value_stops_the_settings_naming_the_variable(production_env, variable, value):
    production_env[variable] = value
    result = run_python("import django; django.setup()", production_env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        # A user token, or the incoming webhook's URL given as the bot token.
        ({"AIRLOCK_SLACK_BOT_TOKEN": "xoxp-1-2-3"}, "AIRLOCK_SLACK_BOT_TOKEN", "xoxb-"),
        (
            {"AIRLOCK_SLACK_BOT_TOKEN": "https://hooks.slack.com/services/T0/B0/x"},
            "AIRLOCK_SLACK_BOT_TOKEN", "not a user token (xoxp-...) or an incoming webhook",
        ),
        # One without the other: cards whose clicks could not be verified, or the reverse.
        ({"AIRLOCK_SLACK_BOT_TOKEN": "xoxb-1-2-3"}, "AIRLOCK_SLACK_SIGNING_SECRET", "go together"),
        ({"AIRLOCK_SLACK_SIGNING_SECRET": "8f74"}, "AIRLOCK_SLACK_BOT_TOKEN", "go together"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL", "ImproperlyConfigured"),
    ],
)
def test_a_bad_slack_setting_stops_the_settings_naming_the_variable(
    production_env, settings, named, says
):
    production_env.update(settings)
    result = run_python("import django; django.setup()", production_env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr
    assert says in result.stderr


def test_a_slack_bot_token_and_signing_secret_are_read_together(production_env):
    production_env.update(
        AIRLOCK_SLACK_BOT_TOKEN=" xoxb-1-2-3 ", AIRLOCK_SLACK_SIGNING_SECRET="8f742231b10e"
    )
    values = read_settings(
        production_env, "AIRLOCK_SLACK_BOT_TOKEN", "AIRLOCK_SLACK_SIGNING_SECRET", "SLACK_API_URL"
    )
    assert values == {
        "AIRLOCK_SLACK_BOT_TOKEN": "xoxb-1-2-3",
        "AIRLOCK_SLACK_SIGNING_SECRET": "8f742231b10e",
        "SLACK_API_URL": "https://slack.com/api",
    }


def test_the_documented_deployment_shares_one_redis_cache_and_the_default_needs_none(
    production_env,
):
    shared = read_settings(production_env, "CACHES")["CACHES"]["default"]
    assert shared["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert shared["LOCATION"] == "redis://redis:6379/1"
    production_env.pop("CACHE_URL")
    alone = read_settings(production_env, "CACHES")["CACHES"]["default"]
    assert alone["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    # Room for the check's audit marks of many runs at once: evicted, they are audited again.
    assert alone["OPTIONS"]["MAX_ENTRIES"] >= 100_000


def test_a_redis_worker_takes_the_engine_s_queue_before_the_notifications(production_env):
    values = read_settings(production_env, "CELERY_BROKER_TRANSPORT_OPTIONS")
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"]["queue_order_strategy"] == "priority"


def test_notifications_have_a_queue_of_their_own_after_the_engine_s():
    from portal.celery import app

    assert [queue.name for queue in app.amqp.queues.consume_from.values()] == [
        "celery", "airlock.notify",
    ]

    def queue_of(task: str) -> str:
        return app.amqp.router.route({}, task)["queue"].name

    for task in ("grants.tasks.reconcile_target", "grants.tasks.sweep",
                 "grants.tasks.apply_request", "grants.tasks.post_deployment_gate"):
        assert queue_of(task) == "celery", task
    for task in ("requests_app.tasks.send_notification", "requests_app.tasks.send_email",
                 "requests_app.tasks.post_to_slack", "requests_app.tasks.remind_expiring",
                 "requests_app.tasks.slack_card_sync", "requests_app.tasks.slack_cards_sweep",
                 "requests_app.tasks.send_audit_sink_alert", "audit.tasks.forward_audit_log"):
        assert queue_of(task) == "airlock.notify", task
