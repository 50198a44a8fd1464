"""Benchmark 6, audit forwarding: the backlog's catch-up after an outage of the SIEM (a real
worker and beat deliver, as deployed), and events per second delivered to a local HTTP
collector against a raw POST loop of the same bytes to the same collector, in the same run.

The collector is tests/siem_fake's HttpReceiver, on a thread of this process; what it
received is checked as a SIEM would: every seq from 1 to the newest, none reordered (after
dropping duplicates by seq), and the chain verified from the records alone.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max

from audit.export import events_for_export, json_lines
from audit.forwarding import audit_forward
from audit.forwarding.delivery import Outcome
from audit.keys import audit_keyring
from audit.models import GENESIS_HASH, AuditEvent, AuditSink, chain_hash
from audit.services import log_event
from benchmarks.stack import StackError, wait_until
from integrations.siem.http import HttpSink
from tests.siem_fake.http_receiver import HttpReceiver

# What the writers write during the outage: approvals, as a request approving an access
# request writes them (two events in its transaction), from a few threads at once as
# concurrent requests would. One event per transaction from one thread cannot reach 10,000
# a minute on a busy 2-core machine: each commit waits for the chain lock and the disk.
ACTIONS = ("request.approval_added", "request.approved")
WRITER_THREADS = 4


def run(
    harness,
    *,
    events: int,
    outage_seconds: float,
    batch_sizes: tuple[int, ...],
    forward_seconds: int | None = None,
) -> dict:
    """Catch-up first (it writes the events), then the delivery rate over the same events,
    with the worker stopped so that this process is the only deliverer. forward_seconds:
    beat's interval for the worker (default: AIRLOCK_AUDIT_FORWARD_SECONDS, 5 unless set)."""
    catch_up = backlog_catch_up(
        harness, events=events, outage_seconds=outage_seconds, forward_seconds=forward_seconds
    )
    rate = delivery_rate(batch_sizes=batch_sizes)
    return {"catch_up": catch_up, "rate": rate}


# --- writing and checking ---------------------------------------------------------------------


def write_event(number: int, action: str = ACTIONS[-1]) -> AuditEvent:
    return log_event(
        action=action,
        actor_label="alice",
        target_type="requests_app.accessrequest",
        target_id=str(number),
        target_repr=f"#{number} dave: reviewer on acme/api/production",
        reason="Deploy the hotfix for the checkout outage",
        detail={
            "repository": "acme/api",
            "environment": "production",
            "access": "reviewer",
            "duration_minutes": 60,
            "approvals": ["alice"],
            "policy": "production-deploys",
        },
    )


def newest_seq() -> int:
    return AuditEvent.objects.aggregate(newest=Max("seq"))["newest"] or 0


def sink_cursor() -> int:
    row = AuditSink.objects.filter(name=HttpSink.name).first()
    return row.cursor if row else 0


def received_problems(records: list[dict], newest: int) -> dict:
    """What a SIEM holding only `records` (arrival order, duplicates included) finds:
    seqs missing from 1..newest, seqs that first arrived after a later one, and the first
    broken link of the chain (prev_hash, or a hash that does not recompute under the key)."""
    keyring = audit_keyring()
    first_seen: dict[int, dict] = {}
    reordered = 0
    highest = 0
    for record in records:
        seq = record["seq"]
        if seq in first_seen:
            continue
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
        first_seen[seq] = record
    missing = [seq for seq in range(1, newest + 1) if seq not in first_seen]
    chain_problem = ""
    prev_hash = GENESIS_HASH
    for seq in sorted(first_seen):
        record = first_seen[seq]
        fields = {k: v for k, v in record.items() if k not in ("id", "key_id", "hash")}
        key = keyring.get(record["key_id"]) if record["key_id"] else None
        if record["prev_hash"] != prev_hash:
            chain_problem = f"seq {seq}: prev_hash is not the previous record's hash"
            break
        if chain_hash(fields, key) != record["hash"]:
            chain_problem = f"seq {seq}: the hash does not recompute from the record"
            break
        prev_hash = record["hash"]
    return {
        "received": len(records),
        "distinct": len(first_seen),
        "duplicates": len(records) - len(first_seen),
        "lost": len(missing),
        "lost_examples": missing[:10],
        "reordered": reordered,
        "beyond_newest": sum(1 for seq in first_seen if seq > newest),
        "chain_ok": not chain_problem and not missing,
        "chain_problem": chain_problem or (f"seq {missing[0]} missing" if missing else ""),
    }


def broken(checks: dict) -> list[str]:
    """The received-stream checks that failed, in words (empty when all hold)."""
    problems = []
    for key in ("lost", "reordered", "beyond_newest"):
        if checks[key]:
            problems.append(f"{key} {checks[key]}")
    if not checks["chain_ok"]:
        problems.append(f"chain: {checks['chain_problem']}")
    return problems


# --- (b) the backlog's catch-up -----------------------------------------------------------------


def backlog_catch_up(
    harness, *, events: int, outage_seconds: float, forward_seconds: int | None = None
) -> dict:
    """The collector answers 503 for `outage_seconds` while `events` events are written
    (evenly spread over the outage, by log_event as the services write them); then it
    recovers. Measured: from the collector's recovery until the sink's cursor reached the
    newest seq, split into the wait for the worker's next try (the backoff it was in: until
    the first POST after recovery arrived) and the drain (from that POST until caught up)."""
    forward_seconds = forward_seconds or int(
        harness.env.get("AIRLOCK_AUDIT_FORWARD_SECONDS") or settings.AIRLOCK_AUDIT_FORWARD_SECONDS
    )
    with HttpReceiver() as receiver:
        stack = harness.start_stack(
            "forward",
            AIRLOCK_AUDIT_STREAM_URL=receiver.url,
            AIRLOCK_AUDIT_FORWARD_SECONDS=forward_seconds,
        )
        try:
            return _outage(harness, stack, receiver, events, outage_seconds, forward_seconds)
        finally:
            stack.stop()


def _outage(harness, stack, receiver, events, outage_seconds, forward_seconds) -> dict:
    say = harness.say
    # Before the outage the sink is live and caught up: a few events delivered by beat.
    for number in range(1, 11):
        write_event(number)
    warm = newest_seq()
    wait_until(
        "the worker delivering the first events",
        lambda: sink_cursor() >= warm,
        timeout=60 + 3 * forward_seconds,
        details=lambda: f"cursor {sink_cursor()} of {warm}\n{stack.logs()}",
    )
    posts_before = len(receiver.posts)

    receiver.fail_until_recovered(503)
    down_at = time.monotonic()
    say(f"    collector down (503); writing {events} events over {outage_seconds:.0f}s")
    write_latencies = _write_spread(
        events, start=down_at, seconds=outage_seconds, first_number=warm + 1
    )
    written_at = time.monotonic()
    time.sleep(max(0.0, down_at + outage_seconds - time.monotonic()))
    newest = newest_seq()
    cursor_at_recovery = sink_cursor()
    row = AuditSink.objects.get(name=HttpSink.name)
    refused = sum(1 for post in receiver.posts[posts_before:] if post.status == 503)

    posts_at_recovery = len(receiver.posts)
    receiver.recover()
    up_at = time.monotonic()
    say(f"    collector up after {up_at - down_at:.1f}s; backlog {newest - cursor_at_recovery}")
    first_post_at = None
    deadline = up_at + max(600.0, 20 * outage_seconds)
    while True:
        now = time.monotonic()
        if first_post_at is None and len(receiver.posts) > posts_at_recovery:
            first_post_at = now
        if sink_cursor() >= newest:
            caught_up_at = now
            break
        if now > deadline:
            raise StackError(
                f"the cursor stayed at {sink_cursor()} of {newest} for {now - up_at:.0f}s "
                f"after the collector recovered\n{stack.logs()}"
            )
        time.sleep(0.02)
    first_post_at = first_post_at or caught_up_at
    checks = received_problems(receiver.records(), newest)
    backlog = newest - cursor_at_recovery
    drain = caught_up_at - first_post_at
    batch = harness.env.get("AIRLOCK_AUDIT_FORWARD_BATCH") or settings.AIRLOCK_AUDIT_FORWARD_BATCH
    return {
        "events_written_during_outage": events,
        "writer_threads": WRITER_THREADS,
        "events_per_transaction": len(ACTIONS),
        "outage_seconds": round(up_at - down_at, 2),
        "writing_seconds": round(written_at - down_at, 2),
        "write_transaction_ms": {
            "p50": round(statistics.median(write_latencies) * 1000, 2),
            "p99": round(_percentile(write_latencies, 0.99) * 1000, 2),
            "max": round(max(write_latencies) * 1000, 2),
        },
        "forward_seconds": forward_seconds,
        "batch_size": int(batch),
        "refused_posts_during_outage": refused,
        "failures_recorded": row.failures,
        "last_error": row.last_error,
        "backlog_at_recovery": backlog,
        "catch_up_seconds": round(caught_up_at - up_at, 2),
        "wait_for_next_try_seconds": round(first_post_at - up_at, 2),
        "drain_seconds": round(drain, 2),
        "drain_events_per_second": round(backlog / drain, 1) if drain > 0 else None,
        "received": checks,
    }


def _write_spread(events: int, *, start: float, seconds: float, first_number: int) -> list:
    """Write `events` events, as approvals (ACTIONS in one transaction), approval i due at
    start + i * seconds / approvals, from WRITER_THREADS threads; returns each
    transaction's duration."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    per = len(ACTIONS)
    approvals = -(-events // per)

    def writer(offset: int) -> None:
        try:
            for approval in range(offset, approvals, WRITER_THREADS):
                pause = start + approval * seconds / approvals - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                began = time.perf_counter()
                with transaction.atomic():
                    for index in range(approval * per, min(events, (approval + 1) * per)):
                        write_event(first_number + index, ACTIONS[index % per])
                latencies.append(time.perf_counter() - began)
        except BaseException as problem:  # reported below, in the benchmark's own thread
            failures.append(problem)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- (a) events per second delivered ------------------------------------------------------------


def delivery_rate(*, batch_sizes: tuple[int, ...], rounds: int = 3) -> dict:
    """For each batch size, `rounds` times in turn: audit_forward() delivering every event
    in the log from seq 1 to a fresh collector; the same bodies POSTed by a bare requests
    loop to another fresh one; and the events exported with json_lines to /dev/null
    (reading and encoding them, no network). Medians of each, after one untimed round."""
    total = newest_seq()
    if not total:
        raise StackError("the log is empty: nothing to deliver")
    results = {"events": total, "rounds": rounds, "by_batch_size": {}}
    exports = []
    for batch_size in batch_sizes:
        # The untimed round gives the bodies for the raw POSTs and warms the caches.
        _, bodies, checks = _forward_everything(batch_size, total)
        forwards, raws, own_exports = [], [], []
        for _ in range(rounds):
            own_exports.append(_export())
            raws.append(_raw_posts(bodies))
            seconds, bodies, round_checks = _forward_everything(batch_size, total)
            forwards.append(seconds)
            if not broken(checks):
                checks = round_checks  # the first round with a problem is the one kept
        exports += own_exports
        forwarded = statistics.median(forwards)
        raw_seconds = statistics.median(raws)
        # The naive floor of forwarding: read and encode every event (the export), then
        # send the bytes (the raw POSTs). 1.0 means the delivery loop costs nothing more.
        floor = statistics.median(own_exports) + raw_seconds
        results["by_batch_size"][str(batch_size)] = {
            "batches": len(bodies),
            "bytes_per_event": round(sum(len(b) for b in bodies) / total),
            "forward_seconds": round(forwarded, 3),
            "forward_seconds_each": [round(x, 3) for x in forwards],
            "forward_events_per_second": round(total / forwarded, 1),
            "raw_post_seconds": round(raw_seconds, 3),
            "raw_post_events_per_second": round(total / raw_seconds, 1),
            "ratio_to_raw_posts": round(raw_seconds / forwarded, 3),
            "ratio_to_export_plus_posts": round(floor / forwarded, 3),
            "received": checks,
        }
    export_seconds = statistics.median(exports)
    results["export_seconds"] = round(export_seconds, 3)
    results["export_events_per_second"] = round(total / export_seconds, 1)
    return results


def _export() -> float:
    """Seconds to export the whole log with json_lines to /dev/null."""
    began = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        for line in json_lines(events_for_export()):
            devnull.write(line)
    return time.perf_counter() - began


def _forward_everything(batch_size: int, total: int) -> tuple[float, list[bytes], dict]:
    # Back to the first event, as a new sink starts; a direct update rather than the audited
    # rewind, so that every round delivers exactly the same events.
    AuditSink.objects.filter(name=HttpSink.name).update(
        cursor=0, failures=0, next_attempt_at=None, leased_until=None, lease_owner=""
    )
    with HttpReceiver() as receiver:
        sink = HttpSink(receiver.url, timeout=30)
        began = time.perf_counter()
        report = audit_forward(sink=sink, batch_size=batch_size, budget_seconds=3600)
        seconds = time.perf_counter() - began
        if report.outcome != Outcome.CAUGHT_UP or report.delivered != total:
            raise StackError(f"forwarding ended {report.outcome} after {report.delivered} events")
        bodies = list(receiver.accepted)
        checks = received_problems(receiver.records(), total)
    return seconds, bodies, checks


def _raw_posts(bodies: list[bytes]) -> float:
    """The floor: the same bodies, one POST each on one kept-alive connection."""
    with HttpReceiver() as receiver, requests.Session() as session:
        headers = {"Content-Type": "application/x-ndjson; charset=utf-8"}
        began = time.perf_counter()
        for body in bodies:
            response = session.post(receiver.url, data=body, headers=headers, timeout=30)
            if response.status_code != 200:
                raise StackError(f"the collector answered {response.status_code}")
        return time.perf_counter() - began
