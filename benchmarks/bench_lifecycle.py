"""The lifecycle of every deployment at once (`GET /api/deployments`, the deployments page's state column).

DEPLOYMENTS deployments with PER results each over the last 10 days (generated in SQL, not timed; every
tenth a failure, every other result a submission). Timed, REPEAT times each, p50/p95:

- ``deployments_lifecycles``: one statement (``deployment_overviews`` without the 24 h aggregate: index probes per deployment)
  and the pure ``derive_lifecycle`` per deployment;
- the obvious alternative: ``deployment_result_summary(recent=0)`` per deployment (what the page read per
  row before), then the same ``derive_lifecycle``.

Both must give the same stages. Runs its own embedded PostgreSQL in a temp directory (fsync off).

    python benchmarks/bench_lifecycle.py [--deployments 1000] [--per-deployment 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def run(records, deployments: int, per: int, repeat: int) -> None:
    from bench_results import new_deployment

    from allora_gitops.db.results import deployment_result_summary
    from allora_gitops.lifecycle import LifecycleFacts, derive_lifecycle, deployments_lifecycles

    conn = records.connection
    t = time.perf_counter()
    ids = [new_deployment(records, i) for i in range(deployments)]
    conn.execute(
        """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, reason, error_type,
                                           error_message, latency_ms)
           SELECT d.id, CASE WHEN n %% 2 = 0 THEN 'submission' ELSE 'prediction' END, n,
                  CASE WHEN n %% 10 = 0 THEN 'error' ELSE 'success' END, now() - (n * interval '2880 seconds' / %s),
                  CASE WHEN n %% 10 = 0 THEN NULL ELSE (random() * 1000)::text END,
                  CASE WHEN n %% 10 = 0 THEN 'exception' END, CASE WHEN n %% 10 = 0 THEN 'ValueError' END,
                  CASE WHEN n %% 10 = 0 THEN 'no data' END, random() * 900
           FROM unnest(%s::uuid[]) AS d(id), generate_series(1, %s) AS n""",
        (per / 300, ids, per),
    )
    conn.execute("VACUUM ANALYZE submission_results")
    total = conn.execute("SELECT count(*) FROM submission_results").fetchone()[0]
    print(f"filled {total:,} results over {deployments:,} deployments in {time.perf_counter() - t:.1f} s")
    found = records.list_deployments()

    batched, one_by_one = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fast = deployments_lifecycles(conn, found)
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        slow = {}
        for d in found:
            summary = deployment_result_summary(conn, d.id, recent=0)
            slow[d.id] = derive_lifecycle(LifecycleFacts.of(d, summary), summary.as_of)
        one_by_one.append(time.perf_counter() - t)
        assert {i: x.stage for i, x in fast.items()} == {i: x.stage for i, x in slow.items()}

    def shown(samples: list[float]) -> str:
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) > 1 else samples[0]
        return f"p50 {statistics.median(samples) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"

    print(f"deployments_lifecycles ({len(found)} deployments, one statement): {shown(batched)}")
    print(f"deployment_result_summary per deployment + derive: {shown(one_by_one)}"
          f" → batched is {statistics.median(one_by_one) / statistics.median(batched):.0f}× faster")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--per-deployment", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from bench_results import bench_database

    with bench_database("lifecycle") as (records, _):
        run(records, args.deployments, args.per_deployment, args.repeat)


if __name__ == "__main__":
    main()
