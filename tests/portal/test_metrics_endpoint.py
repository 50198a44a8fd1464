"""GET /metrics: off without a token, bearer-guarded with one, every name airlock_, queue
depths from the broker, and several processes counted together (multiprocess mode).
What the engine records is read back in tests/grants/test_metrics.py."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit.forwarding import audit_forward_all
from audit.models import AuditSink
from audit.selectors import sink_statuses
from grants.models import Target
from grants.scheduling import schedule_reconcile
from integrations.github import GitHubClient
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-test-token-0123456789"


@pytest.fixture
def metrics_on(settings):
    settings.AIRLOCK_METRICS_TOKEN = TOKEN


def scrape(client, **headers):
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)


def families(response) -> dict:
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def test_metrics_is_a_404_while_no_token_is_set(client, settings):
    settings.AIRLOCK_METRICS_TOKEN = ""

    response = scrape(client)

    assert response.status_code == 404
    assert b"airlock_" not in response.content


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer"],
)
def test_metrics_without_the_right_bearer_token_is_a_401(client, metrics_on, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"airlock_" not in response.content


def test_metrics_with_the_token_is_prometheus_text_where_every_name_is_airlock(
    client, metrics_on
):
    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    names = set(families(response))
    assert {
        "airlock_github_requests",
        "airlock_github_rate_limit_remaining",
        "airlock_reconcile_passes",
        "airlock_reconcile_pass_duration_seconds",
        "airlock_revocation_lag_seconds",
        "airlock_sweep_duration_seconds",
        "airlock_sweep_last_completed_timestamp_seconds",
        "airlock_sweep_age_seconds",
        "airlock_audit_events",
        "airlock_grants_in_force",
        "airlock_revocations_overdue",
        "airlock_queue_depth",
        "airlock_github_rate_limit_band",
    } <= names
    assert all(name.startswith("airlock_") for name in names), sorted(names)


def test_metrics_answers_prometheus_at_the_containers_address_like_healthz(client, metrics_on):
    # Not in ALLOWED_HOSTS, and plain HTTP: every other page refuses this Host.
    response = scrape(client, HTTP_HOST="172.18.0.5:8000")

    assert response.status_code == 200
    assert client.get("/api/v1/grants/", HTTP_HOST="172.18.0.5:8000").status_code == 400


def test_metrics_refuses_other_methods(client, metrics_on):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


def queue_depth(client, queue: str) -> float:
    family = families(scrape(client))["airlock_queue_depth"]
    return next(s.value for s in family.samples if s.labels["queue"] == queue)


def test_queue_depth_counts_the_messages_waiting_in_each_queue(client, metrics_on):
    notify_before = queue_depth(client, "airlock.notify")
    engine_before = queue_depth(client, "celery")

    schedule_reconcile(Target, 424242)  # nobody consumes the test broker

    assert queue_depth(client, "celery") == engine_before + 1
    assert queue_depth(client, "airlock.notify") == notify_before


def test_a_broker_that_does_not_answer_leaves_only_the_queue_depth_out(client, metrics_on):
    from portal.celery import app as celery_app

    previous = celery_app.conf.broker_read_url
    celery_app.conf.broker_read_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = scrape(client)
    finally:
        celery_app.conf.broker_read_url = previous

    assert response.status_code == 200
    names = set(families(response))
    assert "airlock_queue_depth" not in names
    assert {"airlock_grants_in_force", "airlock_github_requests"} <= names


# --- several processes, one scrape -------------------------------------------------------------

RECORD = """
from core import metrics
metrics.github_answered(family="environments", status="2xx", client="engine", remaining={left})
metrics.REVOCATION_LAG.labels("expired").observe({lag})
"""
EXPOSE = "import sys; from core import metrics; sys.stdout.write(metrics.exposition().decode())"


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_with_a_multiprocess_directory_one_scrape_adds_up_every_process(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for left, lag in ((4990, 1.5), (4980, 40.0)):
        recorded = run_python(RECORD.format(left=left, lag=lag), env)
        assert recorded.returncode == 0, recorded.stderr

    exposed = run_python(EXPOSE, env)

    assert exposed.returncode == 0, exposed.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(exposed.stdout)
        for s in f.samples
    }
    assert samples[
        ("airlock_github_requests_total", (("family", "environments"), ("status", "2xx")))
    ] == 2
    # The last process to hear from GitHub has the say.
    assert samples[("airlock_github_rate_limit_remaining", (("client", "engine"),))] == 4980
    assert samples[("airlock_revocation_lag_seconds_count", (("end_reason", "expired"),))] == 2
    assert samples[("airlock_revocation_lag_seconds_sum", (("end_reason", "expired"),))] == 41.5
    # Files are named by host and process, so containers sharing the directory never
    # write into one another's.
    host = re.escape(socket.gethostname().replace("_", "-"))
    files = [path.stem for path in tmp_path.glob("*.db")]
    assert files
    assert all(re.fullmatch(rf"(counter|histogram|gauge_[a-z]+)_{host}-\d+", f) for f in files)


def test_a_multiprocess_directory_that_does_not_exist_stops_the_start(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")}

    result = run_python("import core.metrics", env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: PROMETHEUS_MULTIPROC_DIR" in result.stderr


def test_a_short_metrics_token_stops_the_start_naming_the_variable(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        "AIRLOCK_METRICS_TOKEN": "short",
    }

    result = run_python("import django; django.setup()", env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: AIRLOCK_METRICS_TOKEN" in result.stderr


# --- audit forwarding sinks, read at scrape time ------------------------------------------------


def sink_samples(client) -> dict:
    found = families(scrape(client))
    return {
        name: {s.labels["sink"]: s.value for s in found[name].samples}
        for name in found
        if name.startswith("airlock_audit_sink_")
    }


def test_each_configured_sink_shows_its_backlog_failures_last_error_and_last_delivery(
    client, metrics_on, siem_http
):
    AuditEventFactory.create_batch(3)
    siem_http.fail_next(1)
    audit_forward_all()
    row = AuditSink.objects.get(name="http")

    failing = sink_samples(client)

    assert failing["airlock_audit_sink_backlog_events"] == {"http": 3}
    assert failing["airlock_audit_sink_backlog_age_seconds"]["http"] > 0
    assert failing["airlock_audit_sink_consecutive_failures"] == {"http": 1}
    assert failing["airlock_audit_sink_last_error_timestamp_seconds"] == {
        "http": row.last_error_at.timestamp()
    }
    assert failing["airlock_audit_sink_last_delivered_timestamp_seconds"] == {"http": 0}

    AuditSink.objects.update(next_attempt_at=timezone.now())
    audit_forward_all()
    row.refresh_from_db()

    caught_up = sink_samples(client)

    assert caught_up["airlock_audit_sink_backlog_events"] == {"http": 0}
    assert caught_up["airlock_audit_sink_backlog_age_seconds"] == {"http": 0}
    assert caught_up["airlock_audit_sink_consecutive_failures"] == {"http": 0}
    assert caught_up["airlock_audit_sink_last_delivered_timestamp_seconds"] == {
        "http": row.last_delivered_at.timestamp()
    }
    # The last error's time stays: when it happened is still true.
    assert caught_up["airlock_audit_sink_last_error_timestamp_seconds"] == {
        "http": row.last_error_at.timestamp()
    }


def test_a_sink_no_round_has_reached_yet_shows_the_whole_log_as_its_backlog_unwritten(
    client, metrics_on, siem_http
):
    AuditEventFactory.create_batch(2)

    samples = sink_samples(client)

    assert samples["airlock_audit_sink_backlog_events"] == {"http": 2}
    assert not AuditSink.objects.exists()  # a scrape writes nothing


def test_with_no_sink_configured_the_sink_metrics_have_no_samples(client, metrics_on, settings):
    settings.AIRLOCK_AUDIT_STREAM_URL = ""
    settings.AIRLOCK_AUDIT_SYSLOG_URL = ""

    samples = sink_samples(client)

    assert set(samples) >= {"airlock_audit_sink_backlog_events"}
    assert all(by_sink == {} for by_sink in samples.values())


def test_a_sinks_state_costs_one_read_of_the_rows_and_two_indexed_reads_per_sink(
    siem_http, django_assert_num_queries
):
    AuditEventFactory.create_batch(3)
    audit_forward_all()
    AuditEventFactory.create_batch(2)

    with django_assert_num_queries(3):
        (status,) = sink_statuses()

    assert status.backlog.events == 2


# --- GitHub's budget, read at scrape time ----------------------------------------------------


def test_the_band_of_githubs_budget_is_what_the_last_answer_said_until_the_reset(
    client, metrics_on, gh
):
    assert families(scrape(client))["airlock_github_rate_limit_band"].samples == []

    gh.spend_rate_limit(remaining=300, reset_in=6)  # 6% of 5,000: critical
    GitHubClient().repository_id("acme/api")

    found = families(scrape(client))
    (band,) = found["airlock_github_rate_limit_band"].samples
    assert (band.labels, band.value) == ({"client": "engine"}, 2)
    # Other clients' gauges may be there too (earlier tests in this process): the engine's.
    (left,) = [sample for sample in found["airlock_github_rate_limit_remaining"].samples
               if sample.labels.get("client") == "engine"]
    assert left.value == 299  # the answer's own call counted

    # No call since, but the window it was seen in has ended: nothing waits any more.
    time.sleep(max(0.0, gh.state.rate_limit_reset - time.time()) + 0.05)
    (band,) = families(scrape(client))["airlock_github_rate_limit_band"].samples
    assert band.value == 0


# --- the README lists every metric (PRODUCT.md "Metrics") ---------------------------------------


def readme_metric_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Metrics\n", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `(airlock_[a-z0-9_]+)`", section, re.MULTILINE))


def test_the_readme_lists_every_metric_served_and_nothing_else(client, metrics_on, siem_http):
    found = families(scrape(client))
    served = set()
    for family in found.values():
        if family.name.endswith("_created") and family.name.removesuffix("_created") in found:
            continue  # prometheus-client's creation time of a histogram, not a metric of ours
        # The README names a counter as Prometheus shows its samples, with _total.
        served.add(f"{family.name}_total" if family.type == "counter" else family.name)

    listed = readme_metric_names()

    assert "airlock_audit_sink_backlog_events" in served
    assert served - listed == set(), "served but not in the README's Metrics tables"
    assert listed - served == set(), "in the README's Metrics tables but not served"
