"""Benchmark data: people, a policy, requests and grants, in the database and on the local
GitHub, through the real services or in bulk."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from grants.models import Grant, Target
from requests_app.models import (
    AccessPolicy,
    AccessRequest,
    Approval,
    ApproverGroup,
    ApproverGroupMember,
)
from requests_app.selectors import approver_identity as _identity_of
from requests_app.services import access_request_approve, access_request_create

User = get_user_model()

APPROVERS = ("bench-approver-1", "bench-approver-2")
POLICY = "bench"
REASON = "Benchmark: measured access for a scripted deployment"


def bench_policy() -> tuple[AccessPolicy, list]:
    """One policy for every benchmark target (one approval from the bench approvers), and
    the approvers as users."""
    group, _ = ApproverGroup.objects.get_or_create(name="bench-approvers")
    for login in APPROVERS:
        ApproverGroupMember.objects.get_or_create(group=group, login=login)
    approvers = [User.objects.get_or_create(username=login)[0] for login in APPROVERS]
    policy, _ = AccessPolicy.objects.get_or_create(
        name=POLICY,
        defaults={
            "repository_patterns": ["*/*"],
            "environment_patterns": ["*"],
            "access_kinds": ["reviewer", "secret"],
            "max_duration": timedelta(days=2),
            "default_duration": timedelta(hours=1),
            "approvals_required": 1,
            "reason_min_length": 10,
            "pending_ttl": timedelta(hours=24),
        },
    )
    policy.approver_groups.add(group)
    return policy, approvers


def users(logins) -> dict[str, object]:
    """Portal users for these logins (created in bulk when missing)."""
    logins = sorted(set(logins))
    existing = {u.username: u for u in User.objects.filter(username__in=logins)}
    missing = [User(username=login, email=f"{login}@example.com") for login in logins
               if login not in existing]
    for user in missing:
        user.set_unusable_password()
    User.objects.bulk_create(missing, batch_size=1000)
    return {u.username: u for u in User.objects.filter(username__in=logins)}


@dataclass(frozen=True)
class Environment:
    repository: str
    environment: str
    logins: tuple[str, ...]  # the requesters whose grants land here
    baseline: str  # a permanent reviewer, there before Airlock and after it

    @property
    def key(self) -> tuple[str, str]:
        return (self.repository.lower(), self.environment.lower())


def environments(prefix: str, count: int, per_env: int, *, user_pool: int | None = None):
    """count environments `<prefix>/svc-NNN:production`, each with per_env requesters
    (from a pool of user_pool logins, or distinct ones) and one baseline reviewer."""
    pool = user_pool or count * per_env
    result = []
    for index in range(count):
        logins = tuple(
            f"{prefix}-u{(index * per_env + k) % pool:04d}" for k in range(per_env)
        )
        result.append(
            Environment(f"{prefix}/svc-{index:03d}", "production", logins, f"{prefix}-owner")
        )
    return result


def seed_github(github, envs: list[Environment]) -> dict[str, int]:
    """Repositories, environments (with the baseline reviewer) and users on the local
    GitHub; returns {login: GitHub user id}."""
    for env in envs:
        github.add_repo(env.repository)
        for login in env.logins:
            github.add_user(login)
        github.add_environment(env.repository, env.environment, reviewers=[env.baseline])
    logins = {login for env in envs for login in (*env.logins, env.baseline)}
    return {login: github.add_user(login).id for login in logins}


def approve_through_services(envs: list[Environment], *, duration_minutes: int = 60) -> list[int]:
    """File and approve one reviewer request per (environment, requester) with the real
    services; each approval enqueues its grant after the commit. Returns request ids."""
    policy, approvers = bench_policy()
    people = users(login for env in envs for login in env.logins)
    ids = []
    for env in envs:
        for login in env.logins:
            access_request = access_request_create(
                requester=people[login],
                repository=env.repository,
                environment=env.environment,
                access="reviewer",
                reason=REASON,
                duration_minutes=duration_minutes,
            )
            access_request_approve(access_request=access_request, approver=approvers[0])
            ids.append(access_request.pk)
    return ids


def bulk_grants(
    envs: list[Environment],
    *,
    grants_per_user: int = 1,
    status: str = AccessRequest.Status.APPROVED,
    github_ids: dict[str, int] | None = None,
    expires_in: tuple[float, float] | None = None,
    rng: random.Random | None = None,
) -> int:
    """Requests and their grants in bulk, grants_per_user per requester and environment.

    status APPROVED: pending grants for the reconciler to apply (github_user_id filled in,
    as a requester who signed in with GitHub has it). status ACTIVE: grants already applied,
    ending at a random moment `expires_in` seconds (min, max) from now.
    """
    rng = rng or random.Random(7)
    policy, approvers = bench_policy()
    people = users(login for env in envs for login in env.logins)
    now = timezone.now()
    active = status == AccessRequest.Status.ACTIVE
    identities: dict[int, str] = {}

    def identity_of(user) -> str:
        # Recorded as the services record it; once per person, not once per row.
        if user.pk not in identities:
            identities[user.pk] = _identity_of(user)
        return identities[user.pk]

    count = 0
    with transaction.atomic():
        targets = {}
        for env in envs:
            target, _ = Target.objects.get_or_create(
                repository=env.repository, environment=env.environment, dry_run=False
            )
            targets[env.key] = target
        requests, grants, approvals = [], [], []
        for env in envs:
            for login in env.logins:
                for _ in range(grants_per_user):
                    expires_at = (
                        now + timedelta(seconds=rng.uniform(*expires_in)) if active else None
                    )
                    request = AccessRequest(
                        requester=people[login],
                        requester_identity=identity_of(people[login]),
                        repository=env.repository,
                        environment=env.environment,
                        access="reviewer",
                        reason=REASON,
                        duration_minutes=60,
                        policy=policy,
                        approvals_required=1,
                        status=status,
                        pending_until=now + timedelta(hours=24),
                        decided_at=now,
                        granted_at=now if active else None,
                        expires_at=expires_at,
                    )
                    requests.append(request)
                    grants.append(
                        Grant(
                            target=targets[env.key],
                            kind=Grant.Kind.REVIEWER,
                            login=login,
                            github_user_id=(github_ids or {}).get(login),
                            state=Grant.State.APPLIED if active else Grant.State.PENDING,
                            applied_at=now if active else None,
                            expires_at=expires_at,
                        )
                    )
        AccessRequest.objects.bulk_create(requests, batch_size=2000)
        for request, grant in zip(requests, grants, strict=True):
            grant.access_request = request
            approver = rng.choice(approvers)
            approvals.append(
                Approval(
                    request=request,
                    approver=approver,
                    approver_identity=identity_of(approver),
                    comment="",
                )
            )
        Grant.objects.bulk_create(grants, batch_size=2000)
        Approval.objects.bulk_create(approvals, batch_size=2000)
        count = len(grants)
    return count


def already_on_github(github, envs: list[Environment], github_ids: dict[str, int]) -> None:
    """Make active bulk grants' environments look as the reconciler leaves them after
    applying: the requesters are reviewers on the local GitHub (after the baseline), and
    each target remembers its baseline and the reviewers Airlock added. (observed stays
    empty, so the first reconcile does not report drift.)"""
    now = timezone.now()
    for env in envs:
        github.add_environment(
            env.repository, env.environment, reviewers=[env.baseline, *env.logins]
        )
        Target.objects.filter(
            repository=env.repository, environment=env.environment, dry_run=False
        ).update(
            baseline_reviewers=[
                {"type": "User", "id": github_ids[env.baseline], "login": env.baseline}
            ],
            baseline_recorded_at=now,
            airlock_reviewers=[
                {"type": "User", "id": github_ids[login], "login": login}
                for login in env.logins
            ],
        )


def set_expiries(expiries: dict[int, object]) -> None:
    """Move grants' ends (and their requests') to the given moments {grant id: datetime},
    as if they had been granted for exactly that long. Test data, not engine state."""
    grants = list(Grant.objects.filter(pk__in=list(expiries)).only("pk", "access_request_id"))
    requests = []
    for grant in grants:
        grant.expires_at = expiries[grant.pk]
        requests.append(AccessRequest(pk=grant.access_request_id, expires_at=grant.expires_at))
    with transaction.atomic():
        Grant.objects.bulk_update(grants, ["expires_at"], batch_size=1000)
        AccessRequest.objects.bulk_update(requests, ["expires_at"], batch_size=1000)
