"""Partitioned results (0016) against the unpartitioned table of 0015, in the same run, on the same rows.

1. Import curve: `results import`'s path (`ResultLog` reading a runtime log, `import_results`) of one log of
   CHUNK results per deployment, deployment after deployment, until ROWS results are stored; the rate of each
   import as the table grows, reported at 1 M, 10 M, 20 M (as far as --rows goes). The results' times span
   the 60 days before now, so the partitioned table spreads them over ~60 daily partitions. The alternative:
   the same imports into a database migrated to 0015 only (one table, four indexes).
2. Retention of a month: `prune_results` (DROP of the 30 daily partitions older than 30 days) against the
   batched DELETE that `results prune` ran before 0016 (BRIN on created_at, 20,000 rows per transaction), on
   the rows imported in 1. (half of them: a month of 60 days), and on a smaller month generated in SQL first.

Each side runs its own embedded PostgreSQL in a temp directory (fsync off, as the tests do), one after the other.

    python benchmarks/bench_result_partitions.py [--rows 10000000] [--chunk 1000000] [--small-month 1000000]
    python benchmarks/bench_result_partitions.py --rows 20000000   # the full curve (about 7 min per side at 50,000 rows/s)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_results import new_deployment, process_cpu  # noqa: E402

SPAN = timedelta(days=60)
CHECKPOINTS = (1_000_000, 10_000_000, 20_000_000)


def write_log(path: Path, results: int) -> None:
    """``results`` runtime result lines (85 % predictions, 15 % refusals), times evenly over the 60 days before now."""
    import json
    import random

    rng = random.Random(7)
    start = datetime.now(timezone.utc) - SPAN + timedelta(minutes=5)
    step = (SPAN - timedelta(minutes=10)) / results
    with path.open("w") as out:
        for i in range(results):
            ts = (start + step * i).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            if rng.random() < 0.15:
                event = {"ts": ts, "level": "error", "event": "prediction_refused", "nonce": i, "reason": "exception",
                         "error_type": "ValueError", "message": f"no price for window {i}", "latency_ms": round(rng.uniform(1, 900), 3),
                         "where": "/workspace/bundle/src/model/runner.py:42"}  # fmt: skip
            else:
                event = {"ts": ts, "level": "info", "event": "prediction", "nonce": i, "value": round(rng.uniform(2000, 4000), 4),
                         "latency_ms": round(rng.uniform(1, 900), 3)}  # fmt: skip
            out.write(json.dumps(event) + "\n")


@contextlib.contextmanager
def database(name: str, upto: str | None):
    """Records on an embedded PostgreSQL (fsync off) migrated up to ``upto`` (a migration file prefix) or to the head."""
    import psycopg

    from allora_gitops.db.embedded import EmbeddedPostgres
    from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner
    from allora_gitops.db.records import Records

    work = Path(tempfile.mkdtemp(prefix=f"allora-bench-{name}-"))
    os.chmod(work, 0o755)
    server = EmbeddedPostgres(work / "pg")
    server.attach()
    try:
        with psycopg.connect(server.url, autocommit=True) as admin:
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                admin.execute(f"ALTER SYSTEM SET {setting}")
            admin.execute("SELECT pg_reload_conf()")
        migrations = MIGRATIONS_DIR
        if upto:
            migrations = work / "migrations"
            migrations.mkdir()
            for path in MIGRATIONS_DIR.glob("*.sql"):
                if path.name < upto:
                    shutil.copy(path, migrations)
        MigrationRunner(server.url, migrations).upgrade()
        with Records(server.url) as records:
            yield records
    finally:
        server.detach()
        shutil.rmtree(work, ignore_errors=True)


def old_prune(conn, cutoff: datetime) -> int:
    """`results prune` before 0016: DELETE by age in batches of 20,000, each its own transaction."""
    deleted = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                "DELETE FROM submission_results WHERE id IN (SELECT id FROM submission_results WHERE created_at < %s LIMIT 20000)",
                (cutoff,),
            )
        deleted += cur.rowcount
        if cur.rowcount < 20000:
            return deleted


def prune(records, partitioned: bool) -> tuple[float, int]:
    """(seconds, rows gone) of removing every result older than 30 days."""
    from allora_gitops.db.results import prune_results

    conn = records.connection
    conn.execute("ANALYZE submission_results")
    before = conn.execute("SELECT count(*) FROM submission_results").fetchone()[0]
    t = time.perf_counter()
    if partitioned:
        report = prune_results(conn, timedelta(days=30))
        extra = f" ({len(report.dropped)} partitions dropped, {report.stray_deleted} rows deleted from the default)"
    else:
        old_prune(conn, datetime.now(timezone.utc) - timedelta(days=30))
        extra = ""
    seconds = time.perf_counter() - t
    gone = before - conn.execute("SELECT count(*) FROM submission_results").fetchone()[0]
    print(f"    month of {gone:,} results removed in {seconds:.3f} s{extra}", flush=True)
    return seconds, gone


def small_month(records, partitioned: bool, rows: int) -> float:
    """Generate ``rows`` results over the 60 days before now in SQL (not timed), then time removing the older month."""
    from allora_gitops.db.result_partitions import ensure_result_partitions

    conn = records.connection
    if partitioned:
        ensure_result_partitions(conn, behind=SPAN + timedelta(days=1))
    d = new_deployment(records, 9999)
    conn.execute(
        """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, latency_ms)
           SELECT %s, 'prediction', g, 'success', now() - %s::interval + (%s::interval / %s) * g, '3012.5', 12.5
           FROM generate_series(1, %s) g""",
        (d, SPAN, SPAN - timedelta(minutes=10), rows, rows),
    )
    seconds, _ = prune(records, partitioned)
    conn.execute("TRUNCATE submission_results")
    return seconds


def drop_phases(rows: int) -> None:
    """``rows`` results over 60 days (SQL, not timed), then `prune_results`' two steps timed apart: the transaction that
    takes the month out of submission_results (DETACH, under the table's lock) and the DROPs that free the files."""
    from allora_gitops.db.result_partitions import TABLE, ensure_result_partitions, result_partitions

    with database("drop", None) as records:
        conn = records.connection
        ensure_result_partitions(conn, behind=SPAN + timedelta(days=1))
        d = new_deployment(records, 1)
        conn.execute(
            """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, error_message, latency_ms)
               SELECT %s, 'prediction', g, 'success', now() - %s::interval + (%s::interval / %s) * g, '3012.5',
                      NULL, 12.5 FROM generate_series(1, %s) g""",
            (d, SPAN, SPAN - timedelta(minutes=10), rows, rows),
        )
        conn.execute("CHECKPOINT")
        cutoff = conn.execute("SELECT now() - interval '30 days'").fetchone()[0]
        old = [p for p in result_partitions(conn) if p.end and p.end <= cutoff]
        month = conn.execute("SELECT count(*) FROM submission_results WHERE created_at < %s", (old[-1].end,)).fetchone()[0]
        size = conn.execute("SELECT sum(pg_total_relation_size(to_regclass(n))) FROM unnest(%s::text[]) n", ([p.name for p in old],)).fetchone()[0]
        t = time.perf_counter()
        with conn.transaction():
            for p in old:
                conn.execute(f'ALTER TABLE {TABLE} DETACH PARTITION "{p.name}"')
        detached = time.perf_counter() - t
        for p in old:
            with conn.transaction():
                conn.execute(f'DROP TABLE "{p.name}"')
        total = time.perf_counter() - t
        print(f"month of {month:,} results in {len(old)} partitions ({float(size) / 1e9:.2f} GB): out of submission_results"
              f" (DETACH, table locked) in {detached:.3f} s; files freed (DROP, each table alone) {total - detached:.3f} s more;"
              f" total {total:.3f} s (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip


def run_side(label: str, upto: str | None, rows: int, chunk: int, log: Path, small: int) -> dict:
    from allora_gitops.db.result_partitions import ensure_result_partitions
    from allora_gitops.db.results import import_results
    from allora_gitops.result_log import ResultLog

    partitioned = upto is None
    print(f"\n== {label}", flush=True)
    out: dict = {"curve": {}}
    with database(label.split()[0], upto) as records:
        conn = records.connection
        out["small_drop"] = small_month(records, partitioned, small) if small else None
        if partitioned:
            ensure_result_partitions(conn, behind=SPAN + timedelta(days=1))
        total, i = 0, 0
        while total < rows:
            target = new_deployment(records, i)
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            t, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(backend)
            with log.open() as handle:
                counts = import_results(conn, target, ResultLog(str(log)).rows(handle))
            seconds = time.perf_counter() - t
            cpu, server_cpu = time.process_time() - cpu, process_cpu(backend) - server_cpu
            total += counts.inserted
            i += 1
            rate = counts.inserted / seconds
            out["curve"][total] = rate
            out.setdefault("cpu", {})[total] = (counts.inserted / max(server_cpu, 1e-3), counts.inserted / max(cpu + server_cpu, 1e-3))
            print(f"  {total:>11,} rows stored: this import {counts.inserted:,} in {seconds:.1f} s = {rate:,.0f} rows/s wall;"
                  f" per CPU-second: database {out['cpu'][total][0]:,.0f} rows, client + database {out['cpu'][total][1]:,.0f} rows"
                  f" (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
        size = conn.execute("SELECT pg_total_relation_size(c.oid) FROM pg_class c WHERE relname = 'submission_results'").fetchone()[0]
        if partitioned:
            size = conn.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('submission_results')").fetchone()[0]
        print(f"  table + indexes: {float(size) / 1e9:.2f} GB", flush=True)
        out["big_drop"] = prune(records, partitioned)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="results stored per side (20000000 for the issue's full curve)")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="results per imported log (one deployment each)")
    parser.add_argument("--small-month", type=int, default=1_000_000, help="rows of the SQL-generated 60 days (0: skip)")
    parser.add_argument("--alternative-rows", type=int, help="results stored on the unpartitioned side (default: --rows)")
    parser.add_argument("--drop-phases", type=int, metavar="ROWS", help="only time prune's two steps on ROWS results over 60 days")
    parser.add_argument("--only", choices=("partitioned", "unpartitioned"), help="run one side")
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    if args.drop_phases:
        drop_phases(args.drop_phases)
        return
    work = Path(tempfile.mkdtemp(prefix="allora-bench-log-"))
    try:
        log = work / "runtime.log"
        t = time.perf_counter()
        write_log(log, args.chunk)
        print(f"wrote a log of {args.chunk:,} results ({log.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
        sides = {}
        if args.only != "unpartitioned":
            sides["partitioned"] = run_side("partitioned (0016, daily)", None, args.rows, args.chunk, log, args.small_month)
        if args.only != "partitioned":
            sides["unpartitioned"] = run_side("unpartitioned (0015, four indexes)", "0016", args.alternative_rows or args.rows, args.chunk, log, args.small_month)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("\n== summary", flush=True)
    for name, side in sides.items():
        curve = side["curve"]
        points = [(c, curve[min(curve, key=lambda n: abs(n - c))]) for c in CHECKPOINTS if max(curve) >= c * 0.95]
        print(f"{name}: import rate at " + ", ".join(f"{c / 1e6:.0f} M rows {r:,.0f} rows/s" for c, r in points)
              + f"; sustained (all imports) {sum(curve.values()) / len(curve):,.0f} rows/s")  # fmt: skip
        cpu = side["cpu"]
        print("  per CPU-second (database; client + database) at "
              + ", ".join(f"{c / 1e6:.0f} M {cpu[n][0]:,.0f}; {cpu[n][1]:,.0f}" for c in CHECKPOINTS
                          for n in [min(cpu, key=lambda n: abs(n - c))] if max(cpu) >= c * 0.95))  # fmt: skip
        if side["small_drop"] is not None:
            print(f"  removing a month: {side['small_drop']:.3f} s (small month), {side['big_drop'][0]:.3f} s ({side['big_drop'][1]:,} rows)")
    if len(sides) == 2:
        p, u = sides["partitioned"], sides["unpartitioned"]
        common = sorted(set(p["curve"]) & set(u["curve"]))
        print("ratios partitioned / unpartitioned import rate: "
              + ", ".join(f"{n / 1e6:.0f} M {p['curve'][n] / u['curve'][n]:.2f}×" for n in common))  # fmt: skip
        print(f"month removal: DROP is {u['big_drop'][0] / max(p['big_drop'][0], 1e-6):,.0f}× faster than DELETE"
              + (f" (small month {u['small_drop'] / max(p['small_drop'], 1e-6):,.0f}×)" if p["small_drop"] is not None else ""))
    print(f"load average at the end {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
