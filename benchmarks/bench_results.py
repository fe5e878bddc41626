"""Submission results at volume: `results import` of 1,000,000 log lines, and the summary query on 1,000,000 rows.

1. Import: a runtime log of LINES JSON lines (80 % predictions, 15 % refusals with a message and a
   `where`, 5 % noise lines) read by `ResultLog` and stored by `import_results` (binary COPY into a temp table,
   one INSERT … ON CONFLICT DO NOTHING), exactly the path of `allora-gitops results import`. Target
   ≥ 20,000 rows/s. Against it, the obvious alternative on a SAMPLE of the same rows: one INSERT per
   row (same redaction, same ON CONFLICT), committed per row as a reporter posting one by one would.
   Re-importing the same log (every row already there) is timed too.
2. Summary: 1,000,000 rows spread over 1,000 deployments and the last 10 days (generated in SQL, not
   timed); `deployment_result_summary` of QUERIES random deployments: p50/p95 ms. Against it: fetching
   the deployment's 7-day rows and computing the same numbers in Python.

Runs its own embedded PostgreSQL in a temp directory (fsync off, as the tests do).

    python benchmarks/bench_results.py [--lines 1000000] [--sample 20000] [--queries 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_log(path: Path, lines: int) -> int:
    """A log of ``lines`` lines; returns how many are results."""
    rng = random.Random(7)
    start = datetime.now(timezone.utc) - timedelta(days=6)
    results = 0
    with path.open("w") as out:
        for i in range(lines):
            ts = (start + timedelta(milliseconds=i * 400)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            roll = rng.random()
            if roll < 0.05:
                out.write('{"ts": "%s", "level": "info", "event": "print", "message": "epoch %d done"}\n' % (ts, i))
                continue
            results += 1
            if roll < 0.20:
                event = {"ts": ts, "level": "error", "event": "prediction_refused", "nonce": i, "reason": "exception",
                         "error_type": "ValueError", "message": f"no price for window {i}", "latency_ms": round(rng.uniform(1, 900), 3),
                         "where": "/workspace/bundle/src/model/runner.py:42"}  # fmt: skip
            else:
                event = {"ts": ts, "level": "info", "event": "prediction", "nonce": i, "value": round(rng.uniform(2000, 4000), 4),
                         "latency_ms": round(rng.uniform(1, 900), 3)}  # fmt: skip
            out.write(json.dumps(event) + "\n")
    return results


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (the database backend), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_deployment(records, i: int) -> str:
    sha = f"{i:064x}"
    bundle = records.register_bundle(
        name=f"model-{i:04d}", version="1.0.0", sha256=sha, size=1, archive_url=f"s3://b/{sha}.tar.gz",
        python_version="3.11", manifest={"name": f"model-{i:04d}", "version": "1.0.0"},
    )  # fmt: skip
    return records.create_deployment(
        bundle_id=bundle.id, network="testnet", topic_id=69, wallet_secret_name="w", repo_url="file:///r", repo_branch="main"
    ).id


def bench_import(records, work: Path, lines: int, sample: int) -> None:
    from allora_gitops.db.results import import_results
    from allora_gitops.result_log import ResultLog

    conn = records.connection
    log_path = work / "runtime.log"
    t = time.perf_counter()
    expected = write_log(log_path, lines)
    print(f"wrote {lines:,} lines ({expected:,} results, {log_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")

    t, cpu = time.perf_counter(), time.process_time()
    with log_path.open() as handle:
        parsed = sum(1 for _ in ResultLog(str(log_path)).rows(handle))
    print(f"reading and checking the lines alone (no database): {time.perf_counter() - t:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")

    target = new_deployment(records, 0)
    log = ResultLog(str(log_path))
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    t, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(backend)
    with log_path.open() as handle:
        counts = import_results(conn, target, log.rows(handle))
    seconds = time.perf_counter() - t
    cpu, server_cpu = time.process_time() - cpu, process_cpu(backend) - server_cpu
    assert counts.inserted == expected == parsed, counts
    import_rate = counts.inserted / seconds
    print(f"import (binary COPY + INSERT … ON CONFLICT): {counts.inserted:,} rows in {seconds:.1f} s = {import_rate:,.0f} rows/s"
          f" (target ≥ 20,000) [{'ok' if import_rate >= 20000 else 'MISSED'}]")  # fmt: skip
    print(f"  CPU: client {cpu:.1f} s, database backend {server_cpu:.1f} s of {seconds:.1f} s wall"
          f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); per CPU-second of the backend:"
          f" {counts.inserted / max(server_cpu, 0.001):,.0f} rows")  # fmt: skip

    t = time.perf_counter()
    with log_path.open() as handle:
        again = import_results(conn, target, ResultLog(str(log_path)).rows(handle))
    print(f"re-import of the same log: {again.inserted} new, {again.duplicates:,} already there, {time.perf_counter() - t:.1f} s")

    # the obvious alternative: one INSERT per row, each its own transaction
    naive = new_deployment(records, 1)
    rows = []
    with log_path.open() as handle:
        for row in ResultLog(str(log_path)).rows(handle):
            rows.append(row)
            if len(rows) == sample:
                break
    t = time.perf_counter()
    for r in rows:
        conn.execute(
            """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, reason, error_type,
                                               error_message, error_where, latency_ms)
               VALUES (%s, %s, %s, %s, %s, allora_redact_secrets(%s), %s, %s, allora_redact_secrets(%s), allora_redact_secrets(%s), %s)
               ON CONFLICT DO NOTHING""",  # 0016: the key holds the time
            (naive, r.kind, r.nonce, r.status, r.observed_at, r.value, r.reason, r.error_type, r.error_message, r.error_where, r.latency_ms),
        )
    naive_rate = len(rows) / (time.perf_counter() - t)
    print(f"naive per-row INSERT on {len(rows):,} rows: {naive_rate:,.0f} rows/s → import is {import_rate / naive_rate:.1f}× faster")


def bench_summary(records, deployments: int, per: int, queries: int) -> None:
    from allora_gitops.db.results import PERCENTILES, deployment_result_summary

    conn = records.connection
    conn.execute("TRUNCATE submission_results")
    t = time.perf_counter()
    ids = [new_deployment(records, 100 + i) for i in range(deployments)]
    conn.execute(
        """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, reason, error_type,
                                           error_message, latency_ms)
           SELECT d.id, 'prediction', n, CASE WHEN n %% 10 = 0 THEN 'error' ELSE 'success' END,
                  now() - (n * interval '864 seconds'),
                  CASE WHEN n %% 10 = 0 THEN NULL ELSE (random() * 1000)::text END,
                  CASE WHEN n %% 10 = 0 THEN 'exception' END, CASE WHEN n %% 10 = 0 THEN 'ValueError' END,
                  CASE WHEN n %% 10 = 0 THEN 'no data' END, random() * 900
           FROM unnest(%s::uuid[]) AS d(id), generate_series(1, %s) AS n""",
        (ids, per),
    )
    conn.execute("VACUUM ANALYZE submission_results")
    total = conn.execute("SELECT count(*) FROM submission_results").fetchone()[0]
    print(f"filled {total:,} results over {deployments:,} deployments and 10 days in {time.perf_counter() - t:.1f} s")

    rng = random.Random(11)
    picks = [rng.choice(ids) for _ in range(queries)]
    timings = []
    for d in picks:
        t = time.perf_counter()
        deployment_result_summary(conn, d)
        timings.append((time.perf_counter() - t) * 1000)
    p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=20)[18]
    print(f"deployment_result_summary: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {queries} deployments")

    python_timings = []
    for d in picks[: max(1, queries // 4)]:
        t = time.perf_counter()
        rows = conn.execute(
            """SELECT created_at, kind, status, latency_ms, error_type, error_message FROM submission_results
               WHERE deployment_id = %s AND created_at > now() - interval '7 days'""",
            (d,),
        ).fetchall()
        now = datetime.now(timezone.utc)
        for span in (timedelta(hours=1), timedelta(days=1), timedelta(days=7)):
            inside = [r for r in rows if r[0] > now - span]
            lat = sorted(r[3] for r in inside)
            if len(lat) > 1:
                statistics.quantiles(lat, n=100, method="inclusive")
            sum(r[2] == "success" for r in inside)
        sorted(rows, key=lambda r: r[0], reverse=True)[:10]
        python_timings.append((time.perf_counter() - t) * 1000)
    py50 = statistics.median(python_timings)
    print(f"same numbers computed in Python from fetched rows: p50 {py50:.1f} ms → SQL is {py50 / p50:.1f}× faster"
          f" (percentiles {', '.join(f'p{round(p * 100)}' for p in PERCENTILES)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--per-deployment", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    with bench_database("results") as (records, work):
        bench_import(records, work, args.lines, args.sample)
        bench_summary(records, args.deployments, args.per_deployment, args.queries)


@contextlib.contextmanager
def bench_database(name: str):
    """(Records, work directory) on a migrated embedded PostgreSQL in a temp directory, fsync off; removed after."""
    from allora_gitops.db.embedded import EmbeddedPostgres
    from allora_gitops.db.migrate import MigrationRunner
    from allora_gitops.db.records import Records

    work = Path(tempfile.mkdtemp(prefix=f"allora-bench-{name}-"))
    os.chmod(work, 0o755)  # the embedded PostgreSQL runs as its own user when we are root
    server = EmbeddedPostgres(work / "pg")
    server.attach()
    try:
        import psycopg

        with psycopg.connect(server.url, autocommit=True) as admin:
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                admin.execute(f"ALTER SYSTEM SET {setting}")
            admin.execute("SELECT pg_reload_conf()")
        MigrationRunner(server.url).upgrade()
        with Records(server.url) as records:
            yield records, work
    finally:
        server.detach()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
