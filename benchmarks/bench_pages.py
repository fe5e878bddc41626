"""The monitoring pages at volume: GET / and GET /deployments/{id} with 1,000 deployments and 1,000,000 results.

Set-up (not timed): an embedded PostgreSQL (fsync off, as the tests do), 1,000 deployments whose bundle names
user `big` owns and 10 more that user `small` owns, each with 1,000 results (predictions and submissions, one
in ten an error, every 864 s over the last 10 days: ~100 per deployment in the last 24 h) generated in SQL,
then VACUUM ANALYZE. The real server (`allora-gitops serve`, uvicorn, one worker) runs on a free loopback
port; each user signs in through the login form and keeps the session cookie.

Timed: REQUESTS sequential GETs per page on one keep-alive connection, measured by the client on loopback
(time to the last byte of the response: the server's time plus a loopback round trip, an upper bound of
server time), and the CPU the server side used per request (the app process and the requests' PostgreSQL
backends, from /proc: what other load on a shared machine does not inflate). Target p95 ≤ 150 ms for each of
  - `/` for `big` (1,000 rows) and for `small` (10 rows);
  - `/deployments/{id}` for random deployments of `big`.
Against them, in the same run and on the same database: the deployments page's data gathered the obvious way
(`deployment_result_summary` once per deployment, what the page did before `deployment_overviews`) against
the one batched query, measured in this process (queries only, no HTTP, no template).

    python benchmarks/bench_pages.py [--deployments 1000] [--per-deployment 1000] [--requests 100]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


SERVER: list = []  # [app server pid, PostgreSQL data directory] once started


def fill(records, big: int, small: int, per: int) -> tuple[list[str], list[str]]:
    """(ids of big's deployments, ids of small's): bundles, deployments and owners through the records API,
    the results in one INSERT … SELECT."""
    from allora_gitops.api.auth import Accounts
    from benchmarks.bench_results import new_deployment

    conn = records.connection
    accounts = Accounts(conn)
    ids = {"big": [], "small": []}
    for user, count, offset in (("big", big, 0), ("small", small, big)):
        principal = accounts.authenticate(accounts.create_token(user)[0])
        for i in range(offset, offset + count):
            ids[user].append(new_deployment(records, i))  # bundle model-<i:04d>
            accounts.claim_name(principal, f"model-{i:04d}")
    conn.execute(
        """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, tx_hash, reason,
                                           error_type, error_message, latency_ms)
           SELECT d.id, CASE WHEN n %% 2 = 0 THEN 'submission' ELSE 'prediction' END, n,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'error' ELSE 'success' END,
                  now() - (n * interval '864 seconds'),
                  CASE WHEN n %% 10 IN (0, 5) THEN NULL ELSE (random() * 1000)::text END,
                  CASE WHEN n %% 2 = 0 AND n %% 10 <> 0 THEN upper(md5(n::text) || md5(d.id::text)) END,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'exception' END, CASE WHEN n %% 10 IN (0, 5) THEN 'ValueError' END,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'no data for window ' || n END, random() * 900
           FROM unnest(%s::uuid[]) AS d(id), generate_series(1, %s) AS n""",
        (ids["big"] + ids["small"], per),
    )
    conn.execute("VACUUM ANALYZE")
    return ids["big"], ids["small"]


def signed_in(url: str, token: str):
    import httpx

    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
    return client


def server_cpu(app_pid: int, data_dir: Path) -> float:
    """CPU seconds used so far by the app server process and by PostgreSQL's exited backends (the postmaster's
    reaped children: the app opens a connection per request, so each request's backend has exited and been
    counted by the time the next one is asked). Long-lived background processes (checkpointer, WAL writer)
    are left out: they work off the set-up's writes, not the requests. From /proc; unlike wall time, not
    inflated by other load on the machine."""

    def stat(pid: int, first: int, last: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[first:last]) / os.sysconf("SC_CLK_TCK")

    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    return stat(app_pid, 11, 13) + stat(postmaster, 13, 15)  # utime+stime; cutime+cstime


def timed(client, paths: list[str], expect: str | None = None, cpu=None) -> list[float]:
    """Wall milliseconds of each GET; with ``cpu`` (a list), appends the server's CPU milliseconds per request."""
    client.get(paths[0])  # warm: the first request imports the templates
    out = []
    before = server_cpu(*SERVER) if cpu is not None else 0.0
    for path in paths:
        t = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        if expect is not None:
            assert expect in response.text
    if cpu is not None:
        cpu.append((server_cpu(*SERVER) - before) * 1000 / len(paths))
    return out


def percentiles(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), statistics.quantiles(ms, n=20, method="inclusive")[18]


def report(what: str, ms: list[float], cpu: float) -> float:
    p50, p95 = percentiles(ms)
    print(f"{what}: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(ms)} requests (target p95 ≤ 150 ms)"
          f" [{'ok' if p95 <= 150 else 'MISSED'}]; server CPU {cpu:.1f} ms per request (app + PostgreSQL)")  # fmt: skip
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--per-deployment", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    from allora_gitops.api.auth import Accounts
    from allora_gitops.db.results import deployment_overviews, deployment_result_summary
    from benchmarks.bench_results import bench_database
    from tests.fixtures.platform import start_platform, stop_platform

    platform = None
    with bench_database("pages") as (records, work):
        try:
            t = time.perf_counter()
            big, small = fill(records, args.deployments, 10, args.per_deployment)
            total = records.connection.execute("SELECT count(*) FROM submission_results").fetchone()[0]
            print(f"filled {len(big) + len(small):,} deployments and {total:,} results in {time.perf_counter() - t:.1f} s (not timed)")
            accounts = Accounts(records.connection)
            tokens = {user: accounts.create_token(user)[0] for user in ("big", "small")}

            # the data of the deployments page: one batched statement against one summary per deployment
            conn = records.connection
            batched, looped = [], []
            for _ in range(5):
                t = time.perf_counter()
                deployment_overviews(conn, big, kinds=["submission"])  # what the page asks
                batched.append((time.perf_counter() - t) * 1000)
            for _ in range(2):
                t = time.perf_counter()
                for d in big:
                    deployment_result_summary(conn, d, recent=0)
                looped.append((time.perf_counter() - t) * 1000)
            b, lp = statistics.median(batched), statistics.median(looped)
            print(f"data of / for {len(big):,} deployments: deployment_overviews {b:.1f} ms, one deployment_result_summary"
                  f" per deployment {lp:.0f} ms → batched is {lp / b:.0f}× faster (median of 5 and 2 runs)")  # fmt: skip

            platform = start_platform(work, database_url=records.database_url, repo=work / "repo", store_url=(work / "store").as_uri(),
                                      env={"ALLORA_GITOPS_HOME": str(work / "state")})  # allora-gitops serve, as the tests run it
            SERVER[:] = [platform.process.pid, work / "pg" / "data"]  # bench_database's EmbeddedPostgres
            url = platform.url
            rng = random.Random(5)
            cpu: list[float] = []
            with closing(signed_in(url, tokens["big"])) as client:
                big_page = timed(client, ["/"] * args.requests, expect=f'/deployments/{big[-1]}"', cpu=cpu)
                detail = timed(client, [f"/deployments/{rng.choice(big)}" for _ in range(args.requests * 2)], expect="Recent results", cpu=cpu)
            with closing(signed_in(url, tokens["small"])) as client:
                small_page = timed(client, ["/"] * args.requests, expect=f'/deployments/{small[-1]}"', cpu=cpu)
            print("server time, measured by the client on loopback (to the last byte, keep-alive):")
            worst = max(
                report(f"  GET / ({len(big):,} deployments)", big_page, cpu[0]),
                report(f"  GET / ({len(small)} deployments)", small_page, cpu[2]),
                report("  GET /deployments/{id} (random)", detail, cpu[1]),
            )
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; worst p95 {worst:.1f} ms")
        finally:
            if platform is not None:
                stop_platform(platform)

if __name__ == "__main__":
    main()
