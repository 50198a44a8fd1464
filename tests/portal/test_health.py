"""/healthz: 200 while the database and broker answer, 503 when not; beat's last sweep
reported, and "degraded" (still 200) when it is late."""

import socket
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connections
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from portal.celery import app as celery_app

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def broker_at(url: str):
    previous = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = url
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = previous


@pytest.fixture
def sweep_sent():
    """sweep_sent(seconds_ago): beat sent the sweep that long ago (None: never)."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=15, period=IntervalSchedule.SECONDS
    )

    def record(seconds_ago):
        sweeps = PeriodicTask.objects.filter(name__icontains="sweep")
        sweeps.update(last_run_at=None)
        if seconds_ago is not None:
            PeriodicTask.objects.update_or_create(
                name="test: sweep",
                defaults={
                    "task": "grants.tasks.sweep",
                    "interval": interval,
                    "last_run_at": timezone.now() - timedelta(seconds=seconds_ago),
                },
            )

    return record


def test_all_well_is_200_ok_with_each_part_reported(client, sweep_sent):
    sweep_sent(5)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["beat"]["ok"] is True
    assert 4 <= body["beat"]["age_seconds"] < 60
    assert body["beat"]["last_sweep_at"]
    assert response["Cache-Control"].startswith("max-age=0")


@override_settings(AIRLOCK_SWEEP_SECONDS=15)
def test_a_sweep_older_than_three_intervals_is_degraded_but_still_200(client, sweep_sent):
    sweep_sent(46)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["beat"]["ok"] is False
    assert body["beat"]["stale_after_seconds"] == 45


def test_a_sweep_never_sent_is_degraded_with_null_times(client, sweep_sent):
    sweep_sent(None)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["beat"]["last_sweep_at"] is None
    assert body["beat"]["age_seconds"] is None


def test_an_unreachable_broker_is_503_and_its_password_is_not_shown(client, sweep_sent):
    sweep_sent(5)
    with broker_at(f"redis://:hunter2-broker-password@127.0.0.1:{closed_port()}/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["broker"]["ok"] is False
    assert body["broker"]["error"]
    assert body["database"]["ok"] is True
    assert b"hunter2" not in response.content
    assert b"127.0.0.1" not in response.content


def test_an_unreachable_database_is_503(client):
    refuse = OperationalError("could not connect to server: password=db-secret")
    with mock.patch.object(connections["default"], "cursor", side_effect=refuse):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["beat"]["ok"] is False
    assert b"db-secret" not in response.content


@override_settings(ALLOWED_HOSTS=["airlock.example.com"], SECURE_SSL_REDIRECT=True)
def test_healthz_answers_plain_http_on_any_host_name_unlike_other_pages(client):
    # Docker and load balancers call it by the container's address, over plain HTTP.
    response = client.get("/healthz", HTTP_HOST="172.18.0.5:8000")
    assert response.status_code in (200, 503)
    assert response.json()["database"]["ok"] is True
    assert client.get("/requests/", HTTP_HOST="172.18.0.5:8000").status_code == 400
    redirect = client.get("/requests/", HTTP_HOST="airlock.example.com")
    assert redirect.status_code == 301
    assert redirect["Location"].startswith("https://")


def test_healthz_needs_no_sign_in_and_shows_no_settings(client, settings):
    settings.SECRET_KEY = "a-secret-key-that-must-never-appear-anywhere-0123456789"
    response = client.get("/healthz")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "database", "broker", "beat"}
    assert b"a-secret-key" not in response.content
