"""GET /metrics: what Prometheus scrapes, behind AIRLOCK_METRICS_TOKEN, with facts read from
the database and the broker at scrape time (docs/metrics.md)."""

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client.core import GaugeMetricFamily

from audit.selectors import pending_seal_backlog, sink_statuses
from core import metrics
from grants.selectors import grants_in_force_count_by_kind, grants_revocation_overdue
from integrations.github import github_budgets
from portal.health import BROKER_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"


class MetricsMiddleware:
    """Answer /metrics, when it is on, ahead of host validation and the HTTPS redirect."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == METRICS_PATH and settings.AIRLOCK_METRICS_TOKEN:
            return metrics_endpoint(request)
        return self.get_response(request)


def _bearer_matches(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.AIRLOCK_METRICS_TOKEN.encode()
    # Constant time: how much of a guess was right must not show in how long it took.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


@never_cache
def metrics_endpoint(request):
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not _bearer_matches(request):
        response = HttpResponse(
            "401 Unauthorized: send Authorization: Bearer <AIRLOCK_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="airlock metrics"'
        return response
    return HttpResponse(metrics.exposition(ScrapeTimeFacts()), content_type=metrics.CONTENT_TYPE)


class ScrapeTimeFacts:
    """The gauges that are facts of the database and the broker, read at each scrape."""

    def collect(self):
        try:
            in_force = grants_in_force_count_by_kind(now=timezone.now())
            overdue = grants_revocation_overdue().count()
        except DatabaseError as exc:
            logger.warning("/metrics: the database did not answer (%s)", type(exc).__name__)
        else:
            family = GaugeMetricFamily(
                "airlock_grants_in_force",
                "Grants in force now (request active, expires_at in the future), by kind.",
                labels=["kind"],
            )
            for kind, count in sorted(in_force.items()):
                family.add_metric([kind], count)
            yield family
            yield GaugeMetricFamily(
                "airlock_revocations_overdue",
                "Grants still on GitHub after they should have ended, retried by every sweep.",
                value=overdue,
            )
        try:
            budgets = github_budgets()
        except DatabaseError as exc:
            logger.warning("/metrics: the database did not answer (%s)", type(exc).__name__)
        else:
            yield github_budget_family(budgets, now=timezone.now())
        try:
            sinks = sink_statuses()
        except DatabaseError as exc:
            logger.warning("/metrics: the database did not answer (%s)", type(exc).__name__)
        else:
            yield from audit_sink_families(sinks, now=timezone.now())
        try:
            pending = pending_seal_backlog()
        except DatabaseError as exc:
            logger.warning("/metrics: the database did not answer (%s)", type(exc).__name__)
        else:
            yield GaugeMetricFamily(
                "airlock_audit_events_pending_seal",
                "Audit events committed but not yet linked into the hash chain.",
                value=pending.events,
            )
            yield GaugeMetricFamily(
                "airlock_audit_events_pending_seal_age_seconds",
                "How long the oldest audit event waiting for its seal has waited (0: none).",
                value=pending.age_seconds(timezone.now()),
            )
        depths = queue_depths()
        if depths is not None:
            family = GaugeMetricFamily(
                "airlock_queue_depth",
                "Messages waiting in the broker, by queue (not those a worker holds, such as "
                "tasks waiting for their ETA).",
                labels=["queue"],
            )
            for queue, depth in depths.items():
                family.add_metric([queue], depth)
            yield family


def github_budget_family(budgets, *, now) -> GaugeMetricFamily:
    """Each client's band of GitHub's hourly budget (integrations/github/budget.py), from
    the database: every process's calls report it there, and it reads 0 once the window
    has reset even if no call has been made since."""
    family = GaugeMetricFamily(
        "airlock_github_rate_limit_band",
        "How low GitHub's hourly quota is, by client: 0 all work runs; 1 low, the drift "
        "check and the team sync wait; 2 critical, only revocations run.",
        labels=["client"],
    )
    for budget in budgets:
        family.add_metric([budget.client], int(budget.band(now)))
    return family


def audit_sink_families(sinks, *, now) -> list[GaugeMetricFamily]:
    """Each configured audit forwarding sink (label `sink`: http, syslog): how far behind it
    is, and when it last delivered and failed. No sink configured: families without samples."""

    def family(name, documentation):
        return GaugeMetricFamily(name, documentation, labels=["sink"])

    backlog = family(
        "airlock_audit_sink_backlog_events",
        "Audit events written but not accepted by the sink yet.",
    )
    age = family(
        "airlock_audit_sink_backlog_age_seconds",
        "Age of the oldest audit event the sink has not accepted (0: caught up).",
    )
    delivered = family(
        "airlock_audit_sink_last_delivered_timestamp_seconds",
        "When the sink last accepted a batch (Unix time; 0: never).",
    )
    errored = family(
        "airlock_audit_sink_last_error_timestamp_seconds",
        "When the sink last refused a batch or could not be reached (Unix time; 0: never).",
    )
    failures = family(
        "airlock_audit_sink_consecutive_failures",
        "Batches the sink refused in a row since it last accepted one (0: it is healthy).",
    )
    for sink in sinks:
        row = sink.row
        backlog.add_metric([sink.name], sink.backlog.events)
        age.add_metric([sink.name], sink.backlog.age_seconds(now))
        delivered.add_metric([sink.name], _timestamp(row.last_delivered_at))
        errored.add_metric([sink.name], _timestamp(row.last_error_at))
        failures.add_metric([sink.name], row.failures)
    return [backlog, age, delivered, errored, failures]


def _timestamp(moment) -> float:
    return moment.timestamp() if moment is not None else 0.0


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each of CELERY_TASK_QUEUES (Redis: the lengths of the queue's
    lists; the embedded SQLite broker: its visible messages), or None when the broker
    does not answer."""
    from portal.celery import app

    depths = {}
    try:
        with app.connection_for_read(connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
            for queue in settings.CELERY_TASK_QUEUES:
                with broker.channel() as channel:
                    try:
                        declared = channel.queue_declare(queue=queue.name, passive=True)
                    except broker.channel_errors:
                        depths[queue.name] = 0  # never declared yet: nothing is waiting
                    else:
                        depths[queue.name] = declared.message_count
    except Exception as exc:  # kombu raises transport-specific errors
        logger.warning("/metrics: the broker did not answer (%s)", type(exc).__name__)
        return None
    return depths
