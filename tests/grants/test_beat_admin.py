"""Airlock's beat entries are declared in code (grants/schedule.py): the admin shows them
but will not change, delete or disable them, and the dashboard and /healthz say so when they
are missing or disabled anyway. Every other periodic task or schedule written in the beat
admin is audited, in the same transaction."""

from unittest import mock

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import DatabaseError
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.models import AuditEvent
from grants.admin_beat import PeriodicTaskAdmin
from grants.schedule import beat_schedule

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:django_celery_beat_periodictask_changelist")
SWEEP = "airlock: sweep"
# The schedule pages list the tasks that use them, as an inline formset.
NO_INLINE_TASKS = {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0"}


@pytest.fixture
def nightly_report():
    """A periodic task of someone else's, not one of Airlock's."""
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.DAYS)
    return PeriodicTask.objects.create(
        name="nightly report", task="grants.tasks.drift_check", interval=interval
    )


def run_action(client, action, tasks):
    return client.post(
        CHANGELIST,
        {"action": action, "index": "0", ACTION_CHECKBOX_NAME: [t.pk for t in tasks]},
        follow=True,
    )


def task_form(task, **overrides):
    data = {
        "name": task.name,
        "regtask": task.task,
        "task": "",
        "enabled": "on" if task.enabled else "",
        "description": task.description,
        "interval": task.interval_id or "",
        "crontab": "",
        "solar": "",
        "clocked": "",
        "start_time_0": "",
        "start_time_1": "",
        "one_off": "",
        "args": task.args,
        "kwargs": task.kwargs,
        "expires_0": "",
        "expires_1": "",
        "expire_seconds": task.expire_seconds or "",
        "queue": "",
        "exchange": "",
        "routing_key": "",
        "priority": "",
        "headers": task.headers,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_airlock_entries_are_installed_in_the_test_database():
    # The other tests rely on it, as production does (install_beat_schedule after migrate).
    names = set(PeriodicTask.objects.filter(enabled=True).values_list("name", flat=True))
    assert set(beat_schedule()) <= names


def test_disabling_the_sweep_with_the_admin_action_is_refused_with_a_message(
    client, platform_admin, nightly_report
):
    response = run_action(client, "disable_tasks", [PeriodicTask.objects.get(name=SWEEP)])

    assert PeriodicTask.objects.get(name=SWEEP).enabled is True
    page = response.content.decode()
    assert "airlock: sweep" in page and "declared in code" in page
    assert not AuditEvent.objects.filter(action="periodictask.changed").exists()


def test_toggling_leaves_airlock_entries_alone_and_audits_the_others(
    client, platform_admin, nightly_report
):
    run_action(client, "toggle_tasks", [PeriodicTask.objects.get(name=SWEEP), nightly_report])

    assert PeriodicTask.objects.get(name=SWEEP).enabled is True
    nightly_report.refresh_from_db()
    assert nightly_report.enabled is False
    [event] = AuditEvent.objects.filter(action="periodictask.changed")
    assert event.target_repr.startswith("nightly report")
    assert (event.detail["before"], event.detail["after"]) == (
        {"enabled": True},
        {"enabled": False},
    )


def test_disabling_another_task_is_audited_in_the_same_transaction(
    client, platform_admin, nightly_report
):
    with (
        mock.patch.object(PeriodicTaskAdmin, "message_user", side_effect=DatabaseError("gone")),
        pytest.raises(DatabaseError),
    ):
        run_action(client, "disable_tasks", [nightly_report])

    nightly_report.refresh_from_db()
    assert nightly_report.enabled is True
    assert not AuditEvent.objects.filter(action="periodictask.changed").exists()


def test_an_airlock_entry_cannot_be_changed_or_deleted_in_the_admin(client, platform_admin):
    sweep = PeriodicTask.objects.get(name=SWEEP)
    change = reverse("admin:django_celery_beat_periodictask_change", args=[sweep.pk])

    page = client.get(change)
    posted = client.post(change, task_form(sweep, enabled=""))
    deleted = client.post(
        reverse("admin:django_celery_beat_periodictask_delete", args=[sweep.pk]), {"post": "yes"}
    )
    bulk = client.post(
        CHANGELIST, {"action": "delete_selected", "post": "yes", ACTION_CHECKBOX_NAME: [sweep.pk]}
    )

    assert page.status_code == 200
    assert "Declared in code" in page.content.decode()
    assert posted.status_code == 403
    assert deleted.status_code == 403
    assert bulk.status_code == 403
    sweep.refresh_from_db()
    assert sweep.enabled is True


def test_the_schedule_of_an_airlock_entry_cannot_be_changed_or_deleted(client, platform_admin):
    interval = PeriodicTask.objects.get(name=SWEEP).interval
    change = reverse("admin:django_celery_beat_intervalschedule_change", args=[interval.pk])

    posted = client.post(change, {"every": "86400", "period": "seconds", **NO_INLINE_TASKS})
    deleted = client.post(
        reverse("admin:django_celery_beat_intervalschedule_delete", args=[interval.pk]),
        {"post": "yes"},
    )

    assert (posted.status_code, deleted.status_code) == (403, 403)
    interval.refresh_from_db()
    assert interval.every == PeriodicTask.objects.get(name=SWEEP).interval.every
    assert PeriodicTask.objects.filter(name=SWEEP).exists()


def test_an_airlock_name_cannot_be_taken_by_a_new_task(client, platform_admin, nightly_report):
    PeriodicTask.objects.filter(name=SWEEP).delete()

    response = client.post(
        reverse("admin:django_celery_beat_periodictask_add"),
        task_form(nightly_report, name=SWEEP, regtask="grants.tasks.drift_check"),
    )

    assert response.status_code == 200
    assert "declared in code" in response.content.decode()
    assert not PeriodicTask.objects.filter(name=SWEEP).exists()


def test_editing_another_periodic_task_is_audited_with_before_and_after(
    client, platform_admin, nightly_report
):
    change = reverse("admin:django_celery_beat_periodictask_change", args=[nightly_report.pk])

    response = client.post(change, task_form(nightly_report, expire_seconds="600"))

    assert response.status_code == 302, response.content.decode()
    [event] = AuditEvent.objects.filter(action="periodictask.changed")
    assert event.actor_label == "root"
    assert event.detail["changed"] == ["expire_seconds"]
    assert (event.detail["before"], event.detail["after"]) == (
        {"expire_seconds": None},
        {"expire_seconds": 600},
    )


def test_adding_and_deleting_another_task_and_schedule_are_audited(client, platform_admin):
    client.post(
        reverse("admin:django_celery_beat_intervalschedule_add"),
        {"every": "2", "period": "days", **NO_INLINE_TASKS},
    )
    interval = IntervalSchedule.objects.get(every=2, period="days")
    task = PeriodicTask.objects.create(name="weekly", task="grants.tasks.sweep", interval=interval)
    client.post(
        reverse("admin:django_celery_beat_periodictask_delete", args=[task.pk]), {"post": "yes"}
    )

    assert AuditEvent.objects.filter(action="intervalschedule.created").exists()
    [deleted] = AuditEvent.objects.filter(action="periodictask.deleted")
    assert deleted.detail["before"]["name"] == "weekly"
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_running_a_task_from_the_admin_is_audited(client, platform_admin, nightly_report):
    response = run_action(client, "run_tasks", [nightly_report])

    assert "1 task was successfully run" in response.content.decode()
    [event] = AuditEvent.objects.filter(action="periodictask.run_requested")
    assert event.target_repr.startswith("nightly report")


# --- the dashboard and /healthz say when Airlock's entries are missing or disabled ----------


def test_a_sweep_disabled_in_the_database_makes_health_degraded_and_names_it(client):
    PeriodicTask.objects.filter(name=SWEEP).update(enabled=False)
    PeriodicTask.objects.filter(name="airlock: drift check").delete()

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["beat"]["ok"] is False
    assert body["beat"]["entries_disabled"] == [SWEEP]
    assert body["beat"]["entries_missing"] == ["airlock: drift check"]


def test_a_sweep_disabled_in_the_database_shows_on_the_platform_admins_dashboard(
    client, platform_admin
):
    PeriodicTask.objects.filter(name=SWEEP).update(enabled=False)

    response = client.get(reverse("admin:index"))

    section = next(s for s in response.context["airlock_dashboard"] if s["key"] == "beat")
    assert section["count"] == 1
    assert section["style"] == "alert"
    page = response.content.decode()
    assert "airlock: sweep" in page and "disabled" in page


def test_the_dashboard_says_when_every_airlock_entry_is_in_place(client, platform_admin):
    response = client.get(reverse("admin:index"))

    section = next(s for s in response.context["airlock_dashboard"] if s["key"] == "beat")
    assert section["count"] == 0
    assert "Every Airlock beat entry is installed and enabled." in response.content.decode()


def test_approvers_do_not_see_the_beat_section(client):
    from tests.requests_app.factories import approver_setup

    _, _, users = approver_setup()
    PeriodicTask.objects.filter(name=SWEEP).update(enabled=False)
    client.force_login(users["alice"])

    response = client.get(reverse("admin:index"))

    assert "beat" not in [s["key"] for s in response.context["airlock_dashboard"]]
