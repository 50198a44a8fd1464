"""Benchmark 7, growth: the list pages and API lists timed in-process at two sizes of
history in one database (10,000 requests and 50,000 audit events, then grown to 300,000
and 2,000,000), built in bulk with COPY on PostgreSQL (plain INSERTs elsewhere, for the
smoke test) (docs/operations.md "The benchmarks")."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.keys import audit_keyring
from audit.models import AuditChainHead, AuditEvent, chain_hash
from grants.models import Grant, Target
from requests_app.models import (
    AccessPolicy,
    AccessRequest,
    Approval,
    ApproverGroup,
    ApproverGroupMember,
)

User = get_user_model()
Status = AccessRequest.Status

# The sizes, and the page's allowed growth between them.
SMALL = {"requests": 10_000, "events": 50_000}
LARGE = {"requests": 300_000, "events": 2_000_000}
TARGET_RATIO = 2.0

PREFIX = "growth"
REPOSITORIES = 200
ENVIRONMENTS = ("production", "staging", "development")
POLICIES = 20
ROUTED_TO_APPROVER = 2  # of the POLICIES, one request in ten
REQUESTERS = 2_000
APPROVERS = 10
# One request every 5 minutes and one event every 45 s: 300,000 requests and 2,000,000
# events both reach about 2.9 years back.
REQUEST_STEP = timedelta(minutes=5)
EVENT_STEP = timedelta(seconds=45)
# The newest requests (about a day) are the open ones; everything older is history.
RECENT = 300
REASON = "Growth benchmark: deploying the quarterly release to this environment"

HISTORY = [  # (status, weight) of requests older than RECENT
    (Status.EXPIRED, 70), (Status.REVOKED, 8), (Status.DENIED, 8), (Status.CANCELLED, 6),
    (Status.TIMED_OUT, 6), (Status.FAILED, 2),
]
OPEN = [(Status.PENDING, 30), (Status.APPROVED, 10), (Status.ACTIVE, 50), (Status.DENIED, 10)]
ACTIONS = [  # (action, target type, weight); grant.checked is most of a real log
    ("grant.checked", "grants.grant", 45), ("request.created", "requests_app.accessrequest", 12),
    ("request.approved", "requests_app.accessrequest", 10), ("grant.created", "grants.grant", 8),
    ("grant.applied", "grants.grant", 8), ("grant.revoked", "grants.grant", 7),
    ("request.expired", "requests_app.accessrequest", 6),
    ("github.environment_updated", "grants.target", 4),
]
GRANTED = {Status.APPROVED, Status.ACTIVE, Status.EXPIRED, Status.REVOKED, Status.FAILED}


@dataclass
class World:
    """The people and configuration the history is about (made once, through the ORM)."""

    now: datetime
    requesters: list  # (id, username)
    approvers: list  # (id, username)
    policies: list  # ids
    targets: dict  # (repository, environment) -> id
    mine: object  # the requester with `mine_requests` requests of their own
    approver: object  # routed ROUTED_TO_APPROVER policies, not staff
    admin: object  # a platform admin (superuser)
    mine_requests: int
    seeded: dict = field(default_factory=lambda: {"requests": 0, "events": 0})


def build_world(*, mine_requests: int = 1_000) -> World:
    now = datetime.now(UTC).replace(microsecond=0)
    requesters = _users([f"{PREFIX}-u{i:04d}" for i in range(REQUESTERS)])
    approvers = _users([f"{PREFIX}-approver-{i}" for i in range(APPROVERS)])
    mine = User.objects.create(username=f"{PREFIX}-mine")
    approver = User.objects.get(username=approvers[0][1])
    admin = User.objects.create(username=f"{PREFIX}-admin", is_staff=True, is_superuser=True)
    policies = []
    for index in range(POLICIES):
        group = ApproverGroup.objects.create(name=f"{PREFIX}-group-{index:02d}")
        # The approver belongs to the first groups; the others go to the rest of the pool.
        members = [approvers[0][1]] if index < ROUTED_TO_APPROVER else [
            approvers[1 + index % (APPROVERS - 1)][1]
        ]
        ApproverGroupMember.objects.bulk_create(
            ApproverGroupMember(group=group, login=login) for login in members
        )
        policy = AccessPolicy.objects.create(
            name=f"{PREFIX}-policy-{index:02d}",
            repository_patterns=[f"{PREFIX}-org-{index:02d}/*"],
            environment_patterns=["*"],
            access_kinds=["reviewer", "token"],
            max_duration=timedelta(days=1),
            default_duration=timedelta(hours=1),
            approvals_required=1,
            reason_min_length=10,
            pending_ttl=timedelta(hours=24),
            break_glass=True,
        )
        policy.approver_groups.add(group)
        policies.append(policy.pk)
    targets = {}
    for r in range(REPOSITORIES):
        for env in ENVIRONMENTS:
            target = Target.objects.create(repository=_repository(r), environment=env)
            targets[(_repository(r), env)] = target.pk
    return World(now=now, requesters=requesters, approvers=approvers, policies=policies,
                 targets=targets, mine=mine, approver=approver, admin=admin,
                 mine_requests=mine_requests)


def _repository(r: int) -> str:
    # Repositories fall under a policy by their organisation (POLICIES organisations).
    return f"{PREFIX}-org-{r % POLICIES:02d}/svc-{r:03d}"


def _users(logins: list[str]) -> list[tuple[int, str]]:
    people = [User(username=login, email=f"{login}@example.com") for login in logins]
    for person in people:
        person.set_unusable_password()
    User.objects.bulk_create(people, batch_size=1000)
    return list(User.objects.filter(username__in=logins).order_by("pk").values_list(
        "pk", "username"))


# --- writing rows in bulk ---------------------------------------------------------------------


class Table:
    """One model's table written in bulk: every concrete column, each row the model's own
    defaults (as its fields prepare them for this database) with the given values over them."""

    def __init__(self, model, **defaults):
        self.model = model
        fields = model._meta.concrete_fields
        prototype = model(**defaults)
        self.columns = [f.column for f in fields]
        self.index = {f.attname: i for i, f in enumerate(fields)}
        self.template = [f.get_db_prep_save(getattr(prototype, f.attname), connection)
                         for f in fields]
        self.rows: list[list] = []

    def add(self, **values) -> None:
        row = list(self.template)
        for name, value in values.items():
            row[self.index[name]] = value
        self.rows.append(row)

    def flush(self) -> int:
        count = len(self.rows)
        if count:
            write_rows(self.model._meta.db_table, self.columns, self.rows)
        self.rows = []
        return count


def write_rows(table: str, columns: list[str], rows: list[list]) -> None:
    """COPY on PostgreSQL (psycopg 3's cursor.copy), executemany INSERT elsewhere."""
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {connection.ops.quote_name(table)} ({quoted}) "
                                    "FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt = connection.ops.adapt_datetimefield_value
        rows = [[adapt(v) if isinstance(v, datetime) else v for v in row] for row in rows]
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(f"INSERT INTO {connection.ops.quote_name(table)} ({quoted}) "
                           f"VALUES ({marks})", rows)


def _next_id(model) -> int:
    last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
    return (last or 0) + 1


def _reset_sequence(model) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite's rowid goes on from the largest id by itself
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT MAX(id) FROM {table}))",
            [table],
        )


def _weighted(pairs):
    values = [p[0] for p in pairs]
    weights = [p[-1] for p in pairs]
    return values, weights


# --- growing the history ----------------------------------------------------------------------


def grow(world: World, *, requests: int, events: int, rng: random.Random | None = None,
         chunk: int = 20_000) -> dict:
    """Add requests (with their approvals and grants) and audit events until there are
    `requests` and `events` of them. The history grows backwards in time: the newest rows,
    the ones every page shows first, are the same at each size; what grows is the past.
    Returns the rows written and the seconds it took."""
    rng = rng or random.Random(18 + world.seeded["requests"])
    started = time.monotonic()
    written = {"requests": 0, "approvals": 0, "grants": 0, "events": 0}
    while world.seeded["requests"] < requests:
        n = min(chunk, requests - world.seeded["requests"])
        with transaction.atomic():
            for key, count in _request_chunk(world, world.seeded["requests"], n, rng).items():
                written[key] += count
        world.seeded["requests"] += n
    for model in (AccessRequest, Approval, Grant):
        _reset_sequence(model)
    hashing = 0.0
    while world.seeded["events"] < events:
        n = min(chunk * 5, events - world.seeded["events"])
        with transaction.atomic():
            hashing += _event_chunk(world, world.seeded["events"], n, rng)
        world.seeded["events"] += n
        written["events"] += n
    _reset_sequence(AuditEvent)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # As autovacuum would have by then: the rows COPY left in GIN indexes' pending
            # lists (the request search's trigram indexes) moved into the indexes, which a
            # search would otherwise read in full, and the planner knows the tables' new
            # sizes. (VACUUM itself cannot run in the tests' transaction.)
            cursor.execute(
                "SELECT gin_clean_pending_list(index.oid) FROM pg_class index"
                " JOIN pg_am method ON method.oid = index.relam"
                " JOIN pg_namespace schema ON schema.oid = index.relnamespace"
                " WHERE method.amname = 'gin' AND schema.nspname = current_schema()"
            )
            cursor.execute("ANALYZE")
    return {**written, "seconds": round(time.monotonic() - started, 1),
            "hashing_seconds": round(hashing, 1)}


def _request_chunk(world: World, first: int, n: int, rng: random.Random) -> dict:
    requests_t = Table(AccessRequest, reason=REASON, access="reviewer", duration_minutes=60,
                       approvals_required=1, pending_until=world.now)
    approvals_t = Table(Approval, comment="")
    grants_t = Table(Grant, kind=Grant.Kind.REVIEWER)
    request_id, approval_id, grant_id = (_next_id(m) for m in (AccessRequest, Approval, Grant))
    history, history_w = _weighted(HISTORY)
    open_, open_w = _weighted(OPEN)
    mine_every = 10
    for k in range(first, first + n):
        created = world.now - k * REQUEST_STEP - timedelta(seconds=rng.randrange(60))
        if k % mine_every == 0 and k // mine_every < world.mine_requests:
            requester = (world.mine.pk, world.mine.username)
        else:
            requester = world.requesters[rng.randrange(len(world.requesters))]
        r = rng.randrange(REPOSITORIES)
        repository = _repository(r)
        environment = rng.choices(ENVIRONMENTS, (5, 3, 2))[0]
        status = (rng.choices(open_, open_w) if k < RECENT else rng.choices(history, history_w))[0]
        access = "token" if rng.random() < 0.1 else "reviewer"
        break_glass = rng.random() < 0.01
        decided = created + timedelta(minutes=10)
        granted = expires = ended = None
        if status == Status.ACTIVE:
            granted = world.now - timedelta(minutes=rng.randrange(1, 60))
            expires = world.now + timedelta(minutes=rng.randrange(5, 600))
        elif status in (Status.EXPIRED, Status.REVOKED):
            granted = created + timedelta(minutes=15)
            expires = granted + timedelta(hours=1)
            ended = expires if status == Status.EXPIRED else granted + timedelta(minutes=20)
        requests_t.add(
            id=request_id, requester_id=requester[0], requester_identity=f"login:{requester[1]}",
            repository=repository, environment=environment, access=access,
            policy_id=world.policies[r % POLICIES], break_glass=break_glass,
            review_outcome="" if k < 2_000 or not break_glass else "acknowledged",
            status=status, created_at=created, pending_until=created + timedelta(hours=24),
            decided_at=None if status == Status.PENDING else decided,
            granted_at=granted, expires_at=expires, ended_at=ended,
        )
        if status in GRANTED:
            approver = world.approvers[rng.randrange(len(world.approvers))]
            approvals_t.add(id=approval_id, request_id=request_id, approver_id=approver[0],
                            approver_identity=f"login:{approver[1]}", created_at=decided)
            approval_id += 1
            state, end_reason, revoked = {
                Status.APPROVED: (Grant.State.PENDING, "", None),
                Status.ACTIVE: (Grant.State.APPLIED, "", None),
                Status.EXPIRED: (Grant.State.REVOKED, Grant.EndReason.EXPIRED, ended),
                Status.REVOKED: (Grant.State.REVOKED, Grant.EndReason.REVOKED, ended),
                Status.FAILED: (Grant.State.FAILED, "", None),
            }[status]
            grants_t.add(
                id=grant_id, access_request_id=request_id,
                target_id=world.targets[(repository, environment)],
                kind=Grant.Kind.TOKEN if access == "token" else Grant.Kind.REVIEWER,
                login=requester[1], github_user_id=100_000 + requester[0], state=state,
                created_at=decided, applied_at=granted, expires_at=expires,
                revoked_at=revoked, end_reason=end_reason,
            )
            grant_id += 1
        request_id += 1
    return {"requests": requests_t.flush(), "approvals": approvals_t.flush(),
            "grants": grants_t.flush()}


def _event_chunk(world: World, first: int, n: int, rng: random.Random) -> float:
    """n audit events appended to the chain as log_event() links them (contiguous seq
    after the head, each hash keyed with the signing key over the previous one), so the
    seeded log verifies; the head is moved to the last one. Returns the seconds spent
    hashing."""
    head = AuditChainHead.objects.select_for_update().get_or_create(
        id=AuditChainHead.SINGLETON_ID)[0]
    events_t = Table(AuditEvent)
    actions = [(a, t) for a, t, _ in ACTIONS]
    weights = [w for *_, w in ACTIONS]
    max_request = max(world.seeded["requests"], 1)
    target_ids = list(world.targets.values())
    seq, prev = head.seq, head.hash
    key = audit_keyring().signing
    event_id = _next_id(AuditEvent)
    hashing = 0.0
    for j in range(first, first + n):
        seq += 1
        action, target_type = rng.choices(actions, weights)[0]
        created = world.now - j * EVENT_STEP - timedelta(microseconds=rng.randrange(10**6))
        target = str(rng.randrange(1, max_request + 1))
        if target_type == "grants.target":
            target = str(rng.choice(target_ids))
        actor = world.requesters[rng.randrange(len(world.requesters))]
        fields = {
            "seq": seq,
            "created_at": created.isoformat(timespec="microseconds"),
            "actor_id": actor[0],
            "actor_label": actor[1],
            "action": action,
            "target_type": target_type,
            "target_id": target,
            "target_repr": f"#{target}",
            "reason": "",
            "detail": {},
            "prev_hash": prev,
        }
        began = time.perf_counter()
        digest = chain_hash(fields, key)
        hashing += time.perf_counter() - began
        events_t.add(id=event_id, seq=seq, created_at=created, actor_id=actor[0],
                     actor_label=actor[1], action=action, target_type=target_type,
                     target_id=target, target_repr=f"#{target}", reason="", prev_hash=prev,
                     key_id=key.id, hash=digest)
        prev = digest
        event_id += 1
    events_t.flush()
    AuditChainHead.objects.filter(pk=head.pk).update(seq=seq, hash=prev)
    return hashing


# --- the pages --------------------------------------------------------------------------------


def pages(world: World) -> list[tuple[str, object, str]]:
    """(name, who asks, path) for every page the issue names."""
    some_repository = _repository(7)
    return [
        ("admin request list", world.admin, "/admin/requests_app/accessrequest/"),
        ("admin request list, filtered by repository", world.admin,
         f"/admin/requests_app/accessrequest/?repository={some_repository}"),
        ("admin request list, searched", world.admin,
         "/admin/requests_app/accessrequest/?q=svc-007"),
        ("audit list", world.admin, "/admin/audit/auditevent/"),
        ("dashboard", world.admin, "/admin/"),
        (f"my requests ({world.mine_requests} of their own)", world.mine, "/requests/"),
        ("GET /api/v1/requests/, approver", world.approver, "/api/v1/requests/"),
        ("GET /api/v1/requests/, platform admin", world.admin, "/api/v1/requests/"),
        ("GET /api/v1/grants/, approver", world.approver, "/api/v1/grants/"),
        ("GET /api/v1/grants/, platform admin", world.admin, "/api/v1/grants/"),
    ]


def measure(world: World, *, warmup: int = 2, rounds: int = 7) -> dict:
    """Each page's median time over `rounds` after `warmup` untimed calls, its status, its
    query count and its slowest query (from one more call under CaptureQueriesContext)."""
    clients = {}
    result = {}
    for name, user, path in pages(world):
        client = clients.get(user.pk)
        if client is None:
            client = clients[user.pk] = Client()
            client.force_login(user)
        for _ in range(warmup):
            client.get(path, secure=True)
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            response = client.get(path, secure=True)
            times.append(time.perf_counter() - began)
        with CaptureQueriesContext(connection) as captured:
            client.get(path, secure=True)
        slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
        result[name] = {
            "path": path,
            "status": response.status_code,
            "median_ms": round(statistics.median(times) * 1000, 1),
            "min_ms": round(min(times) * 1000, 1),
            "queries": len(captured),
            "slowest_query_ms": round(float(slowest["time"]) * 1000, 1) if slowest else None,
            "slowest_sql": slowest["sql"] if slowest else None,
        }
    return result


def explain(sql: str) -> str:
    """The plan, with its timings, of a query a page ran (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def compare(small: dict, large: dict) -> list[dict]:
    rows = []
    for name, before in small.items():
        after = large[name]
        ratio = after["median_ms"] / before["median_ms"] if before["median_ms"] else None
        row = {
            "page": name, "small_ms": before["median_ms"], "large_ms": after["median_ms"],
            "ratio": round(ratio, 2) if ratio is not None else None,
            "queries_small": before["queries"], "queries_large": after["queries"],
            "status": (before["status"], after["status"]),
            "ok": ratio is not None and ratio <= TARGET_RATIO
            and before["status"] == after["status"] == 200,
        }
        # A page within its budget whose slowest query still grew past it is kept too:
        # the next to miss, once the rest of the page is no longer most of its time.
        grew = (after["slowest_query_ms"] or 0) >= 20 and (after["slowest_query_ms"] or 0) > (
            TARGET_RATIO * (before["slowest_query_ms"] or 0))
        row["slowest_query_ms_small"] = before["slowest_query_ms"]
        row["slowest_query_ms_large"] = after["slowest_query_ms"]
        row["slowest_query_grew"] = grew
        if (not row["ok"] or grew) and connection.vendor == "postgresql" and after["slowest_sql"]:
            row["slowest_query_ms"] = after["slowest_query_ms"]
            row["slowest_sql"] = after["slowest_sql"]
            row["explain"] = explain(after["slowest_sql"])
        rows.append(row)
    return rows


def run(harness=None, **sizes) -> dict:
    """Seed the small history, time the pages, grow it to the large one, time them again
    (sizes: those of _run)."""
    from django.conf import settings
    from django.test import override_settings

    # The pages name their static files; the benchmark has not run collectstatic, so they
    # are named as the tests name them (test_settings), not from the manifest.
    storages = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=storages):
        return _run(harness, **sizes)


def _run(harness, *, small: dict = SMALL, large: dict = LARGE, mine_requests: int = 1_000,
         warmup: int = 2, rounds: int = 7) -> dict:
    from django.test.utils import setup_test_environment

    say = harness.say if harness is not None else (lambda message: None)
    try:
        setup_test_environment()  # the test Client's host (testserver) is allowed
    except RuntimeError:
        pass  # already set up (under pytest)
    world = build_world(mine_requests=mine_requests)
    say(f"seeding {small['requests']} requests and {small['events']} audit events")
    seeded_small = grow(world, **small)
    say(f"  {seeded_small}")
    at_small = measure(world, warmup=warmup, rounds=rounds)
    say(f"growing to {large['requests']} requests and {large['events']} audit events")
    seeded_large = grow(world, **large)
    say(f"  {seeded_large}")
    at_large = measure(world, warmup=warmup, rounds=rounds)
    table = compare(at_small, at_large)
    for row in table:
        say(f"  {row['page']}: {row['small_ms']} -> {row['large_ms']} ms "
            f"(x{row['ratio']}), queries {row['queries_small']} -> {row['queries_large']}"
            f"{'' if row['ok'] else '  FAIL'}")
    counts = {
        "requests": AccessRequest.objects.count(),
        "approvals": Approval.objects.count(),
        "grants": Grant.objects.count(),
        "events": AuditEvent.objects.count(),
        "mine": AccessRequest.objects.filter(requester=world.mine).count(),
    }
    return {
        "small": small, "large": large, "target_ratio": TARGET_RATIO,
        "warmup": warmup, "rounds": rounds,
        "seeding": {"small": seeded_small, "large": seeded_large},
        "counts": counts, "pages": table,
        "at_small": _without_sql(at_small), "at_large": _without_sql(at_large),
    }


def _without_sql(measured: dict) -> dict:
    return {name: {k: v for k, v in m.items() if k != "slowest_sql"}
            for name, m in measured.items()}
