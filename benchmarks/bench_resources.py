"""What reading a deployment's resources from Prometheus costs, against the obvious one-request-per-quantity read.

A real Prometheus (the Debian binary) on a free loopback port scrapes itself every second with the labels
the PodMonitor gives a runtime, so its own ``process_*`` series stand for a deployment's. Compared in the
same run: ``read_resources`` (every quantity in one instant query, CPU and memory in one range query) and
seven plain requests (five instant queries, two range queries) over one kept-alive connection.

    python benchmarks/bench_resources.py [--reads N]

Target: p95 well under the 1.5 s bound a page waits for it.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NS, INSTANCE = "allora-models", "linear-forecaster-testnet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prometheus(tmp: Path) -> tuple[subprocess.Popen, str]:
    import yaml

    port = free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "allora", "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                                                      "labels": {"namespace": NS, "allora_deployment": INSTANCE}}]}],
    }  # fmt: skip
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def one_request_per_quantity(client, url: str, queries: dict[str, str]) -> dict:
    now = time.time()
    out = {name: client.get(f"{url}/api/v1/query", params={"query": q, "time": now}).json() for name, q in queries.items()}
    for name in ("cpu", "memory"):
        out[f"{name}_series"] = client.get(
            f"{url}/api/v1/query_range", params={"query": queries[name], "start": now - 3600, "end": now, "step": 60}
        ).json()
    return out


def timed(fn, reads: int) -> list[float]:
    took = []
    for _ in range(reads):
        started = time.perf_counter()
        fn()
        took.append((time.perf_counter() - started) * 1000)
    return took


def describe(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"{name:32} p50 {statistics.median(ms):6.2f} ms  p95 {q[18]:6.2f} ms"


def main() -> None:
    import httpx

    from allora_gitops.prometheus import read_resources, resource_queries

    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_prometheus(Path(tmp))
        try:
            deadline = time.monotonic() + 60
            while True:  # rate() needs two scrapes
                usage = read_resources(url, NS, INSTANCE)
                if usage.cpu_cores is not None and usage.memory_bytes is not None:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"Prometheus gave no series: {usage.error}")
                time.sleep(0.5)
            ours = timed(lambda: read_resources(url, NS, INSTANCE), args.reads)
            queries = resource_queries(NS, INSTANCE)
            with httpx.Client(timeout=5) as client:
                plain = timed(lambda: one_request_per_quantity(client, url, queries), args.reads)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(describe("read_resources (2 requests)", ours))
    print(describe("one request per quantity (7)", plain))
    print(f"p50 ratio (one per quantity / read_resources): {statistics.median(plain) / statistics.median(ours):.2f}")


if __name__ == "__main__":
    main()
