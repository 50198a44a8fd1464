"""GitHub's hourly budget, counted on the local GitHub: the drift check asks with the ETag of
the last read and a 304 costs nothing against the rate limit, so a reconcile with nothing
changed costs no rate-limited call; a change on GitHub is still seen (its ETag changed); and
a grant's lifecycle costs one read and one write each way, with no user lookup for a login
whose id Airlock already knows. And when x-ratelimit-remaining runs low, revocations go
first, then grants, then the drift check (the team sync: tests/requests_app/test_team_sync.py),
until GitHub's window resets."""

import io
import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from grants.drift import grants_drift_check
from grants.models import Grant
from grants.reconciler import reconcile_environment
from grants.services import grant_reconcile, grants_sweep
from integrations.github import Band, GitHubClient, github_budget
from integrations.github.models import (
    InstallationAccessToken,
    RateLimitBudget,
    RememberedRead,
)
from requests_app.models import AccessRequest
from tests.grants.factories import (
    environment_secret,
    expire_now,
    organization_secret,
    reviewer_grant,
    secret_grant,
)

pytestmark = pytest.mark.django_db
State = Grant.State


class Calls:
    """What the local GitHub was asked since the last look, and what counted against the
    hourly rate limit (every answer but a 304)."""

    def __init__(self, github):
        self.github = github
        self.seen = len(github.requests)
        self.used = github.rate_limited_calls

    def take(self) -> tuple[int, list[tuple[str, str, int]]]:
        new = self.github.requests[self.seen :]
        used = self.github.rate_limited_calls - self.used
        self.seen, self.used = len(self.github.requests), self.github.rate_limited_calls
        return used, [(r.method, r.path, r.status) for r in new]


@pytest.fixture
def estate(gh):
    """Three managed targets with grants in force: reviewers on two environments, an
    environment secret, an organization secret's repository."""
    gh.add_user("alice")
    gh.add_user("bob")
    gh.add_environment("acme/api", "production", reviewers=[("User", "bob")])
    gh.add_environment("acme/api", "staging")
    gh.add_environment("acme/web", "production")
    gh.add_org_secret("acme", "NPM_PUBLISH_TOKEN", repositories=["acme/web"])
    grants = [
        reviewer_grant("alice"),
        reviewer_grant("alice", repository="acme/web"),
        secret_grant(environment_secret(), environment="staging"),
        secret_grant(organization_secret("NPM_PUBLISH_TOKEN", org="acme"), "carol"),
    ]
    for grant in grants:
        grant_reconcile(grant=grant)
        grant.refresh_from_db()
        assert grant.state == Grant.State.APPLIED, grant.last_error
    return grants


def reconcile() -> str:
    out = io.StringIO()
    call_command("reconcile", stdout=out)
    return out.getvalue()


def test_a_second_reconcile_with_nothing_changed_costs_no_rate_limited_call(gh, estate):
    calls = Calls(gh)
    reconcile()
    first, _ = calls.take()

    summary = reconcile()
    second, asked = calls.take()

    # One conditional GET per thing the drift check reads: the three environments'
    # protection, the secret's presence, the organization secret's repositories; all 304.
    assert first == 5, asked
    assert second == 0, asked
    assert sorted(asked) == sorted(
        [
            ("GET", "/repos/acme/api/environments/production", 304),
            ("GET", "/repos/acme/api/environments/staging", 304),
            ("GET", "/repos/acme/web/environments/production", 304),
            ("GET", "/repos/acme/api/environments/staging/secrets/DEPLOY_TOKEN", 304),
            ("GET", "/orgs/acme/actions/secrets/NPM_PUBLISH_TOKEN/repositories", 304),
        ]
    )
    assert not AuditEvent.objects.filter(action="target.drift").exists()
    assert "acme/api:staging: 0 applied, 0 revoked, 0 failed, 2 read(s) (2 unchanged, free)" in (
        summary
    )
    assert summary.count("1 read(s) (1 unchanged, free), 0 write(s)") == 3
    # What makes it last past a worker restart: the ETags and answers are in the database.
    assert RememberedRead.objects.count() >= 5


def test_a_change_on_github_between_two_reconciles_is_seen_and_repaired(gh, estate):
    reconcile()
    calls = Calls(gh)
    # By hand on GitHub: alice taken off acme/web's reviewers, a wait timer set on acme/api.
    gh.add_environment("acme/web", "production")
    gh.add_environment("acme/api", "production", reviewers=["bob", "alice"], wait_timer=5)

    reconcile()

    used, asked = calls.take()
    assert gh.reviewers("acme/web", "production") == ["alice"]
    changed = [r for r in asked if r[2] != 304]
    # acme/web: read (its ETag changed) and repaired; acme/api: read, nothing to repair
    # (Airlock's reviewer is there), the new wait timer audited as drift.
    assert sorted(changed) == [
        ("GET", "/repos/acme/api/environments/production", 200),
        ("GET", "/repos/acme/web/environments/production", 200),
        ("PUT", "/repos/acme/web/environments/production", 200),
    ]
    assert used == 3
    assert AuditEvent.objects.filter(action="target.drift").count() == 2

    again = Calls(gh)
    reconcile()
    # The repair's own write changed acme/web once more: one read sees it, then all is quiet.
    assert again.take()[0] == 1
    reconcile()
    assert again.take()[0] == 0


def test_a_secret_deleted_by_hand_is_seen_and_written_again(gh, estate):
    reconcile()
    staging = gh.state.environment_of(gh.state.repo("acme/api"), "staging")
    gh.state.delete_secret(staging.secrets, "DEPLOY_TOKEN")
    calls = Calls(gh)

    reconcile()

    used, asked = calls.take()
    assert gh.environment_secret_value("acme/api", "staging", "DEPLOY_TOKEN") == "s3cret-value"
    assert sorted(r for r in asked if r[2] != 304) == [
        ("GET", "/repos/acme/api/environments/staging/secrets/DEPLOY_TOKEN", 404),
        ("PUT", "/repos/acme/api/environments/staging/secrets/DEPLOY_TOKEN", 201),
    ]
    # The public key had not changed: asked conditionally, answered 304.
    assert ("GET", "/repos/acme/api/environments/staging/secrets/public-key", 304) in asked
    assert used == 2
    drift = AuditEvent.objects.get(action="target.drift")
    assert drift.detail == {"secret": "DEPLOY_TOKEN", "expected": "present", "found": "absent"}


def test_the_hourly_drift_check_with_nothing_changed_costs_nothing(gh, estate):
    target_id = estate[0].target_id
    reconcile_environment(target_id, check=True)  # learns the ETag after the grant's write
    calls = Calls(gh)

    result = reconcile_environment(target_id, check=True)

    used, asked = calls.take()
    assert used == 0
    assert asked == [("GET", "/repos/acme/api/environments/production", 304)]
    assert (result.github_reads, result.github_unchanged, result.github_writes) == (1, 1, 0)
    assert "1 unchanged" in result.summary()


def test_a_grant_lifecycle_costs_a_read_and_a_write_each_way_and_no_user_lookup_twice(gh):
    gh.add_user("alice")
    gh.add_user("bob")
    gh.add_environment("acme/api", "production")
    # Warm the target: Airlock has read it before (a drift check, an earlier grant).
    warm = reviewer_grant("bob")
    grant_reconcile(grant=warm)
    reconcile_environment(expire_now(warm).target_id)

    lifecycles = []
    for _ in range(2):
        calls = Calls(gh)
        grant = reviewer_grant("alice")  # no GitHub sign-in: only her login is known
        grant_reconcile(grant=grant)
        applied = calls.take()
        reconcile_environment(expire_now(grant).target_id)
        revoked = calls.take()
        grant.refresh_from_db()
        assert grant.state == Grant.State.REVOKED
        lifecycles.append((applied, revoked))

    (first_apply, first_revoke), (second_apply, second_revoke) = lifecycles
    lookups = [r for r in first_apply[1] if r[1] == "/users/alice"]
    assert lookups == [("GET", "/users/alice", 200)]  # her id, once: GitHub ids never change
    assert first_apply[0] == 3 and first_revoke[0] == 2
    # The second time: one read and one write to apply, one read and one write to revoke.
    assert [(m, p) for m, p, _ in second_apply[1]] == [
        ("GET", "/repos/acme/api/environments/production"),
        ("PUT", "/repos/acme/api/environments/production"),
    ]
    assert [(m, p) for m, p, _ in second_revoke[1]] == [
        ("GET", "/repos/acme/api/environments/production"),
        ("PUT", "/repos/acme/api/environments/production"),
    ]
    assert second_apply[0] + second_revoke[0] == 4


def in_another_process(work):
    """Run work as a process of its own would: in a new thread, which has its own PyGithub
    client and token holder (connections.engine_github is per thread), and so takes the
    App's installation token from the database as another process does."""
    outcome = {}

    def run():
        try:
            outcome["result"] = work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return outcome["result"]


@pytest.mark.django_db(transaction=True)
def test_under_a_new_app_installation_token_the_first_read_is_paid_again(gh, github_app, settings):
    # GitHub's ETags are specific to the token (the local GitHub's too), and an App's
    # installation token lasts an hour. Every process shares the one token
    # (installation_tokens.py): a new process reads for free; the token that replaces it
    # when it is due reads in full once.
    settings.GITHUB_TOKEN = ""
    github_app()
    gh.add_user("alice")
    gh.add_environment("acme/api", "production")
    grant = reviewer_grant("alice")
    grant_reconcile(grant=grant)
    reconcile_environment(grant.target_id, check=True)
    calls = Calls(gh)

    same_token = reconcile_environment(grant.target_id, check=True)
    assert calls.take()[0] == 0
    same_token_elsewhere = in_another_process(
        lambda: reconcile_environment(grant.target_id, check=True)
    )
    used, asked = calls.take()
    assert [(m, s) for m, _, s in asked] == [("GET", 304)]
    assert used == 0

    # Within five minutes of its expiry, the next process to act replaces it.
    InstallationAccessToken.objects.update(expires_at=timezone.now() + timedelta(minutes=4))
    new_token = in_another_process(lambda: reconcile_environment(grant.target_id, check=True))

    used, asked = calls.take()
    assert [(m, s) for m, _, s in asked] == [("POST", 201), ("GET", 200)]
    assert used == 2
    assert not same_token.drift and not same_token_elsewhere.drift
    assert not new_token.drift and not new_token.errors
    assert len(gh.installation_tokens) == 2


# --- when the budget runs low: revocations first, then grants, then drift and team sync -----


def wait_for_the_reset(github):
    """Until GitHub's window has reset (x-ratelimit-reset is in whole seconds)."""
    time.sleep(max(0.0, github.state.rate_limit_reset - time.time()) + 0.05)


@pytest.fixture
def due(gh):
    """On acme/api: bob's new grant on staging (its target made first, so that it sorts
    before production); alice's grant on production, applied and past its end; carol's new
    grant on production. GitHub has said that `remaining` of its 5,000 are left, resetting
    in `reset_in` seconds: Airlock learnt it from the answer to a drift check."""

    def make(*, remaining: int, reset_in: int = 3600):
        for login in ("alice", "bob", "carol"):
            gh.add_user(login)
        gh.add_environment("acme/api", "production")
        gh.add_environment("acme/api", "staging")
        bob = reviewer_grant("bob", environment="staging")
        alice = reviewer_grant("alice")
        grant_reconcile(grant=alice)
        gh.spend_rate_limit(remaining=remaining, reset_in=reset_in)
        reconcile_environment(alice.target_id, check=True)
        carol = reviewer_grant("carol")
        expire_now(alice)
        return alice, bob, carol

    return make


def states(*grants):
    return [Grant.objects.get(pk=g.pk).state for g in grants]


def test_with_the_budget_critical_a_sweep_revokes_and_new_grants_wait_for_the_reset(
    gh, due, eager_celery
):
    alice, bob, carol = due(remaining=300, reset_in=8)  # 6% left: critical
    assert github_budget().band() == Band.CRITICAL
    calls = Calls(gh)

    report = grants_sweep()

    _, asked = calls.take()
    # Alice's access ended on GitHub; carol's grant, on the same environment, waited, and
    # the environment with only bob's new grant was not even read.
    assert gh.reviewers("acme/api", "production") == []
    assert [(m, p) for m, p, _ in asked] == [
        ("GET", "/repos/acme/api/environments/production"),
        ("PUT", "/repos/acme/api/environments/production"),
    ]
    assert states(alice, bob, carol) == [State.REVOKED, State.PENDING, State.PENDING]
    assert report.deferred == 1 and "waiting for GitHub's budget" in str(report)
    # Waiting is not failing: the requests stay approved, no attempt is counted.
    for grant in (bob, carol):
        grant.refresh_from_db()
        assert grant.access_request.status == AccessRequest.Status.APPROVED
        assert (grant.attempts, grant.last_error) == (0, "")
    # Nor does the drift check spend what is left.
    assert grants_drift_check() == 0
    assert calls.take() == (0, [])

    wait_for_the_reset(gh)
    assert github_budget().band() == Band.NORMAL  # the window it was seen in has ended
    grants_sweep()

    assert states(bob, carol) == [State.APPLIED, State.APPLIED]
    assert gh.reviewers("acme/api", "staging") == ["bob"]
    assert gh.reviewers("acme/api", "production") == ["carol"]
    assert grants_drift_check() == 2
    # GitHub's answers since the reset report the new window, and Airlock keeps it.
    assert github_budget().remaining > 4900


def test_with_the_budget_low_revocations_go_first_grants_apply_and_the_drift_check_waits(
    gh, due, eager_celery
):
    alice, bob, carol = due(remaining=1000)  # 20% left: low
    calls = Calls(gh)

    grants_sweep()

    _, asked = calls.take()
    assert states(alice, bob, carol) == [State.REVOKED, State.APPLIED, State.APPLIED]
    # Production (alice's revocation, and carol's grant in the same write) before staging
    # (bob's grant alone), although staging's target sorts first.
    assert [(m, p) for m, p, _ in asked] == [
        ("GET", "/users/carol"),
        ("GET", "/repos/acme/api/environments/production"),
        ("PUT", "/repos/acme/api/environments/production"),
        ("GET", "/users/bob"),
        ("GET", "/repos/acme/api/environments/staging"),
        ("PUT", "/repos/acme/api/environments/staging"),
    ]
    assert grants_drift_check() == 0
    # A drift check already queued runs as a plain pass: with nothing to do, no call.
    result = reconcile_environment(alice.target_id, check=True)
    assert result.deferred == ["drift check"]
    assert "deferred (GitHub's budget is low): drift check" in result.summary()
    assert calls.take() == (0, [])


def test_the_budget_is_kept_in_the_database_once_per_band_not_once_per_call(gh, caplog):
    gh.add_environment("acme/api", "production")
    client = GitHubClient()
    client.get_environment("acme/api", "production")
    first = RateLimitBudget.objects.get(client="engine")
    assert (first.limit, first.reset_at.timestamp()) == (5000, gh.state.rate_limit_reset)

    for _ in range(3):
        client.get_environment("acme/api", "production")
    assert RateLimitBudget.objects.get(client="engine").seen_at == first.seen_at

    gh.spend_rate_limit(remaining=1000)  # a new band (and window): written at once
    client.get_environment("acme/api", "production")
    low = RateLimitBudget.objects.get(client="engine")
    assert low.remaining == 1000 and github_budget().band() == Band.LOW

    # The change of band is logged once, not by every call (nor every sweep) while it lasts.
    cache.clear()  # as another process would, with its own cache
    client.get_environment("acme/api", "production")
    changes = [r.getMessage() for r in caplog.records if r.name == "integrations.github.budget"]
    assert changes == [
        "GitHub's budget for engine is low (1000 of 5000 left until "
        f"{low.reset_at.isoformat()}): the drift check and the team sync wait"
    ]
