"""The beat sweep: everything due is found from the database alone, so a lost message
costs at most one sweep interval; and the beat schedule is installed from code."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEvent
from grants import reconciler, services
from grants.models import Grant, Target
from grants.reconciler import reconcile_environment
from grants.schedule import beat_schedule, install_beat_schedule
from grants.services import grant_reconcile, grants_sweep
from requests_app.models import AccessRequest
from tests.grants.factories import approved_request, expire_now, reviewer_grant
from tests.requests_app.factories import AccessRequestFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    """What the sweep hands to Celery: (model name, pk, eta)."""
    sent = []
    monkeypatch.setattr(
        services,
        "schedule_reconcile",
        lambda model, pk, eta=None, check=False: sent.append((model.__name__, pk, eta)),
    )
    return sent


def test_the_sweep_creates_and_applies_grants_for_approved_requests_whose_message_was_lost(
    enqueued,
):
    access_request = approved_request("alice")

    report = grants_sweep()

    grant = Grant.objects.get(access_request=access_request)
    assert report.grants_created == 1
    assert enqueued == [("Target", grant.target_id, None)]


def test_the_sweep_enqueues_due_revocations_and_schedules_upcoming_ones_once(gh, enqueued):
    gh.add_user("alice")
    gh.add_user("carol")
    gh.add_environment("acme/api", "production")
    due, soon = reviewer_grant("alice"), reviewer_grant("carol")
    grant_reconcile(grant=due)
    expire_now(due)
    soon_at = timezone.now() + timedelta(seconds=5)
    Grant.objects.filter(pk=soon.pk).update(
        state=Grant.State.APPLIED, applied_at=timezone.now(), expires_at=soon_at
    )

    grants_sweep()
    grants_sweep()

    target = Target.objects.get().pk
    assert enqueued.count(("Target", target, None)) == 2  # due: every sweep, until done
    assert enqueued.count(("Target", target, soon_at)) == 1  # upcoming: once, with its ETA


def test_an_expiry_beyond_the_next_two_sweeps_is_not_scheduled_yet(enqueued, settings):
    settings.AIRLOCK_SWEEP_SECONDS = 15
    grant = reviewer_grant("alice")
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED,
        applied_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=5),
    )

    grants_sweep()

    assert enqueued == []


def test_a_revocation_not_done_a_sweep_after_it_was_due_is_marked_overdue_once(
    enqueued, settings
):
    settings.AIRLOCK_SWEEP_SECONDS = 15
    grant = reviewer_grant("alice")
    due = timezone.now() - timedelta(seconds=20)
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED, applied_at=due - timedelta(hours=1), expires_at=due
    )

    first = grants_sweep()
    second = grants_sweep()

    grant.refresh_from_db()
    assert grant.revocation_overdue_since == due
    assert (first.newly_overdue, second.newly_overdue) == (1, 0)
    assert AuditEvent.objects.filter(action="grant.revocation_overdue").count() == 1
    assert list(Grant.objects.revocation_overdue()) == [grant]


def test_a_grant_waiting_for_its_backoff_is_not_retried_before_its_time(enqueued):
    grant = reviewer_grant("alice")
    Grant.objects.filter(pk=grant.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=1), last_error="502"
    )

    grants_sweep()
    assert enqueued == []

    Grant.objects.filter(pk=grant.pk).update(next_attempt_at=timezone.now())
    grants_sweep()
    assert enqueued == [("Target", grant.target_id, None)]


def test_a_request_with_a_later_start_is_applied_at_its_start(enqueued):
    starts_at = timezone.now() + timedelta(seconds=10)
    access_request = approved_request("alice", starts_at=starts_at)

    grants_sweep()

    grant = Grant.objects.get(access_request=access_request)
    assert enqueued == [("Target", grant.target_id, starts_at)]


def test_the_sweep_times_out_requests_pending_past_their_ttl(enqueued):
    stale = AccessRequestFactory(pending_until=timezone.now() - timedelta(minutes=1))

    report = grants_sweep()

    assert report.timed_out == 1
    stale.refresh_from_db()
    assert stale.status == AccessRequest.Status.TIMED_OUT


def test_the_beat_schedule_is_installed_idempotently_from_code(settings):
    settings.AIRLOCK_SWEEP_SECONDS = 7
    PeriodicTask.objects.filter(name__startswith="airlock:").delete()

    first = install_beat_schedule()
    second = install_beat_schedule()

    assert len(first) == len(beat_schedule()) and second == []
    sweep = PeriodicTask.objects.get(name="airlock: sweep")
    assert sweep.task == "grants.tasks.sweep"
    assert (sweep.interval.every, sweep.interval.period) == (7, "seconds")
    drift = PeriodicTask.objects.get(name="airlock: drift check")
    assert (drift.task, drift.interval.every) == ("grants.tasks.drift_check", 3600)

    sweep.enabled = False
    sweep.save()
    settings.AIRLOCK_SWEEP_SECONDS = 3
    changes = install_beat_schedule()

    sweep.refresh_from_db()
    assert sweep.enabled and sweep.interval.every == 3
    assert changes == [
        "updated airlock: sweep: interval, enabled, expire_seconds",
        # The deployment gates' sweep runs at the same interval: the same bound on a lost
        # message.
        "updated airlock: deployment gates: interval, expire_seconds",
        # So does the Slack cards' sweep.
        "updated airlock: slack cards: interval, expire_seconds",
        # And the seal of audit events a race left waiting.
        "updated airlock: audit seal: interval, expire_seconds",
    ]


def test_a_crontab_celery_cannot_parse_is_a_form_error_in_the_admin(client):
    # django_celery_beat's crontab form let through what celery cannot parse (a minute of
    # "-1" raised ParseException: a 500; found by the form fuzz).
    from django_celery_beat.models import CrontabSchedule

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/django_celery_beat/crontabschedule/add/",
        {"minute": "-1", "hour": "*", "day_of_week": "*", "day_of_month": "*",
         "month_of_year": "*", "timezone": "UTC"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not CrontabSchedule.objects.filter(minute="-1").exists()


def test_expiries_close_together_share_one_scheduled_reconcile(gh, enqueued):
    grants = [reviewer_grant(login) for login in ("alice", "carol", "erin")]
    at = timezone.now() + timedelta(seconds=5)
    ends = [at, at + timedelta(milliseconds=400), at + timedelta(seconds=2)]
    for grant, end in zip(grants, ends, strict=True):
        Grant.objects.filter(pk=grant.pk).update(
            state=Grant.State.APPLIED, applied_at=timezone.now(), expires_at=end
        )

    grants_sweep()
    grants_sweep()

    target = Target.objects.get().pk
    # One message for the first two (a pass ends what expires within EXPIRY_TOLERANCE of
    # it), one for the third; none again on the next sweep.
    assert enqueued == [("Target", target, ends[0]), ("Target", target, ends[2])]


def test_one_pass_at_a_batch_s_time_ends_every_grant_of_the_batch(gh):
    for login in ("alice", "carol"):
        gh.add_user(login)
    gh.add_environment("acme/api", "production", reviewers=[])
    first, second = reviewer_grant("alice"), reviewer_grant("carol")
    grant_reconcile(grant=first)
    grant_reconcile(grant=second)
    assert sorted(gh.reviewers("acme/api", "production")) == ["alice", "carol"]
    now = timezone.now()
    Grant.objects.filter(pk=first.pk).update(expires_at=now)
    Grant.objects.filter(pk=second.pk).update(expires_at=now + timedelta(milliseconds=400))
    (eta, batch), = reconciler.expiry_batches(Grant.objects.all())
    assert eta == now and {g.pk for g in batch} == {first.pk, second.pk}

    reconcile_environment(first.target_id)

    assert gh.reviewers("acme/api", "production") == []
    assert set(Grant.objects.values_list("state", flat=True)) == {Grant.State.REVOKED}


def test_a_reconcile_asked_for_before_a_later_pass_started_is_dropped(gh):
    """During an outage every sweep queues another pass per target; once GitHub is back,
    passes that a later pass already covered must not crowd out new expiries."""
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=[])
    grant = reviewer_grant("alice")
    asked = timezone.now()
    grant_reconcile(grant=grant)  # a pass that started after `asked`
    assert gh.reviewers("acme/api", "production") == ["alice"]
    calls = len(gh.requests)

    covered = reconcile_environment(grant.target_id, requested_at=asked)
    assert covered.skipped and len(gh.requests) == calls
    assert "already reconciled" in covered.summary()

    # Asked for since that pass started: it runs. And a drift check always runs.
    assert not reconcile_environment(grant.target_id, requested_at=timezone.now()).skipped
    assert not reconcile_environment(grant.target_id, check=True, requested_at=asked).skipped
    assert len(gh.requests) > calls


def test_the_task_carries_when_it_was_asked_for(gh, monkeypatch):
    from grants import scheduling, tasks

    sent = []
    monkeypatch.setattr(
        tasks.reconcile_target, "apply_async", lambda **kwargs: sent.append(kwargs)
    )
    eta = timezone.now() + timedelta(seconds=30)
    scheduling.schedule_reconcile(Target, 7, eta=eta)
    before = timezone.now().timestamp()
    scheduling.schedule_reconcile(Target, 7)
    assert sent[0]["kwargs"]["requested_at"] == eta.timestamp()
    assert sent[1]["kwargs"]["requested_at"] >= before
    assert sent[0]["args"] == [7] and sent[0]["eta"] == eta
