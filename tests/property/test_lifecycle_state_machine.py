"""A Hypothesis state machine over the life of requests and grants.

Hypothesis picks a sequence of steps (file a request, approve it as anyone, try to
approve one's own, deny, cancel, ask for an extension, let a grant expire, give it back,
make GitHub fail, crash a worker mid-reconcile, let its lease run out, run the sweep and a
reconcile) and after every step the invariants must hold:

- no request is approved, and no grant exists, without the required number of distinct
  approvals, and nobody ever approved their own request;
- the grant check says "allowed" only for an active request whose expires_at is still
  ahead, whose grant is on GitHub and not being revoked (what "active" means to a workflow;
  the request's status itself turns from active to expired once the engine has removed the
  access, which the next invariant checks);
- after a reconcile that met a healthy GitHub: no request is still active past its expiry,
  and the environment's reviewers are exactly its baseline plus the people holding grants
  in force;
- the audit log stays one unbroken hash chain (the events each step added are checked as it
  goes; the whole chain at the end of every example).

Everything runs in this process with the real services and reconciler, against the local
GitHub over HTTP. Nothing of ours is patched: time moves by moving a grant's expiry into
the past in the database (test data), a lost message is the one that is never delivered
here (approvals enqueue to an in-memory broker nobody consumes; the sweep has to find the
work), and a crashed worker is the lease it leaves behind on the target.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from audit.verification import verify_chain
from core.errors import NotAllowed, WrongState
from grants import reconciler
from grants.check import CheckScope, grant_check
from grants.models import Grant, Target
from grants.services import grant_revoke, grants_sweep
from requests_app.models import AccessRequest, Approval
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_create,
    access_request_deny,
    access_request_extend,
)
from tests.requests_app.factories import AccessPolicyFactory, ApproverGroupFactory, UserFactory

pytestmark = pytest.mark.django_db

APPROVERS = ("prop-alice", "prop-bob", "prop-carol")
# prop-carol is an approver who also asks for access: she must never approve her own.
REQUESTERS = ("prop-dave", "prop-erin", "prop-carol")
BASELINE = "prop-owner"
ENVIRONMENT = "production"
DEAD_WORKER = "crashed-worker:0:0"
REASON = "Property test: deploying a scripted change"

_examples = itertools.count(1)


class LifecycleMachine(RuleBasedStateMachine):
    github = None  # the local GitHub, set by the test

    requests = Bundle("requests")

    def __init__(self):
        super().__init__()
        # A repository (and so a policy and a target) of its own for every example: the
        # examples share one database and one local GitHub.
        self.repository = f"acme/prop-{next(_examples)}"
        self.group = ApproverGroupFactory(
            name=f"prop-approvers-{self.repository[10:]}", members=list(APPROVERS)
        )
        self.users = {login: UserFactory(username=login) for login in APPROVERS + REQUESTERS}
        for login in (*APPROVERS, *REQUESTERS, BASELINE):
            self.github.add_user(login)
        self.github.add_repo(self.repository)
        self.github.add_environment(self.repository, ENVIRONMENT, reviewers=[BASELINE])
        self.request_ids: list[int] = []
        head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON_ID).first()
        self.audit_seq = head.seq if head else 0
        self.audit_hash = head.hash if head else GENESIS_HASH

    # --- helpers -------------------------------------------------------------------------

    def _request(self, pk: int) -> AccessRequest:
        return AccessRequest.objects.select_related("requester").get(pk=pk)

    def _grant(self, pk: int) -> Grant | None:
        return Grant.objects.filter(access_request_id=pk).first()

    def _target(self) -> Target | None:
        return Target.objects.filter(repository=self.repository, dry_run=False).first()

    def _add(self, access_request: AccessRequest):
        self.request_ids.append(access_request.pk)
        return access_request.pk

    # --- people ----------------------------------------------------------------------------

    @initialize(target=requests, approvals=st.sampled_from([1, 2]),
                requester=st.sampled_from(REQUESTERS))
    def a_policy_and_a_first_request(self, approvals, requester):
        AccessPolicyFactory(
            name=f"prop-{self.repository[10:]}",
            repository_patterns=[self.repository],
            environment_patterns=[ENVIRONMENT],
            access_kinds=["reviewer"],
            approvals_required=approvals,
            approver_groups=[self.group],
            max_duration=timedelta(hours=4),
            default_duration=timedelta(hours=1),
        )
        return self.create(requester=requester, minutes=60, approvers=APPROVERS[:approvals])

    @rule(target=requests, requester=st.sampled_from(REQUESTERS),
          minutes=st.integers(min_value=1, max_value=120),
          approvers=st.lists(st.sampled_from(APPROVERS), max_size=3))
    def create(self, requester, minutes, approvers=()):
        """File a request; the approvers given (anyone, the requester included) then try to
        approve it, one after another."""
        try:
            access_request = access_request_create(
                requester=self.users[requester],
                repository=self.repository,
                environment=ENVIRONMENT,
                access="reviewer",
                reason=REASON,
                duration_minutes=minutes,
            )
        except ValidationError:
            return multiple()  # e.g. a pending request for the same thing already exists
        for approver in approvers:
            self.approve(access_request.pk, approver)
        return self._add(access_request)

    @rule(pk=requests, approver=st.sampled_from(APPROVERS))
    def approve(self, pk, approver):
        access_request = self._request(pk)
        own = access_request.requester.username == approver
        try:
            access_request_approve(access_request=access_request, approver=self.users[approver])
        except NotAllowed:
            assert own, f"{approver} was refused approving someone else's request"
        except WrongState:
            pass  # decided already, or approved by this approver before
        else:
            assert not own, f"{approver} approved their own request #{pk}"

    @rule(pk=requests)
    def self_approve(self, pk):
        access_request = self._request(pk)
        with pytest.raises((NotAllowed, WrongState)):
            access_request_approve(access_request=access_request,
                                   approver=access_request.requester)

    @rule(pk=requests, approver=st.sampled_from(APPROVERS), by_requester=st.booleans())
    def close(self, pk, approver, by_requester):
        """An approver denies the request, or its requester cancels it."""
        access_request = self._request(pk)
        try:
            if by_requester:
                access_request_cancel(access_request=access_request,
                                      user=access_request.requester)
            else:
                access_request_deny(access_request=access_request,
                                    approver=self.users[approver])
        except (NotAllowed, WrongState):
            pass

    @rule(target=requests, pk=requests, minutes=st.integers(min_value=1, max_value=60))
    def extend(self, pk, minutes):
        original = self._request(pk)
        try:
            extension = access_request_extend(
                original=original, requester=original.requester, reason=REASON,
                duration_minutes=minutes,
            )
        except (NotAllowed, WrongState, ValidationError):
            return multiple()
        return self._add(extension)

    @rule(pk=requests)
    def give_back(self, pk):
        grant = self._grant(pk)
        if grant is None:
            return
        try:
            grant_revoke(grant=grant, user=grant.access_request.requester, comment="done")
        except WrongState:
            pass

    # --- time, GitHub and workers ----------------------------------------------------------

    @rule(pk=requests)
    def expire(self, pk):
        """Time passes until this grant's end (moved in the database: test data)."""
        grant = self._grant(pk)
        if grant is None or grant.state != Grant.State.APPLIED:
            return
        past = timezone.now() - timedelta(milliseconds=10)
        Grant.objects.filter(pk=grant.pk).update(expires_at=past)
        AccessRequest.objects.filter(pk=pk).update(expires_at=past)

    @rule(kind=st.sampled_from(["5xx", "rate limit"]), times=st.integers(1, 4))
    def github_misbehaves(self, kind, times):
        """The next `times` calls fail (3 attempts per call: 3 or more fail a reconcile)."""
        if kind == "5xx":
            self.github.faults.add("*", "/repos/**", 502, times=times)
        else:
            self.github.faults.secondary_rate_limit(
                "PUT", "/repos/**", retry_after=0, times=times
            )

    @rule(lease_ran_out=st.booleans())
    def worker_crashes_mid_reconcile(self, lease_ran_out):
        """A worker died holding the target's lease; it stays until it runs out (or, with
        lease_ran_out, has already)."""
        until = timezone.now() + (
            -timedelta(seconds=1) if lease_ran_out else timedelta(minutes=5)
        )
        Target.objects.filter(repository=self.repository).update(
            lease_owner=DEAD_WORKER, lease_until=until
        )

    @rule()
    def dead_workers_lease_runs_out(self):
        Target.objects.filter(repository=self.repository, lease_owner=DEAD_WORKER).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )

    @rule()
    def sweep_and_reconcile(self):
        """What beat and the worker do: the sweep finds the due work (its messages are lost
        here), then the target is reconciled."""
        healthy_before = not self.github.faults.pending
        grants_sweep()
        target = self._target()
        if target is None:
            return
        result = reconciler.reconcile_environment(target.pk)
        healthy = (
            healthy_before and not self.github.faults.pending and not result.busy
            and not result.errors
        )
        event(f"reconcile: {'healthy' if healthy else 'GitHub failing, busy or crashed'}")
        if healthy:
            self._github_matches_grants(target)
            applied = Grant.objects.filter(target=target, state=Grant.State.APPLIED).count()
            event(f"healthy reconcile left {min(applied, 3)}{'+' if applied >= 3 else ''} "
                  "grant(s) applied")

    def _github_matches_grants(self, target: Target) -> None:
        now = timezone.now()
        late = AccessRequest.objects.filter(
            pk__in=self.request_ids, status=AccessRequest.Status.ACTIVE, expires_at__lte=now
        )
        assert not late.exists(), f"still active past expiry after a reconcile: {list(late)}"
        in_force = {
            login.lower()
            for login in Grant.objects.filter(
                target=target,
                state=Grant.State.APPLIED,
                revoke_requested_at__isnull=True,
                expires_at__gt=now + reconciler.EXPIRY_TOLERANCE,
            ).values_list("login", flat=True)
        }
        on_github = {r.lower() for r in self.github.reviewers(self.repository, ENVIRONMENT)}
        assert on_github == {BASELINE} | in_force, (
            f"GitHub has {sorted(on_github)}, expected baseline + grants in force "
            f"{sorted({BASELINE} | in_force)}"
        )

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def approvals_are_distinct_and_never_ones_own(self):
        own = Approval.objects.filter(
            request_id__in=self.request_ids, approver=F("request__requester")
        )
        assert not own.exists(), f"self-approval: {list(own)}"
        decided = AccessRequest.objects.filter(pk__in=self.request_ids).filter(
            status__in=[
                AccessRequest.Status.APPROVED,
                AccessRequest.Status.ACTIVE,
                AccessRequest.Status.EXPIRED,
                AccessRequest.Status.REVOKED,
                AccessRequest.Status.FAILED,
            ]
        )
        with_grant = AccessRequest.objects.filter(pk__in=self.request_ids, grant__isnull=False)
        for access_request in (decided | with_grant).distinct():
            approvers = set(access_request.approvals.values_list("approver_id", flat=True))
            assert len(approvers) >= access_request.approvals_required, (
                f"#{access_request.pk} is {access_request.status} with "
                f"{len(approvers)} of {access_request.approvals_required} approvals"
            )

    @invariant()
    def the_check_allows_only_access_in_force(self):
        now = timezone.now()
        for login in REQUESTERS:
            answer = grant_check(
                scope=CheckScope(repository=self.repository, environment=ENVIRONMENT,
                                 login=login)
            )
            if not answer.allowed:
                continue
            found = AccessRequest.objects.get(pk=answer.grant.request)
            assert found.status == AccessRequest.Status.ACTIVE
            assert found.expires_at > now, f"#{found.pk} allowed past its expiry"
            grant = self._grant(found.pk)
            assert grant is not None and grant.state == Grant.State.APPLIED, (
                f"#{found.pk} allowed but its grant is {grant and grant.state}"
            )
            assert grant.revoke_requested_at is None

    @invariant()
    def the_audit_chain_grows_unbroken(self):
        for record in AuditEvent.objects.filter(seq__gt=self.audit_seq).order_by("seq"):
            assert record.seq == self.audit_seq + 1, f"audit seq gap before {record.seq}"
            assert record.prev_hash == self.audit_hash, f"audit event {record.seq} mislinked"
            assert record.compute_hash() == record.hash, f"audit event {record.seq} altered"
            self.audit_seq, self.audit_hash = record.seq, record.hash

    def teardown(self):
        # GitHub recovers and the dead worker's lease runs out: one more sweep and
        # reconcile must leave GitHub exactly as the grants say.
        self.github.faults.clear()
        self.dead_workers_lease_runs_out()
        grants_sweep()
        target = self._target()
        if target is not None:
            result = reconciler.reconcile_environment(target.pk)
            assert not result.busy and not result.errors, result.summary()
            self._github_matches_grants(target)
        result = verify_chain()
        assert result.ok, f"the audit chain does not verify: {result.problem}"


def test_request_and_grant_lifecycle_keeps_its_invariants(local_github):
    LifecycleMachine.github = local_github
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
