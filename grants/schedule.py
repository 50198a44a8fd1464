"""The beat schedule, declared here and installed idempotently into django-celery-beat's
tables (when and why: docs/operations.md)."""

import json
import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def beat_schedule() -> dict[str, dict]:
    sweep = settings.AIRLOCK_SWEEP_SECONDS
    drift = settings.AIRLOCK_DRIFT_CHECK_SECONDS
    return {
        "airlock: sweep": {
            "task": "grants.tasks.sweep",
            "every": sweep,
            # A sweep nobody ran in time is superseded by the next one: without an expiry,
            # a worker back after an outage would run a backlog of identical sweeps.
            "expire_seconds": max(2 * sweep, 10),
            "description": "Applies approved grants, revokes expired ones, retries failures, "
            "times out pending requests. Guarantees revocation within one interval.",
        },
        "airlock: deployment gates": {
            "task": "grants.tasks.sweep_deployment_gates",
            "every": sweep,
            "expire_seconds": max(2 * sweep, 10),
            "description": "Approves or rejects deployments waiting on Airlock's protection "
            "rule whose grant became active or whose request closed, and posts the answers "
            "GitHub has not received yet.",
        },
        "airlock: drift check": {
            "task": "grants.tasks.drift_check",
            "every": drift,
            "expire_seconds": drift,
            "description": "Compares every managed target on GitHub with its desired state, "
            "repairs what Airlock manages and audits the drift.",
        },
        "airlock: slack cards": {
            "task": "requests_app.tasks.slack_cards_sweep",
            "every": sweep,
            "expire_seconds": max(2 * sweep, 10),
            "description": "Posts or updates the Slack cards of requests whose card may "
            "not show them as they are (a message the worker never received); a card that "
            "is up to date costs no Slack call. Nothing without AIRLOCK_SLACK_BOT_TOKEN.",
        },
        "airlock: expiry reminders": {
            "task": "requests_app.tasks.remind_expiring",
            "every": 60,
            "expire_seconds": 60,
            "description": "Tells requesters whose access ends within "
            "AIRLOCK_EXPIRY_REMINDER_MINUTES, once per request.",
        },
        "airlock: audit forwarding": {
            "task": "audit.tasks.forward_audit_log",
            "every": settings.AIRLOCK_AUDIT_FORWARD_SECONDS,
            "expire_seconds": max(2 * settings.AIRLOCK_AUDIT_FORWARD_SECONDS, 10),
            "description": "Sends the audit events each configured SIEM sink has not "
            "accepted yet, in seq order (nothing when no sink is configured).",
        },
        "airlock: audit seal": {
            "task": "audit.tasks.seal_audit_log",
            "every": sweep,
            "expire_seconds": max(2 * sweep, 10),
            "description": "Links into the audit chain the events committed while another "
            "transaction held its head, if none has yet (they are sealed at once as a "
            "rule).",
        },
        "airlock: approver team sync": {
            "task": "requests_app.tasks.sync_approver_groups",
            "every": settings.AIRLOCK_TEAM_SYNC_SECONDS,
            "expire_seconds": settings.AIRLOCK_TEAM_SYNC_SECONDS,
            "description": "Replaces the members of approver groups that name a GitHub team "
            "with the team's members.",
        },
    }


def is_airlock_entry(name: str) -> bool:
    """Whether a periodic task of this name is one of Airlock's, declared above: the admin
    shows those read-only, and only install_beat_schedule writes them."""
    return name in beat_schedule()


def install_beat_schedule() -> list[str]:
    """Create or update the periodic tasks; returns what changed (empty when nothing)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    changes = []
    for name, spec in beat_schedule().items():
        interval = IntervalSchedule.objects.filter(
            every=spec["every"], period=IntervalSchedule.SECONDS
        ).first() or IntervalSchedule.objects.create(
            every=spec["every"], period=IntervalSchedule.SECONDS
        )
        wanted = {
            "task": spec["task"],
            "interval": interval,
            "crontab": None,
            "solar": None,
            "clocked": None,
            "one_off": False,
            "enabled": True,
            "expire_seconds": spec["expire_seconds"],
            "description": spec["description"],
            "args": json.dumps([]),
            "kwargs": json.dumps({}),
        }
        task = PeriodicTask.objects.filter(name=name).first()
        if task is None:
            PeriodicTask.objects.create(name=name, **wanted)
            changes.append(f"created {name} (every {spec['every']}s)")
            continue
        differs = [key for key, value in wanted.items() if getattr(task, key) != value]
        if differs:
            for key in differs:
                setattr(task, key, wanted[key])
            task.save()
            changes.append(f"updated {name}: {', '.join(differs)}")
    for change in changes:
        logger.info("Beat schedule: %s", change)
    return changes
