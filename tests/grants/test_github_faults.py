"""GitHub failing: transient errors retried with backoff (honouring retry-after and the
rate-limit reset), permanent ones told apart, and a revocation that survives an outage."""

import time

import pytest

from audit.models import AuditEvent
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_reconcile
from integrations.github import GitHubClient, NotFoundError, TransientGitHubError
from requests_app.models import AccessRequest
from tests.grants.factories import expire_now, reviewer_grant

pytestmark = pytest.mark.django_db
ENVIRONMENT_PATH = "/repos/acme/api/environments/production"


def environment_requests(github, method):
    return [r for r in github.requests if r.method == method and r.path == ENVIRONMENT_PATH]


def test_a_502_is_retried_and_the_grant_applied(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.add("PUT", ENVIRONMENT_PATH, status=502, times=1)
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert [r.status for r in environment_requests(gh, "PUT")] == [502, 200]
    assert gh.reviewers("acme/api", "production") == ["alice"]


def test_a_secondary_rate_limit_is_waited_out_as_retry_after_says(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.secondary_rate_limit("PUT", ENVIRONMENT_PATH, retry_after=1, times=1)
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)

    first, second = environment_requests(gh, "PUT")
    assert first.status == 403 and second.status == 200
    assert second.at - first.at >= 1.0  # no call before retry-after said
    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED


def test_a_primary_rate_limit_is_waited_out_until_its_reset(gh):
    gh.add_environment("acme/api", "production")
    gh.faults.primary_rate_limit("GET", ENVIRONMENT_PATH, reset_in=1, status=429, times=1)
    reset = int(time.time()) + 1

    GitHubClient().get_environment("acme/api", "production")

    first, second = environment_requests(gh, "GET")
    assert first.status == 429 and second.status == 200
    assert second.at >= reset


def test_a_rate_limit_longer_than_the_call_may_wait_is_left_to_the_next_attempt(gh, settings):
    settings.AIRLOCK_GITHUB_RETRY_MAX_SECONDS = 2
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.secondary_rate_limit("PUT", ENVIRONMENT_PATH, retry_after=60, times=1)
    grant = reviewer_grant("alice")

    started = time.monotonic()
    grant_reconcile(grant=grant)

    assert time.monotonic() - started < 2
    assert len(environment_requests(gh, "PUT")) == 1
    grant.refresh_from_db()
    assert grant.state == Grant.State.PENDING
    assert "secondary rate limit" in grant.last_error
    # The sweep will not try before GitHub allows it.
    assert grant.next_attempt_at.timestamp() >= time.time() + 55


def test_a_timeout_is_retried(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.timeout("PUT", ENVIRONMENT_PATH, delay=2.0, times=1)  # the client waits 1 s
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert len(environment_requests(gh, "PUT")) == 2
    assert gh.reviewers("acme/api", "production") == ["alice"]


def test_a_404_is_permanent_not_retried_and_carries_githubs_message(gh):
    client = GitHubClient()

    with pytest.raises(NotFoundError) as caught:
        client.get_environment("acme/gone", "production")

    assert caught.value.status == 404
    assert caught.value.message == "Not Found"
    assert len([r for r in gh.requests if r.path.startswith("/repos/acme/gone")]) == 1


def test_transient_errors_that_outlast_the_retries_are_raised_as_transient(gh):
    gh.add_environment("acme/api", "production")
    gh.faults.add("GET", ENVIRONMENT_PATH, status=503, times=None)

    with pytest.raises(TransientGitHubError) as caught:
        GitHubClient().get_environment("acme/api", "production")

    assert caught.value.status == 503
    assert len(environment_requests(gh, "GET")) == 4  # AIRLOCK_GITHUB_RETRY_MAX_ATTEMPTS


def test_a_grant_github_keeps_refusing_transiently_fails_once_its_attempts_are_spent(
    gh, settings
):
    settings.AIRLOCK_GRANT_MAX_ATTEMPTS = 2
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    gh.faults.add("PUT", ENVIRONMENT_PATH, status=500, times=None)
    grant = reviewer_grant("alice")

    grant_reconcile(grant=grant)
    grant.refresh_from_db()
    assert grant.state == Grant.State.PENDING and grant.next_attempt_at is not None
    grant_reconcile(grant=grant)

    grant.refresh_from_db()
    assert grant.state == Grant.State.FAILED
    assert grant.last_error.startswith("Gave up after 2 attempts")
    assert AccessRequest.objects.get(pk=grant.access_request_id).status == "failed"


def test_a_revocation_during_a_github_outage_happens_once_github_answers_and_is_audited(gh):
    gh.add_user("alice")
    gh.add_environment("acme/api", "production", reviewers=["bob"])
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    expire_now(grant)
    gh.faults.add("PUT", ENVIRONMENT_PATH, status=502, times=None)

    reconcile_environment(grant.target_id)
    reconcile_environment(grant.target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.APPLIED
    assert grant.revocation_overdue_since == grant.expires_at
    assert grant.is_revocation_overdue and "502" in grant.last_error
    assert gh.reviewers("acme/api", "production") == ["bob", "alice"]
    overdue = AuditEvent.objects.filter(action="grant.revocation_overdue")
    assert overdue.count() == 1  # audited once, however many attempts
    request = AccessRequest.objects.get(pk=grant.access_request_id)
    assert request.status == "active"  # ... but the API's check reads expires_at > now

    gh.faults.clear()
    reconcile_environment(grant.target_id)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.revocation_overdue_since is None
    assert gh.reviewers("acme/api", "production") == ["bob"]
    revoked = AuditEvent.objects.get(action="grant.revoked")
    assert revoked.detail["late_by_seconds"] > 0
    assert revoked.detail["overdue_since"] is not None
    assert revoked.detail["attempts"] >= 2
