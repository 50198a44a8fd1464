"""The drift check and the operator's full reconcile: every target Airlock manages compared
with GitHub, what it manages repaired, and the difference audited (by the reconciler)."""

from __future__ import annotations

import logging

from django.db.models import Q

from grants import reconciler
from grants.models import Grant, OrgSecretTarget, Target
from grants.scheduling import schedule_reconcile
from grants.services import grant_create_for_request
from integrations.github import Work, github_budget
from requests_app.models import AccessRequest

logger = logging.getLogger(__name__)


def managed_targets():
    """Every target Airlock has touched on GitHub (dry-run ones have nothing to compare)."""
    targets = Target.objects.filter(dry_run=False).filter(
        Q(baseline_recorded_at__isnull=False) | Q(grants__state__in=Grant.OPEN_STATES)
    )
    org_secrets = OrgSecretTarget.objects.filter(dry_run=False).filter(
        Q(baseline_recorded_at__isnull=False) | Q(grants__state__in=Grant.OPEN_STATES)
    )
    return list(targets.distinct()), list(org_secrets.distinct())


def grants_drift_check() -> int:
    """Enqueue a checking reconcile of every managed target (hourly, from beat): each reads
    GitHub, audits any difference from what Airlock last saw, and repairs what it manages.
    None while GitHub's budget is low: the next hourly run after the reset checks."""
    budget = github_budget()
    if budget is not None and not budget.allows(Work.DRIFT_CHECK):
        logger.warning(
            "Drift check deferred: GitHub's budget is low (%d of %d left until %s)",
            budget.remaining, budget.limit, budget.reset_at.isoformat(),
        )
        return 0
    targets, org_secrets = managed_targets()
    for target in targets:
        schedule_reconcile(Target, target.pk, check=True)
    for org_secret in org_secrets:
        schedule_reconcile(OrgSecretTarget, org_secret.pk, check=True)
    return len(targets) + len(org_secrets)


def reconcile_all(*, check: bool = True) -> list[reconciler.ReconcileResult]:
    """Reconcile every target now, in this process (manage.py reconcile): first whatever
    the sweep would find, then every managed target, with a drift check."""
    for access_request in AccessRequest.objects.filter(
        status=AccessRequest.Status.APPROVED, grant__isnull=True
    ):
        grant_create_for_request(access_request=access_request)
    targets = Target.objects.filter(
        Q(baseline_recorded_at__isnull=False) | Q(grants__state__in=Grant.OPEN_STATES)
    ).distinct()
    org_secrets = OrgSecretTarget.objects.filter(
        Q(baseline_recorded_at__isnull=False) | Q(grants__state__in=Grant.OPEN_STATES)
    ).distinct()
    results = [
        reconciler.reconcile_environment(t.pk, check=check and not t.dry_run) for t in targets
    ]
    results += [
        reconciler.reconcile_org_secret(o.pk, check=check and not o.dry_run) for o in org_secrets
    ]
    return results
