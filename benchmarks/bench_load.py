"""The platform under load, with Locust run headless: result posts, pages and uploads at once (issue 21 item 6).

Set-up (not timed): an embedded PostgreSQL (fsync off, as the tests do) behind a real PgBouncer in transaction
mode (its default pool: 20 server connections, 100 clients), migrated; PODS deployments (``model-NNNN`` on
testnet, live) owned by BROWSERS users; a local ServiceAccount issuer (``api/localissuer.py``) minting one
projected token per pod; UPLOADERS users, each with a valid 50 MB bundle (incompressible artifact). Then **two**
``allora-gitops serve`` processes (uvicorn, one worker each) on free loopback ports, sharing that PgBouncer, the
same file:// object store and the issuer's JWKS.

Load (Locust, ``benchmarks/load_locustfile.py``), for RUN_TIME seconds (90), every user bound to one of the two
servers by its index, all on 127.0.0.1:
  - 500 pods posting a batch of 2 results to ``POST /api/v1/results`` every 10 s (1 % hostile: a NUL byte,
    a lone surrogate, an overflowing timestamp or a truncated body);
  - 20 signed-in users reading ``/`` and ``/deployments/{id}`` every 2-5 s;
  - 4 uploaders posting their 50 MB bundle in a loop, half of them (2) trickling it at 1 MB/s.

Report: per endpoint the requests, failures and p50/p95/p99/max (Locust's own histogram), the status codes seen,
the 5xx count, and the exactly-once check: the rows in ``submission_results`` against the ``stored`` counts the
server answered 2xx with (and the results sent in those batches). The machine's load (``uptime``) before and
after. Targets (the issue's, on this machine): zero 5xx, result posts p95 ≤ 100 ms, pages p95 ≤ 300 ms, every
accepted result stored exactly once. Figures from a shared 2-core machine are noisy; the lead reruns it.

    python benchmarks/bench_load.py [--run-time 90] [--pods 500] [--browsers 20] [--uploaders 4] [--upload-mb 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLOW_UPLOAD_BYTES_PER_SECOND = 1 << 20


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_upload(work: Path, name: str, megabytes: int) -> Path:
    """A valid bundle ``name`` 1.0.0 with ``megabytes`` of random bytes in artifacts/: its built archive."""
    from allora_gitops.bundle.archive import build_archive
    from tests.fixtures.bundles import make_bundle

    bundle = make_bundle(work, name=name)
    with open(bundle / "artifacts" / "weights.bin", "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 20))
    return build_archive(bundle, work / f"{name}-dist").path


def start_server(work: Path, port: int, env: dict) -> subprocess.Popen:
    log = open(work / f"serve-{port}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)  # a drain that takes longer is not what is measured here
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-time", type=int, default=90, help="seconds of load (default 90: with set-up and teardown about 3 minutes)")
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--upload-mb", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Locust CSVs)")
    args = parser.parse_args()

    from allora_gitops.api.auth import Accounts
    from allora_gitops.api.localissuer import LocalIssuer
    from allora_gitops.db.embedded import EmbeddedPostgres
    from allora_gitops.db.migrate import MigrationRunner
    from allora_gitops.db.records import Records
    from benchmarks.bench_results import new_deployment
    from tests.conftest import cli_env
    from tests.fixtures.pgbouncer import start_pgbouncer
    from tests.fixtures.platform import free_port
    from tests.fixtures.postgres import _admin, _with_database

    work = Path(tempfile.mkdtemp(prefix="allora-load-"))
    print(f"machine before: {uptime()}")
    t0 = time.perf_counter()
    server = EmbeddedPostgres(work / "pg")
    server.attach()
    procs: list[subprocess.Popen] = []
    bouncer = None
    try:
        admin = _with_database(server.url, "postgres")
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off", "max_connections = 200"):
            _admin(admin, f"ALTER SYSTEM SET {setting}")
        _admin(admin, "SELECT pg_reload_conf()")
        _admin(admin, "CREATE DATABASE allora_load")
        direct = _with_database(server.url, "allora_load")
        MigrationRunner(direct).upgrade()
        bouncer = start_pgbouncer(server.url, "transaction", pool_size=20, max_client_conn=100)
        pooled = bouncer.url(direct)

        issuer, _ = LocalIssuer.create(work / "issuer")
        records = Records(direct)
        accounts = Accounts(records.connection)
        browser_users = []
        owners = []
        for u in range(args.browsers):
            token, _ = accounts.create_token(f"viewer-{u:02d}")
            owners.append((accounts.authenticate(token), token))
            browser_users.append({"token": token, "deployments": []})
        pod_tokens = []
        for i in range(args.pods):
            deployment_id = new_deployment(records, i)  # model-NNNN on testnet, pending = live
            principal, _ = owners[i % len(owners)]
            accounts.claim_name(principal, f"model-{i:04d}")
            browser_users[i % len(owners)]["deployments"].append(deployment_id)
            pod_tokens.append(issuer.token(f"model-{i:04d}-testnet", lifetime=3600))
        uploads = []
        for u in range(args.uploaders):
            token, _ = accounts.create_token(f"uploader-{u}")
            uploads.append({"token": token, "archive": str(make_upload(work / "bundles", f"load-upload-{u}", args.upload_mb))})
        records.close()
        print(f"set-up: {args.pods} live deployments and pod tokens, {args.browsers} page users, "
              f"{args.uploaders} × {args.upload_mb} MB bundles in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        env = cli_env({
            "ALLORA_DATABASE_URL": pooled, "ALLORA_STORE_URL": (work / "store").as_uri(), "ALLORA_GITOPS_REPO": str(work / "unused-repo"),
            "ALLORA_GITOPS_HOME": str(work / "state"), "ALLORA_API_UPLOAD_DIR": str(work / "spool"),
            "ALLORA_API_POD_JWKS": str(issuer.jwks_path), "ALLORA_API_POD_ISSUER": issuer.issuer,
        })  # fmt: skip
        (work / "spool").mkdir()
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        procs = [start_server(work, p, env) for p in ports]
        for url, proc in zip(urls, procs):
            wait_ready(url, proc)

        config = work / "load.json"
        config.write_text(json.dumps({
            "servers": urls, "pods": args.pods, "browsers": args.browsers, "uploaders": args.uploaders,
            "batch_seconds": 10, "results_per_batch": 2, "hostile_fraction": 0.01, "pod_tokens": pod_tokens,
            "browser_users": browser_users, "uploads": uploads, "slow_uploaders": args.uploaders // 2,
            "slow_upload_bytes_per_second": SLOW_UPLOAD_BYTES_PER_SECOND, "upload_mb": args.upload_mb,
        }))  # fmt: skip
        out = work / "seen.json"
        users = args.pods + args.browsers + args.uploaders
        locust = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "load_locustfile.py"), "--headless",
             "--users", str(users), "--spawn-rate", "200", "--run-time", f"{args.run_time}s", "--host", urls[0],
             "--csv", str(work / "locust"), "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "0"],
            env={**env, "ALLORA_LOAD_CONFIG": str(config), "ALLORA_LOAD_OUT": str(out)},
            capture_output=True, text=True, timeout=args.run_time + 300,
        )  # fmt: skip
        print(f"machine after: {uptime()}")
        if not out.exists():
            print(locust.stdout[-3000:], locust.stderr[-3000:])
            raise SystemExit("locust wrote no results")
        report(work, json.loads(out.read_text()), direct)
        warnings = sorted({line.split("/WARNING/", 1)[-1].strip() for line in (locust.stderr or "").splitlines() if "CPU usage" in line})
        for line in warnings:  # Locust's own: when it saturates a core, its timings include its own queueing
            print(f"locust: {line}")
        server_logs = "".join((work / f"serve-{p}.log").read_text(errors="replace") for p in ports)
        print(f"server logs: {server_logs.count('internal error')} 'internal error' lines, "
              f"{server_logs.count('Traceback')} tracebacks, {server_logs.count('cannot connect to the database')} "
              f"'cannot connect to the database' (the cause behind a 503 'unavailable')")  # fmt: skip
    finally:
        for proc in procs:
            stop(proc)
        if bouncer is not None:
            bouncer.stop()
        server.detach()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(work: Path, seen: dict, database_url: str) -> None:
    import psycopg

    print(f"\n{'endpoint':40} {'requests':>8} {'failed':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  (ms)")
    with open(work / "locust_stats.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                continue
            print(f"{row['Name']:40} {row['Request Count']:>8} {row['Failure Count']:>7} {row['50%']:>7} {row['95%']:>7} "
                  f"{row['99%']:>7} {float(row['Max Response Time']):>7.0f}")  # fmt: skip
    codes: dict[str, dict[str, int]] = {}
    for name, status, count in seen["status"]:
        codes.setdefault(name, {})[status] = codes.setdefault(name, {}).get(status, 0) + count
    print("\nstatus codes per endpoint:")
    fivexx = 0
    for name in sorted(codes):
        print(f"  {name:40} " + ", ".join(f"{s}: {c}" for s, c in sorted(codes[name].items())))
        fivexx += sum(c for s, c in codes[name].items() if s.isdigit() and s.startswith("5"))
    print(f"5xx answers: {fivexx}")
    for name, detail, count in seen.get("fivexx", [])[:6]:
        print(f"  {count:5} × {name}: {detail}")
    for name, started in sorted(seen.get("started", {}).items()):
        answered = sum(codes.get(name, {}).values())
        print(f"{name}: {started} started, {answered} answered, {started - answered} still unanswered when the run ended")
    accepted = seen["accepted"]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT substr(b.name, 7)::int, r.nonce, count(*) FROM submission_results r
               JOIN releases d ON d.id = r.deployment_id JOIN model_bundles b ON b.id = d.bundle_id
               WHERE b.name LIKE 'model-%%' GROUP BY 1, 2"""
        ).fetchall()
    stored = {(pod, nonce): count for pod, nonce, count in rows}
    acked = {(pod, nonce) for pod, nonces in seen.get("acked", []) for nonce in nonces}
    lost = acked - set(stored)
    twice = {k for k, c in stored.items() if c > 1}  # a prediction and a refusal never share a nonce here
    unacked = set(stored) - acked
    in_flight = seen.get("started", {}).get("POST /api/v1/results", 0) - sum(codes.get("POST /api/v1/results", {}).values())
    print(f"\nresult batches answered 2xx: {accepted['batches']} ({accepted['results_sent_in_accepted']} results in them, "
          f"{accepted['partial_batches']} with some refused); hostile batches sent {accepted['hostile_sent']}, "
          f"answered 2xx {accepted['hostile_accepted']}")  # fmt: skip
    print(f"server said stored: {accepted['stored']}, already recorded: {accepted['already_recorded']}; "
          f"rows in submission_results: {sum(stored.values())}")  # fmt: skip
    print(f"acknowledged results missing from the database: {len(lost)}; stored more than once: {len(twice)}; "
          f"stored without a 2xx the client saw: {len(unacked)} (batches still in flight at the end: {in_flight}, "
          f"plus any answered 5xx after storing)")  # fmt: skip
    print(f"every accepted result stored exactly once: {'yes' if not lost and not twice else 'NO'}")


if __name__ == "__main__":
    main()
