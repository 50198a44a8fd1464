"""/metrics read back after real grants: approved, applied on the local GitHub, ended by the
sweep, and a revocation GitHub keeps refusing. Counters are compared with what the local
GitHub saw and what the audit log holds, not with numbers written down here."""

import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditEvent
from grants import tasks
from grants.models import Grant
from grants.reconciler import reconcile_environment
from integrations.github import GitHubClient
from requests_app.services import access_request_approve, access_request_create
from tests.grants.factories import expire_now, reviewer_grant
from tests.requests_app.factories import UserFactory, approver_setup

pytestmark = pytest.mark.django_db
TOKEN = "metrics-test-token-0123456789"
ENVIRONMENT_PATH = "/repos/acme/api/environments/production"
LAG_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 3600)


@pytest.fixture
def scrape(client, settings):
    """scrape(): GET /metrics with the token, as {(sample name, labels): value}."""
    settings.AIRLOCK_METRICS_TOKEN = TOKEN

    def read() -> dict:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    return read


def value(samples: dict, name: str, **labels) -> float:
    """A sample's value; 0 for a labelled series nothing has recorded yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(after: dict, before: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def family_of(path: str) -> str:
    if path.startswith("/users/"):
        return "users"
    if path == ENVIRONMENT_PATH:
        return "environments"
    return path


def test_a_grant_applied_then_ended_by_the_sweep_reads_back_from_metrics(
    gh, scrape, eager_celery, django_capture_on_commit_callbacks
):
    gh.add_user("dave")
    gh.add_environment("acme/api", "production", reviewers=[("Team", "acme/sre")])
    _, _, approvers = approver_setup()
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
        duration_minutes=30,
    )
    before = scrape()
    audit_before = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    github_before = len(gh.requests)

    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, approver=approvers["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, approver=approvers["bob"])
    grant = Grant.objects.get(access_request=access_request)
    assert grant.state == Grant.State.APPLIED
    during = scrape()

    assert value(during, "airlock_grants_in_force", kind="reviewer") == 1
    assert value(during, "airlock_grants_in_force", kind="environment_secret") == 0

    expire_now(grant)
    sweep_started = time.time()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep.apply()
    sweep_ended = time.time()
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert gh.reviewers("acme/api", "production") == ["acme/sre"]
    after = scrape()

    # Grants in force, and nothing overdue.
    assert value(after, "airlock_grants_in_force", kind="reviewer") == 0
    assert value(after, "airlock_revocations_overdue") == 0

    # Revocation lag: one observation, removal minus expires_at, in the buckets it fits.
    lag = (grant.revoked_at - grant.expires_at).total_seconds()
    assert delta(after, before, "airlock_revocation_lag_seconds_count", end_reason="expired") == 1
    assert delta(
        after, before, "airlock_revocation_lag_seconds_sum", end_reason="expired"
    ) == pytest.approx(max(0.0, lag), abs=1e-6)
    for le in LAG_BUCKETS:
        observed = delta(
            after, before, "airlock_revocation_lag_seconds_bucket",
            end_reason="expired", le=str(float(le)),
        )
        assert observed == (1 if lag <= le else 0), le

    # GitHub requests by family and answer: what the local GitHub saw, request for request.
    seen = Counter(
        (family_of(r.path), f"{r.status // 100}xx") for r in gh.requests[github_before:]
    )
    assert seen[("environments", "2xx")] == 4  # a GET and a PUT to add, and to remove
    for (family, status), count in seen.items():
        counted = delta(after, before, "airlock_github_requests_total", family=family,
                        status=status)
        assert counted == count, (family, status)
    # The quota left, as GitHub's last answer said.
    assert value(after, "airlock_github_rate_limit_remaining", client="engine") == (
        5000 - gh.rate_limit_used
    )

    # Reconcile passes: one to apply, one to remove; each timed.
    assert delta(
        after, before, "airlock_reconcile_passes_total", target_kind="environment", outcome="ok"
    ) == 2
    assert delta(
        after, before, "airlock_reconcile_pass_duration_seconds_count", target_kind="environment"
    ) == 2

    # The sweep: timed, and when it completed.
    assert delta(after, before, "airlock_sweep_duration_seconds_count") == 1
    completed = value(after, "airlock_sweep_last_completed_timestamp_seconds")
    assert sweep_started <= completed <= sweep_ended
    assert 0 <= value(after, "airlock_sweep_age_seconds") < float("inf")

    # Audit events written: per action, what the audit log gained.
    written = Counter(
        AuditEvent.objects.filter(seq__gt=audit_before or 0).values_list("action", flat=True)
    )
    assert {"grant.applied", "grant.revoked", "request.approved"} <= set(written)
    for action, count in written.items():
        assert delta(after, before, "airlock_audit_events_total", action=action) == count, action


def test_a_revocation_github_keeps_refusing_is_overdue_on_metrics_until_it_succeeds(
    gh, scrape, django_capture_on_commit_callbacks
):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    grant = reviewer_grant("alice")
    reconcile_environment(grant.target_id)
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    before = scrape()
    github_before = len(gh.requests)

    gh.faults.add("PUT", ENVIRONMENT_PATH, status=502, times=None)
    reconcile_environment(expire_now(grant).target_id)
    failing = scrape()

    grant.refresh_from_db()
    assert grant.revocation_overdue_since is not None
    assert value(failing, "airlock_revocations_overdue") == 1
    refused = [r for r in gh.requests[github_before:] if r.status == 502]
    assert refused
    assert delta(
        failing, before, "airlock_github_requests_total", family="environments", status="502"
    ) == len(refused)
    assert delta(
        failing, before, "airlock_reconcile_passes_total",
        target_kind="environment", outcome="error",
    ) == 1

    gh.faults.clear()
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_environment(grant.target_id)
    recovered = scrape()

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert value(recovered, "airlock_revocations_overdue") == 0
    assert delta(
        recovered, failing, "airlock_revocation_lag_seconds_sum", end_reason="expired"
    ) == pytest.approx((grant.revoked_at - grant.expires_at).total_seconds(), abs=1e-6)


def test_who_started_a_rerun_is_asked_of_github_under_its_own_family(gh, scrape):
    run = gh.add_workflow_run("acme/api", actor="erin")
    gh.rerun_workflow("acme/api", run.id, triggering_actor="dave")
    gh.faults.add("GET", "/repos/*/*/actions/runs/*/attempts/*", status=502, times=1)
    before = scrape()

    starter = GitHubClient().run_attempt_triggering_actor("acme/api", run.id, 2)

    assert starter == ("dave", gh.user("dave").id)
    after = scrape()
    for status in ("502", "2xx"):
        assert delta(
            after, before, "airlock_github_requests_total", family="workflow_runs", status=status
        ) == 1, status


def test_a_read_github_answers_not_modified_is_counted_as_a_304(gh, scrape):
    gh.add_environment("acme/api", "production")
    client = GitHubClient()
    client.get_environment("acme/api", "production")
    before = scrape()

    client.get_environment("acme/api", "production")

    after = scrape()
    assert gh.requests[-1].status == 304
    assert client.unchanged_reads == 1
    assert delta(after, before, "airlock_github_requests_total", family="environments",
                 status="304") == 1
    assert delta(after, before, "airlock_github_requests_total", family="environments",
                 status="2xx") == 0
    assert value(after, "airlock_github_rate_limit_remaining", client="engine") == (
        5000 - gh.rate_limited_calls
    )
