"""Benchmark 8, audit throughput: events per second that concurrent writers append through
`audit.log_event`, each event in its own transaction, on PostgreSQL.

Two ways of appending, in the same run, both in today's code:
- *waiting* (`log_event(sealed=True)`): every writer takes the chain head and holds it to
  its commit, as every writer did before events could wait for their seal; the ceiling of
  one writer that the issue measured.
- *passing* (the default): a writer that finds the head held writes its event to
  AuditPendingEvent and commits without waiting; the holder of the head seals it.
- *unshared*: the same writers while a connection of this process holds the head all
  along, so that every event is written to AuditPendingEvent and none is sealed until the
  line ends: the writers' own statements with no shared head at all (the issue's "same
  statements without the shared head"), and without the chain's inserts, which every way
  of chaining must make: an upper bound.

- *bare*: no audit at all: each transaction inserts one row into a plain table of the
  benchmark's own (no index but its key) and commits, through the same Django connection.
  1 and 4 writers: how far this machine itself lets 4 writers go beyond one, for any work
  that is a transaction per event and shares nothing.

Writers are separate processes (no shared GIL), each with its own connection. While they
write, this process samples how many events wait for their seal and how long the oldest
has waited. Afterwards the whole chain is verified, and every event written must be in it
exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time

from django.db import connections, transaction
from django.utils import timezone

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, AuditPendingEvent
from audit.selectors import pending_seal_backlog
from audit.services import audit_pending_seal, audit_tables_vacuum, log_event
from audit.verification import verify_chain

LINES = (
    ("waiting", 1),
    ("waiting", 4),
    ("passing", 1),
    ("passing", 4),
    ("unshared", 4),
    ("bare", 1),
    ("bare", 4),
)
# bare's table: created for the run, dropped after it.
BARE_TABLE = "bench_bare_writes"


def run(harness, *, seconds: float, rounds: int) -> dict:
    say = harness.say
    runs: dict[str, list[dict]] = {label(mode, n): [] for mode, n in LINES}
    bare_table(create=True)
    written = 0
    try:
        for number in range(1, rounds + 1):
            for mode, writers in LINES:
                say(f"  round {number}: {label(mode, writers)}, {seconds:g}s")
                result = one_line(mode=mode, writers=writers, seconds=seconds)
                if mode != "bare":  # rows of its own table, not audit events
                    written += result["events"]
                runs[label(mode, writers)].append(result)
    finally:
        bare_table(create=False)
    rate = {name: statistics.median(r["events_per_second"] for r in line)
            for name, line in runs.items()}
    # Each line against the baseline of its own round, then the median over the rounds: the
    # machine's speed drifts over minutes (it is shared), and a round's lines run together.
    baseline_runs = runs[label("waiting", 1)]
    ratios = {
        name: statistics.median(
            r["events_per_second"] / base["events_per_second"]
            for r, base in zip(line, baseline_runs, strict=True)
        )
        for name, line in runs.items()
    }
    chain = verify_chain()
    in_log = AuditEvent.objects.filter(target_type="bench.writer").count()
    distinct = (AuditEvent.objects.filter(target_type="bench.writer")
                .values("target_id", "detail").distinct().count())
    return {
        "seconds": seconds,
        "rounds": rounds,
        "events_per_second": rate,
        "ratios": ratios,
        "ideal_sealer_vs_waiting_1": statistics.median(
            _ideal_sealer(u) / w["events_per_second"]
            for u, w in zip(runs[label("unshared", 4)], baseline_runs, strict=True)
        ),
        "bare_4_vs_1": statistics.median(
            f["events_per_second"] / o["events_per_second"]
            for f, o in zip(runs[label("bare", 4)], runs[label("bare", 1)], strict=True)
        ),
        "passing_4_vs_waiting_4": statistics.median(
            p["events_per_second"] / w["events_per_second"]
            for p, w in zip(runs[label("passing", 4)], runs[label("waiting", 4)], strict=True)
        ),
        "runs": runs,
        "written": written,
        "in_log": in_log,
        "distinct_in_log": distinct,
        "pending_at_end": AuditPendingEvent.objects.count(),
        "chain_ok": chain.ok,
        "chain_checked": chain.checked,
        "chain_problem": chain.problem,
    }


def _ideal_sealer(unshared: dict) -> float:
    """Events/s 4 writers would reach with a sealer that costs no more than the cheapest
    chain insert there is: the unshared line's writers, plus the sweep after it, which
    sealed that line's events in batches of SEAL_BATCH from one process (its seconds per
    event, its vacuum left out), that work shared across the machine's cores, all of them
    busy (a CPU-bound estimate: what the machine has left for sealing while the writers
    run). Never above what one sealer can seal, one batch after another."""
    seal_seconds = unshared["seal_seconds"] / max(unshared["sealed_by_the_sweep"], 1)
    cores = os.cpu_count() or 1
    shared = 1 / (1 / unshared["events_per_second"] + seal_seconds / cores)
    return min(shared, 1 / seal_seconds) if seal_seconds else shared


def label(mode: str, writers: int) -> str:
    return f"{mode}, {writers} writer{'s' if writers > 1 else ''}"


def one_line(*, mode: str, writers: int, seconds: float) -> dict:
    holder = _hold_the_head() if mode == "unshared" else None
    connections.close_all()  # the writers are forked: they must not share this connection
    context = multiprocessing.get_context("fork")
    counts = context.Queue()
    start_at = time.time() + 1.0
    stop_at = start_at + seconds
    processes = [
        context.Process(target=_write, args=(mode, index, start_at, stop_at, counts))
        for index in range(writers)
    ]
    for process in processes:
        process.start()
    waiting_max, age_max = 0, 0.0
    while time.time() < start_at:
        time.sleep(0.05)
    while any(process.is_alive() for process in processes):
        backlog = pending_seal_backlog()
        waiting_max = max(waiting_max, backlog.events)
        if backlog.oldest_at is not None:
            age_max = max(age_max, backlog.age_seconds(timezone.now()))
        time.sleep(0.2)
    for process in processes:
        process.join()
    if holder is not None:
        holder.rollback()
        holder.close()
    per_writer = [counts.get(timeout=10) for _ in processes]
    if any(isinstance(n, str) for n in per_writer):
        raise RuntimeError(f"a writer failed: {per_writer}")
    left = AuditPendingEvent.objects.count()
    began = time.monotonic()
    # What beat's "airlock: audit seal" does every sweep interval (shorter than a line).
    sealed_after = audit_pending_seal()
    sealed_in = time.monotonic() - began
    audit_tables_vacuum(force=True)
    events = sum(per_writer)
    return {
        "writers": writers,
        "events": events,
        "events_per_second": events / seconds,
        "per_writer": per_writer,
        "waiting_max": waiting_max,
        "waiting_age_max_seconds": round(age_max, 3),
        "left_waiting_after_the_writers": left,
        "sealed_by_the_sweep": sealed_after,
        "sweep_seconds": round(time.monotonic() - began, 3),
        "seal_seconds": round(sealed_in, 3),  # the sweep without its vacuum
    }


def bare_table(*, create: bool) -> None:
    """The bare lines' table, made before the run and dropped after it."""
    with connections["default"].cursor() as cursor:
        if create:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} "
                           "(id bigserial PRIMARY KEY, n integer NOT NULL, body text NOT NULL)")
        else:
            cursor.execute(f"DROP TABLE IF EXISTS {BARE_TABLE}")


def _hold_the_head():
    """A connection of its own whose open transaction holds the chain head (made first,
    as the first append would, when the log is empty)."""
    import psycopg

    newest = AuditEvent.objects.order_by("-seq").first()
    AuditChainHead.objects.get_or_create(
        pk=AuditChainHead.SINGLETON_ID,
        defaults={"seq": newest.seq if newest else 0,
                  "hash": newest.hash if newest else GENESIS_HASH},
    )

    settings = connections["default"].get_connection_params()
    settings.pop("cursor_factory", None)
    settings.pop("context", None)
    holder = psycopg.connect(**settings)
    holder.execute("SELECT 1 FROM audit_auditchainhead WHERE id = 1 FOR UPDATE")
    return holder


def _write(mode: str, index: int, start_at: float, stop_at: float, counts) -> None:
    try:
        connections.close_all()
        written = 0
        while time.time() < start_at:
            time.sleep(0.005)
        name = f"{mode}-{index}-{start_at:.3f}"
        while time.time() < stop_at:
            with transaction.atomic():
                if mode == "bare":
                    with connections["default"].cursor() as cursor:
                        cursor.execute(f"INSERT INTO {BARE_TABLE} (n, body) VALUES (%s, %s)",
                                       [written, name])
                else:
                    log_event(
                        action="request.created",
                        target_type="bench.writer",
                        target_id=name,
                        detail={"n": written},
                        sealed=mode == "waiting",
                    )
            written += 1
        counts.put(written)
    except Exception as problem:  # reported by the parent
        counts.put(f"{type(problem).__name__}: {problem}")
    finally:
        connections.close_all()
