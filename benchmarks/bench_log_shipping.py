#!/usr/bin/env python3
"""What shipping the model's log costs a prediction: the adapter's per-call time with log shipping on and off,
for a model that prints 10 lines per call, called back to back (far more than 1,000 lines a second).

usage: python benchmarks/bench_log_shipping.py [--calls N]

Each call goes through the runtime's real path: ``Adapter.predict`` (a worker thread, the timeout, the value check,
metrics, the prediction's log line), the model's ``print`` through ``PrintCapture`` into ``JsonLog``, and, when on,
every line offered to the shipper (``allora_runtime/shipper.py``) at its default rate limit (100 lines/s, so
nearly every line is dropped and counted, as in a model printing 1,000 lines a second), POSTing to a loopback
receiver; and once more with the receiver down (every send fails and is retried). Compared in the same run:
shipping off. Reported: p50/p95 per call in µs, the ratios, and the shipper's sent/dropped counts.
Target: p50 on ≤ 1.3× off. Exit status 1 when missed or when drops were not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from allora_runtime.adapter import Adapter  # noqa: E402
from allora_runtime.contract import DEFAULT_LOGS_RATE, LOGS_BATCH_SIZE, LOGS_BURST_SECONDS, LOGS_LINGER_SECONDS  # noqa: E402
from allora_runtime.log import JsonLog, PrintCapture  # noqa: E402
from allora_runtime.metrics import LOG_DROP_REASONS, Metrics  # noqa: E402
from allora_runtime.shipper import LogShipper  # noqa: E402
from allora_runtime.user import UserFunction  # noqa: E402

TARGET = 1.3
LINES_PER_CALL = 10


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        count = self.rfile.read(length).count(b'"event"')
        body = json.dumps({"received": count, "stored": count, "dropped": 0, "refused": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def per_call(adapter: Adapter, calls: int) -> list[float]:
    for nonce in range(100):
        await adapter.predict(nonce)
    samples = []
    for nonce in range(calls):
        started = time.perf_counter()
        await adapter.predict(nonce)
        samples.append(time.perf_counter() - started)
    return samples


def run_case(url: str | None, token: Path, calls: int) -> tuple[list[float], dict]:
    devnull = open(os.devnull, "w")
    log = JsonLog(devnull)
    stdout = PrintCapture(log)

    def chatty(nonce: int) -> float:
        for i in range(LINES_PER_CALL):
            print(f"step {i} of window {nonce}: loss=0.0{i}", file=stdout)
        return nonce * 0.5

    metrics = Metrics(True)
    user = UserFunction(fn=chatty, name="bench.run", is_async=False, wants_context=False)
    adapter = Adapter(user, timeout=25.0, metrics=metrics, log=log, topic_id=69)
    shipper = None
    if url is not None:
        shipper = LogShipper(
            url, str(token), log, limit=10_000, backoff=0.05, batch_size=LOGS_BATCH_SIZE, name="logs", body_key="lines",
            drop_reasons=LOG_DROP_REASONS, linger=LOGS_LINGER_SECONDS, rate=DEFAULT_LOGS_RATE,
            burst=DEFAULT_LOGS_RATE * LOGS_BURST_SECONDS, on_drop=metrics.log_lines_lost, on_sent=metrics.log_lines_shipped,
        ).start()  # fmt: skip
        log.logs_tap = shipper.offer
    started = time.monotonic()
    samples = asyncio.run(per_call(adapter, calls))
    elapsed = time.monotonic() - started
    stats = {"lines_per_s": round((calls + 100) * (LINES_PER_CALL + 1) / elapsed)}
    if shipper is not None:
        log.logs_tap = None
        stats.update(shipper.close(2.0))
        stats["dropped_by_reason"] = {k: v for k, v in shipper.dropped.items() if v}
        stats["metric_dropped"] = sum(metrics.log_lines_dropped.labels(r)._value.get() for r in LOG_DROP_REASONS)
    devnull.close()
    return samples, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        figures: dict = {"calls": args.calls, "lines_per_call": LINES_PER_CALL + 1}
        cases = (("off", None), ("on", f"http://127.0.0.1:{server.server_address[1]}/api/v1/logs"), ("down", f"http://127.0.0.1:{closed}/api/v1/logs"))
        for label, url in cases:
            samples, stats = run_case(url, token, args.calls)
            figures[f"{label}_p50_us"] = percentile(samples, 0.5) * 1e6
            figures[f"{label}_p95_us"] = percentile(samples, 0.95) * 1e6
            figures[f"{label}_stats"] = stats
        server.shutdown()
    for label in ("on", "down"):
        figures[f"ratio_{label}_p50"] = figures[f"{label}_p50_us"] / figures["off_p50_us"]
        figures[f"ratio_{label}_p95"] = figures[f"{label}_p95_us"] / figures["off_p95_us"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    counted = all(figures[f"{label}_stats"]["metric_dropped"] == figures[f"{label}_stats"]["dropped"] > 0 for label in ("on", "down"))
    return 0 if max(figures["ratio_on_p50"], figures["ratio_down_p50"]) <= TARGET and counted else 1


if __name__ == "__main__":
    sys.exit(main())
