"""The results table (printed, and written to benchmarks/RESULTS.md) from run.py's figures."""

from __future__ import annotations

import json
import statistics

METHOD = """\
## How each figure is measured

1. **Check throughput.** gunicorn with sync workers (one per core) serves Airlock's WSGI
   application (`portal/wsgi.py`) from PostgreSQL holding 10,000 active grants, plus, in
   the same processes (`benchmarks/bench_wsgi.py`), a bare Django JSON view on a Django
   handler with no middleware at all (`/bench/bare`), the same view running one `SELECT 1`
   per answer on its persistent connection (`/bench/bare-one-query`, the floor for a check
   that asks the database on every call), and both again through Airlock's middleware
   (`/bench/baseline`, `/bench/one-query`, the second line). `wrk` (one thread) sends
   `GET /api/v1/grants/check` with GitHub Actions OIDC tokens from the local GitHub's
   issuer (RS256, verified against its JWKS), each for a person and environment holding a
   grant, and with personal API tokens (`alk_...`, repository and environment in the
   query) of 300 people asking about their own grants. *Repeat run*: 300 workflow runs (or
   people) asking again and again (an allowed answer is audited once per run, or person
   and hour, so this is the read path). The lines run in rounds, A B C ... A B C, and each
   figure is the median over the rounds. *New run each*: every request a new run, so every
   answer writes an audit event. Queries per check: the same request in-process under
   `CaptureQueriesContext`.
2. **Revocation lag.** Requests filed and approved through the services; a separate Celery
   worker and beat (`deploy/start worker|beat`, Redis, PostgreSQL) apply them on the local
   GitHub; their expiries are then moved to one every `window / n` seconds. Lag = the
   moment of the local GitHub's accepted environment PUT that no longer lists the reviewer,
   minus the grant's `expires_at`.
3. **Lost-message bound.** The same, with the worker SIGKILLed (its whole process group) during
   the window and started again later: the expiry messages it held are lost (Redis keeps them
   unacknowledged for the visibility timeout), so the beat sweep is what revokes them.
   *Late after ready* = removal − max(expiry, moment the new worker was ready), to compare
   with the sweep interval.
4. **Mass expiry.** Grants bulk-created and applied by the real reconciler (one pass per
   environment), then made to end within one window: the grants of one environment at one
   moment, the environments' moments spread over the window. GitHub allows six reviewers per
   environment, so the 20 grants of an environment belong to 5 people with 4 overlapping
   grants each. Reads and writes per environment are counted from the local GitHub's request
   log from the moment the expiries were set. *Limited*: the same with the local GitHub
   enforcing GitHub's secondary limit on content-creating requests (writes per minute,
   answered 403 with `retry-after`).
5. **Fault soak.** Requests filed and approved while, for the fault window, the local GitHub
   answers 10% of REST requests with 500/502/503 at random, and on a schedule two requests
   every 15 s are held past the client's timeout (2 s) and then answered 504, two writes
   every 20 s get a secondary rate limit (403 + `retry-after: 2`), and two requests every
   30 s a primary one (403, `x-ratelimit-remaining: 0`, reset in 3 s); the worker is
   SIGKILLed once and the private Redis restarted once (losing every queued message). Each
   grant is given a short life once applied (5% are given back early by their requester).
   After the fault window GitHub recovers; the run waits until every grant has ended.
   *Late after recovery* = removal − max(due, recovery) > one sweep interval.
6. **Audit forwarding.** *Catch-up*: a Celery worker and beat (`deploy/start worker|beat`,
   Redis, PostgreSQL, `AIRLOCK_AUDIT_FORWARD_SECONDS` and `AIRLOCK_AUDIT_FORWARD_BATCH` at
   their defaults) deliver the audit log to a local HTTP collector (tests/siem_fake's
   HttpReceiver, on a thread of the benchmark process). Once it has taken the first events,
   the collector answers every POST 503 for the outage, while the benchmark writes the events
   through `audit.log_event`, spread evenly over the outage, as approvals do (two events in
   one transaction, four threads at once); then it accepts again (later than planned only
   if the writing took longer: the outage covers all of it).
   Catch-up = the moment the sink's cursor reached the newest seq − the moment the collector
   recovered; it splits into the wait for the worker's next try (the backoff it was in, until
   the first POST after recovery arrives) and the drain (from that POST until caught up).
   What the collector received is then checked as a SIEM would, from the records alone:
   after dropping duplicates by seq, every seq from 1 to the newest, none arriving after a
   later one, each `prev_hash` the previous record's `hash`, each hash recomputed under the
   key. *Rate*: with the worker stopped, every event in
   the log (the same ones) delivered from seq 1 by `audit_forward()` in the benchmark process
   to a fresh collector, per batch size; the baseline is the same bodies POSTed by a bare
   `requests` loop on one kept-alive connection to another fresh collector, and the same
   events through `export_audit_log`'s JSON Lines encoder to /dev/null (reading and
   encoding, no network). One untimed round, then three rounds of the three in turn;
   medians. The ratio is (export + raw POSTs) time / forwarding
   time: 1.0 would mean the delivery loop (the lease, batches, the cursor's
   compare-and-set per batch) costs nothing beyond reading, encoding and sending. The
   collector shares the benchmark's process (and its GIL) in all of them.

7. **Growth.** In the benchmark process, on its own PostgreSQL database: 2,000 requesters,
   10 approvers, 20 policies (one per organisation, one approver group each), 200
   repositories × 3 environments, made through the ORM; then the history written with COPY
   (psycopg 3's `cursor.copy`), every column as the model's own defaults prepare it:
   requests across the repositories, environments and policies (10% token access, 1%
   break-glass), the newest 300 open (pending, approved, active) and the rest history
   (70% expired, then revoked, denied, cancelled, timed out, failed); an approval and a grant
   for each approved one; audit events (grant.checked 45%, then request and grant events),
   appended to the chain as `log_event` links them (contiguous seq, each HMAC-SHA256 under
   the signing key over the previous hash; the head moved to the last one), so the seeded
   log verifies.
   The history grows backwards in time (one request every 5 minutes, one event every 45 s):
   the newest rows, the ones each page shows first, are the same at both sizes; what grows
   is the past. After each seeding, as autovacuum would have by then: the GIN indexes'
   pending lists merged (`gin_clean_pending_list`) and `ANALYZE`. One user has
   1,000 requests (one in ten of the first 10,000); the approver (not staff) is routed 2 of
   the 20 policies; the platform admin is a superuser. Each page is asked through Django's
   test `Client` (signed in with `force_login`, session authentication for the API): two
   untimed calls, then the median of seven; its queries counted on one more call under
   `CaptureQueriesContext`. Measured at 10,000 requests / 50,000 events, then the same
   database grown to 300,000 / 2,000,000 and measured again. A page fails when its median
   more than doubles; the plan (`EXPLAIN (ANALYZE, BUFFERS)`) of its slowest query at the
   large size is then kept below the figures, as it is for a page within its budget whose
   slowest query more than doubled (and takes 20 ms or more).

8. **Audit throughput.** On the benchmark's PostgreSQL database, 1 and then 4 writer
   processes (forked, each with its own connection) append events through
   `audit.log_event`, one event per transaction, for the line's seconds, started together.
   *Waiting* is `log_event(sealed=True)`: every writer takes the chain head and holds it to
   its commit, as every append did before events could wait for their seal (the issue's
   ceiling of one). *Passing* is the default: a writer that finds the head held writes its
   event to `AuditPendingEvent` and commits, and the head's holder seals it
   (docs/audit-log.md "Sealing"). The lines run in rounds, A B C D ... A B C D; each figure
   is the median over the rounds. Meanwhile the benchmark process samples, every 0.2 s,
   how many events wait for their seal and how old the oldest is; after each line it does
   what beat's "airlock: audit seal" does every sweep: `audit_pending_seal()`, for any a
   race left waiting, and `audit_tables_vacuum(force=True)`. *Unshared*: 4 passing
   writers while a connection of the benchmark holds the head all along, so every event
   waits and is sealed only after the line: the writers'
   own statements with no shared head, and without the chain's own inserts (an upper
   bound no way of chaining reaches, since every event must enter the chain). *Bare*:
   no audit at all, each transaction one INSERT into a plain table of the benchmark's own,
   1 and 4 writers: the machine's own ratio for a transaction per event. *The ideal
   sealer* is an estimate from the unshared line: its writers' time per event plus the
   time per event of the sweep that sealed their events after the line (batches of 500,
   one process, its vacuum left out), that time shared across the machine's cores, and
   never above that one sealer's own rate; against one waiting writer of the same round,
   the median over the rounds.
   At the end `verify_chain()` checks the whole log, and every event written must be in it
   exactly once.

Invariants (2 to 5, and the CI versions in `tests/soak/`): every approved request got
exactly one grant, applied at most once and revoked at most once (audit events per grant);
no grant left open; no reviewer missing from an accepted PUT while their grant was in force;
none put back after revocation; the baseline reviewer in every accepted PUT; at the end each
environment's reviewers are exactly baseline + active grants; the audit chain verifies.
"""


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def _s(seconds) -> str:
    return "–" if seconds is None else f"{seconds:.2f} s"


def _verdict(ok) -> str:
    return {True: "met", False: "**missed**", None: "–"}[ok]


def _invariants_row(number, name, invariants) -> tuple:
    from benchmarks.scenarios import broken_invariants

    problems = broken_invariants(invariants)
    text = "all hold" if not problems else "; ".join(problems)
    return (number, name, "invariants", text, "all hold", _verdict(not problems))


def rows(report: dict) -> list[tuple]:
    results = report["results"]
    sweep = report["sweep_seconds"]
    out = []
    for number, result in sorted(results.items(), key=lambda item: int(item[0])):
        number = int(number)
        if "error" in result:
            out.append((number, _name(number), "error", result["error"], "", "**failed**"))
            continue
        if number == 1:
            rps, ratio = result["rps"], result["ratios"]
            audited = result["check_audited"]
            q = result["queries"]

            def median_of(line, key, runs=result["runs"]):
                return statistics.median(r[key] for r in runs[line])

            every = [r for runs in result["runs"].values() for r in runs] + [audited]
            out += [
                (1, "Check throughput",
                 "requests/s, check with an OIDC token vs a bare Django view (no middleware)",
                 f"{rps['check']:.0f} vs {rps['bare']:.0f} (ratio {ratio['check/bare']:.2f})",
                 "ratio ≥ 0.8", _verdict(ratio["check/bare"] >= 0.8)),
                (1, "", "requests/s, check with an API token vs the bare view",
                 f"{rps['check_api_token']:.0f} (ratio {ratio['check_api_token/bare']:.2f})",
                 "ratio ≥ 0.8", _verdict(ratio["check_api_token/bare"] >= 0.8)),
                (1, "", "requests/s, the bare view running one SELECT 1 (the one-query floor)",
                 f"{rps['bare_one_query']:.0f} (ratio {ratio['bare_one_query/bare']:.2f}); "
                 f"the check reaches {ratio['check/bare_one_query']:.2f} of it with OIDC, "
                 f"{ratio['check_api_token/bare_one_query']:.2f} with an API token", "", "–"),
                (1, "", "requests/s, the bare view through Airlock's middleware (second line)",
                 f"{rps['baseline']:.0f}; with one SELECT 1 {rps['one_query']:.0f}; the check "
                 f"reaches {ratio['check/baseline']:.2f} of it (API token "
                 f"{ratio['check_api_token/baseline']:.2f})", "", "–"),
                (1, "", "latency p50 / p99, check OIDC / API token / bare view (medians)",
                 f"{median_of('check', 'p50_ms'):.1f} / {median_of('check', 'p99_ms'):.1f}; "
                 f"{median_of('check_api_token', 'p50_ms'):.1f} / "
                 f"{median_of('check_api_token', 'p99_ms'):.1f}; "
                 f"{median_of('bare', 'p50_ms'):.1f} / {median_of('bare', 'p99_ms'):.1f} ms",
                 "", "–"),
                (1, "", "requests/s, check (new run each, audited)",
                 f"{audited['rps']:.0f} (ratio {ratio['check_audited/bare']:.2f}); p50 / p99 "
                 f"{audited['p50_ms']:.1f} / {audited['p99_ms']:.1f} ms", "", "–"),
                (1, "", "queries per check: new run / repeat / refused",
                 f"{q['first']} / {q['repeat']} / {q['refused']}", "", "–"),
                (1, "", "non-2xx or socket errors",
                 str(sum(r[k] for r in every
                         for k in ("errors_status", "errors_connect", "errors_read",
                                   "errors_write", "errors_timeout"))), "0",
                 _verdict(all(r["errors_status"] == 0 for r in every))),
            ]
        elif number == 2:
            lag = result["lag"]
            out += [
                (2, "Revocation lag",
                 f"lag p50 / p99 / max ({lag['count']} grants)",
                 f"{_ms(lag['p50'])} / {_ms(lag['p99'])} / {_ms(lag['max'])}",
                 "p99 < 1 s", _verdict(lag["p99"] is not None and lag["p99"] < 1.0)),
                _invariants_row(2, "", result["invariants"]),
            ]
        elif number == 3:
            lag, after = result["lag"], result["late_after_ready"]
            out += [
                (3, "Lost-message bound",
                 f"max lag, worker down {result['worker_down_seconds']:.0f} s "
                 f"({lag['count']} grants)",
                 f"{_s(lag['max'])} (p50 {_s(lag['p50'])})", "", "–"),
                (3, "", "max late after the new worker was ready",
                 _s(after["max"]), f"≤ sweep interval ({sweep} s)",
                 _verdict(after["max"] is not None and after["max"] <= sweep)),
                _invariants_row(3, "", result["invariants"]),
            ]
        elif number == 4:
            for label, key in (("", "unlimited"), ("limited: ", "limited")):
                part = result[key]
                reads, writes = part["reads_per_env"], part["writes_per_env"]
                limit = part["writes_per_minute_limit"]
                title = "Mass expiry" if not label else ""
                what = (f"{part['grants']} grants / {part['environments']} environments"
                        + (f", GitHub allows {limit} writes/min" if limit else ""))
                out += [
                    (4, title, f"{label}GitHub calls per environment: reads / writes (max, mean)",
                     f"{reads['max']} / {writes['max']} (mean {reads['mean']:.2f} / "
                     f"{writes['mean']:.2f}); {what}",
                     "1 read, 1 write",
                     _verdict(reads["max"] <= 1 and writes["max"] <= 1) if not limit else "–"),
                    (4, "", f"{label}all gone, after the last expiry",
                     _s(part["all_gone_after_last_expiry"])
                     + f" (per-environment lag p50 {_s(part['lag']['p50'])}, "
                     f"p99 {_s(part['lag']['p99'])}"
                     + (f"; {part['grants_revoked_per_second']:.1f} grants/s"
                        if part.get("grants_revoked_per_second") else "")
                     + ")"
                     + (f"; {part['refused_writes']} writes refused with retry-after"
                        if limit else ""),
                     "", "–"),
                    _invariants_row(4, "", part["invariants"]),
                ]
        elif number == 5:
            inv = result["invariants"]
            served = result["faults_served"]
            out += [
                (5, "Fault soak", "faults injected",
                 ", ".join(f"{n} {k}" for k, n in sorted(served.items()))
                 + f", {result['worker_kills']} worker kill, "
                 f"{result['redis_restarts']} Redis restart, over {result['fault_seconds']:.0f} s; "
                 f"{result.get('5xx_share_during_faults') or 0:.0%} of the "
                 f"{result.get('github_requests_during_faults', '?')} GitHub requests in that "
                 f"window got a 5xx ({result['github_requests']} requests in all, "
                 f"{result['grants']} grants)",
                 "", "–"),
                (5, "", "grants late by more than one sweep after GitHub recovered",
                 f"{result['late_after_recovery']} (max {_s(result['lag_after_recovery']['max'])})",
                 "0", _verdict(result["late_after_recovery"] == 0)),
                (5, "", "grants lost / applied twice",
                 f"{inv['lost']} / {inv['applied_twice']}", "0 / 0",
                 _verdict(inv["lost"] == 0 and inv["applied_twice"] == 0)),
                (5, "", "reviewers lost to races",
                 str(inv["reviewers_lost"]), "0", _verdict(inv["reviewers_lost"] == 0)),
                _invariants_row(5, "", inv),
            ]
        elif number == 6:
            out += _forwarding_rows(result)
        elif number == 7:
            out += _growth_rows(result)
        elif number == 8:
            out += _audit_throughput_rows(result)
    return out


def _audit_throughput_rows(result: dict) -> list[tuple]:
    rate, ratio = result["events_per_second"], result["ratios"]
    one, four = "waiting, 1 writer", "passing, 4 writers"
    passing = [r for name, runs in result["runs"].items() if name.startswith("passing")
               for r in runs]
    intact = (result["chain_ok"] and result["in_log"] == result["written"]
              == result["distinct_in_log"] and result["pending_at_end"] == 0)
    return [
        (8, "Audit throughput",
         "events/s, 4 writers passing a held head vs one writer (today's ceiling)",
         f"{rate[four]:.0f} vs {rate[one]:.0f} (ratio {ratio[four]:.2f}, the median of "
         "each round's own)", "ratio ≥ 3", _verdict(ratio[four] >= 3)),
        (8, "", "events/s, 4 writers passing vs 4 writers waiting (today's code, 4 writers)",
         f"{rate[four]:.0f} vs {rate['waiting, 4 writers']:.0f} (ratio "
         f"{result['passing_4_vs_waiting_4']:.2f})", "", "–"),
        (8, "", "events/s: waiting 1 / 4 writers; passing 1 / 4 writers",
         f"{rate[one]:.0f} / {rate['waiting, 4 writers']:.0f}; "
         f"{rate['passing, 1 writer']:.0f} / {rate[four]:.0f}", "", "–"),
        (8, "", "events/s, 4 writers with no shared head at all (every event left waiting, "
         "sealed after the line: their own statements, without the chain's)",
         f"{rate['unshared, 4 writers']:.0f} (ratio {ratio['unshared, 4 writers']:.2f}); passing "
         f"reaches {rate[four] / rate['unshared, 4 writers']:.2f} of it", "", "–"),
        (8, "", "the same against one waiting writer, were sealing as cheap as the sweep's "
         "batches of 500 after the unshared line (an estimate: the bound of an ideal sealer "
         "on this machine)",
         f"ratio {result['ideal_sealer_vs_waiting_1']:.2f}; passing reaches "
         f"{ratio[four] / result['ideal_sealer_vs_waiting_1']:.2f} of it", "", "–"),
        (8, "", "events/s, no audit at all: a transaction per row into a plain table, 1 / 4 "
         "writers (how far this machine lets 4 writers go beyond one)",
         f"{rate['bare, 1 writer']:.0f} / {rate['bare, 4 writers']:.0f} (ratio "
         f"{result['bare_4_vs_1']:.2f})", "", "–"),
        (8, "", "events waiting for their seal while passing: most at once, oldest",
         f"{max(r['waiting_max'] for r in passing)}; "
         f"{max(r['waiting_age_max_seconds'] for r in passing):.2f} s; left for the sweep "
         f"after the writers stopped: {max(r['left_waiting_after_the_writers'] for r in passing)}",
         "", "–"),
        (8, "", "chain after the run: verified; events written / in the log / distinct",
         f"{'intact' if result['chain_ok'] else 'BROKEN: ' + result['chain_problem']} "
         f"({result['chain_checked']} events); {result['written']} / {result['in_log']} / "
         f"{result['distinct_in_log']}", "intact, all equal", _verdict(intact)),
    ]


def _growth_rows(result: dict) -> list[tuple]:
    small, large = result["small"], result["large"]
    seeding = result["seeding"]
    hashing = seeding["small"]["hashing_seconds"] + seeding["large"]["hashing_seconds"]
    out = [
        (7, "Growth", "history seeded with COPY: small, then grown to large",
         f"{small['requests']:,} requests / {small['events']:,} events in "
         f"{seeding['small']['seconds']:.0f} s; grown to {large['requests']:,} / "
         f"{large['events']:,} in {seeding['large']['seconds']:.0f} s more "
         f"({result['counts']['grants']:,} grants, {result['counts']['approvals']:,} "
         f"approvals; hashing the chain {hashing:.0f} s of it)", "", "–"),
    ]
    for row in result["pages"]:
        out.append(
            (7, "", f"{row['page']}: median ms, small → large; queries",
             f"{row['small_ms']:.0f} → {row['large_ms']:.0f} ms (×{row['ratio']:.2f}); "
             f"queries {row['queries_small']} → {row['queries_large']}"
             + (f"; its slowest query {row['slowest_query_ms_small']:.0f} → "
                f"{row['slowest_query_ms_large']:.0f} ms" if row.get("slowest_query_grew")
                else "")
             + ("" if tuple(row["status"]) == (200, 200) else f"; HTTP {row['status']}"),
             f"≤ {result['target_ratio']:g}×", _verdict(row["ok"]))
        )
    return out


def growth_plans(result: dict) -> list[str]:
    """The plan of each failing page's slowest query, for whoever makes it fast."""
    parts = []
    for row in result.get("pages", []):
        if row.get("explain"):
            parts += [
                f"<details><summary>7. {row['page']}"
                f"{'' if row['ok'] else ' (missed)'}: plan of its slowest query "
                f"({row['slowest_query_ms']} ms at the large size, "
                f"{row['slowest_query_ms_small']} ms at the small)</summary>",
                "",
                "```sql",
                row["slowest_sql"],
                "```",
                "",
                "```text",
                row["explain"],
                "```",
                "",
                "</details>",
                "",
            ]
    return parts


def _forwarding_rows(result: dict) -> list[tuple]:
    from benchmarks.audit_forwarding import broken

    catch_up, rate = result["catch_up"], result["rate"]
    got = catch_up["received"]
    problems = broken(got) + [
        f"batch {size}: {'; '.join(broken(part['received']))}"
        for size, part in rate["by_batch_size"].items()
        if broken(part["received"])
    ]
    out = [
        (6, "Audit forwarding",
         f"catch-up after a {catch_up['outage_seconds']:.0f} s outage (503) with "
         f"{catch_up['events_written_during_outage']} events written meanwhile",
         f"{_s(catch_up['catch_up_seconds'])}: {_s(catch_up['wait_for_next_try_seconds'])} "
         f"waiting for the worker's next try (backoff after "
         f"{catch_up['failures_recorded']} refused tries), then "
         f"{_s(catch_up['drain_seconds'])} from its first POST, draining "
         f"{catch_up['backlog_at_recovery']} events "
         f"({catch_up['drain_events_per_second']} events/s, batches of "
         f"{catch_up['batch_size']}); forward interval {catch_up['forward_seconds']} s",
         "", "–"),
        (6, "", "received: lost / reordered / duplicated; chain",
         f"{got['lost']} / {got['reordered']} / {got['duplicates']}; "
         f"{'verifies' if got['chain_ok'] else got['chain_problem']}",
         "0 / 0 / ≤ one batch; verifies",
         _verdict(not broken(got) and got["duplicates"] <= catch_up["batch_size"])),
        (6, "", f"writing while the sink was down: a transaction of "
         f"{catch_up['events_per_transaction']} log_event calls, p50 / p99",
         f"{catch_up['write_transaction_ms']['p50']:.1f} / "
         f"{catch_up['write_transaction_ms']['p99']:.1f} ms ({catch_up['writer_threads']} "
         f"threads; all written in {catch_up['writing_seconds']:.1f} s)", "", "–"),
    ]
    for size, part in rate["by_batch_size"].items():
        out.append(
            (6, "", f"events/s delivered, batch {size}: forwarding vs export + raw POSTs "
             "of the same bytes",
             f"{part['forward_events_per_second']:.0f} (ratio "
             f"{part['ratio_to_export_plus_posts']:.2f}; raw POSTs alone "
             f"{part['raw_post_events_per_second']:.0f}, ratio {part['ratio_to_raw_posts']:.2f};"
             f" {part['batches']} POSTs, {part['bytes_per_event']} bytes/event)", "", "–")
        )
    out.append(
        (6, "", "events/s exported as JSON Lines to /dev/null (no network)",
         f"{rate['export_events_per_second']:.0f} ({rate['events']} events)", "", "–")
    )
    if problems:
        out.append((6, "", "received checks", "; ".join(problems), "all hold", "**missed**"))
    return out


def _name(number: int) -> str:
    from benchmarks.run import NAMES

    return NAMES[number]


def _table(rows_: list[tuple]) -> str:
    lines = ["| # | benchmark | figure | result | target | verdict |",
             "|---|---|---|---|---|---|"]
    for row in rows_:
        cells = [str(c).replace("|", "\\|") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _slim(value):
    """The figures without long lists (SQL, plans are kept short)."""
    if isinstance(value, dict):
        return {k: _slim(v) for k, v in value.items()
                if k not in ("repeat_sql", "slowest_sql", "explain")}
    if isinstance(value, list):
        return [_slim(v) for v in value]
    return value


def _profile_table(profile: dict) -> str:
    """Benchmark 1's in-process breakdown (benchmarks/check_profile.py) as two tables."""
    lines = [
        "### 1. Where a check's time goes (in-process, per call)",
        "",
        "| line | wall µs (median / min) | CPU µs of the web process (median / min) |",
        "|---|---|---|",
    ]
    for label, figures in profile.items():
        lines.append(
            f"| {label} | {figures['wall_us']} / {figures['wall_us_min']} | "
            + (f"{figures['cpu_us']} / {figures['cpu_us_min']} |" if "cpu_us" in figures
               else "– |")
        )
    for label, figures in profile.items():
        if "layers" not in figures:
            continue
        lines += ["", f"Layers of *{label}* under cProfile (which slows everything alike):", "",
                  "| layer | µs profiled | share of the request |", "|---|---|---|"]
        for layer, share in figures["layers"].items():
            lines.append(f"| {layer} | {share['us_profiled']} | {share['share']:.0%} |")
    return "\n".join(lines)


def render(report: dict) -> str:
    machine = report["machine"]
    parts = [
        "# Airlock benchmark results",
        "",
        f"Run on {report['date']} with `{report['command']}`"
        f"{' (quick: smaller, shorter runs)' if report['quick'] else ''}, "
        f"in {report['total_seconds'] // 60} min {report['total_seconds'] % 60} s. "
        "Reproduce with `make bench` (needs PostgreSQL, `redis-server` and `wrk`; see "
        "`benchmarks/run.py`).",
        "",
        f"Machine: {machine['cpus']} cores ({machine['cpu']}), {machine['memory']} memory, "
        f"{machine['os']}; Python {machine['python']}, Django {machine['django']}, "
        f"PostgreSQL {machine['postgresql']}, Redis {machine['redis']}, {machine['wrk']}. "
        "Everything (PostgreSQL, Redis, gunicorn, the worker and beat, the local GitHub and "
        "the load generator) shares those cores, as on a small single-host deployment. "
        f"Beat sweep interval: {report['sweep_seconds']} s. Load average (1, 5, 15 min) "
        f"when the run started: {machine.get('load_at_start', '?')}; when it ended: "
        f"{report.get('load_at_end', '?')} (other work on the machine shows here).",
        "",
        _table(rows(report)),
        "",
    ]
    profile = report["results"].get(1, report["results"].get("1", {})).get("profile")
    if profile:
        parts += [_profile_table(profile), ""]
    notes = report.get("notes")
    if notes:
        parts += ["## Notes on this run", "", notes.strip(), ""]
    parts += [METHOD, "## Figures", ""]
    for number, result in sorted(report["results"].items(), key=lambda item: int(item[0])):
        parts += [
            f"<details><summary>{number}. {_name(int(number))}</summary>",
            "",
            "```json",
            json.dumps(_slim(result), indent=1, default=str),
            "```",
            "",
            "</details>",
            "",
        ]
        if int(number) == 7:
            parts += growth_plans(result)
    return "\n".join(parts)
