"""What the runtime's adapter costs per prediction, against calling the model directly.

The adapter wraps each call with a timeout (a worker thread for sync functions,
a task for async ones), the value check, Prometheus metrics and one JSON log
line. Compared in the same run with: the bare call, and the obvious asyncio
alternative (``wait_for(run_in_executor(...))``, no checks, no log, no metrics).

    python benchmarks/bench_adapter.py [--calls N]

Target: adapter overhead p50 <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_bootstrap():
    """The runtime's modules under one name, imported from the checkout (the same source the zipapp packs)."""
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT))
    from allora_runtime import adapter, log, metrics, user

    return SimpleNamespace(**{k: getattr(m, k) for m in (adapter, log, metrics, user) for k in dir(m)})


def model(nonce: int) -> float:
    return nonce * 0.5 + 1.0


def chatty_model(nonce: int) -> float:
    os.write(1, b"progress line from native code\n")  # below sys.stdout: the runtime's fd-level capture takes it
    return nonce * 0.5 + 1.0


async def async_model(nonce: int) -> float:
    return nonce * 0.5 + 1.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(label: str, call, calls: int) -> list[float]:
    for nonce in range(200):  # warm up: thread start, metric children, JIT-less caches
        await call(nonce)
    samples = []
    for nonce in range(calls):
        started = time.perf_counter()
        await call(nonce)
        samples.append(time.perf_counter() - started)
    return samples


async def main(calls: int) -> int:
    bootstrap = load_bootstrap()
    sink = open(os.devnull, "w")
    log = bootstrap.JsonLog(sink)
    log.add_secret("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
    metrics = bootstrap.Metrics(True)  # real prometheus-client metrics, no HTTP server needed to update them

    def adapter_for(fn, is_async: bool, with_metrics=metrics):
        user = bootstrap.UserFunction(fn=fn, name="bench.run", is_async=is_async, wants_context=False)
        return bootstrap.Adapter(user, timeout=25.0, metrics=with_metrics, log=log, topic_id=69)

    sync_adapter = adapter_for(model, False)
    async_adapter = adapter_for(async_model, True)
    bare_adapter = adapter_for(model, False, bootstrap.Metrics(False))
    chatty_adapter = adapter_for(chatty_model, False)
    loop = asyncio.get_running_loop()

    async def direct(nonce):
        return model(nonce)

    async def direct_async(nonce):
        return await async_model(nonce)

    async def executor(nonce):
        return await asyncio.wait_for(loop.run_in_executor(None, model, nonce), 25.0)

    async def adapted(nonce):
        outcome = await sync_adapter.predict(nonce)
        assert outcome.ok

    async def adapted_async(nonce):
        outcome = await async_adapter.predict(nonce)
        assert outcome.ok

    async def adapted_no_metrics(nonce):
        outcome = await bare_adapter.predict(nonce)
        assert outcome.ok

    async def adapted_chatty(nonce):
        outcome = await chatty_adapter.predict(nonce)
        assert outcome.ok

    # As in the container: file descriptor 1 is the capture's pipe for the whole measurement.
    capture = bootstrap.FdCapture(log)
    results = {}
    for label, call in (
        ("direct call (sync)", direct),
        ("direct call (async)", direct_async),
        ("wait_for(run_in_executor) alternative", executor),
        ("adapter, sync function", adapted),
        ("adapter, async function", adapted_async),
        ("adapter, sync, metrics off", adapted_no_metrics),
        ("adapter, sync, writes a line to fd 1", adapted_chatty),
    ):
        results[label] = await measure(label, call, calls)
    capture.close()

    base_sync = statistics.median(results["direct call (sync)"])
    base_async = statistics.median(results["direct call (async)"])
    print(f"{calls} calls each; times per call in microseconds (python {sys.version.split()[0]})")
    print(f"{'':42} {'p50':>9} {'p90':>9} {'p99':>9} {'overhead p50':>13}")
    for label, samples in results.items():
        base = base_async if "async" in label else base_sync
        p50, p90, p99 = (percentile(samples, q) * 1e6 for q in (0.5, 0.9, 0.99))
        print(f"{label:42} {p50:9.1f} {p90:9.1f} {p99:9.1f} {p50 - base * 1e6:13.1f}")
    sync_overhead = statistics.median(results["adapter, sync function"]) - base_sync
    async_overhead = statistics.median(results["adapter, async function"]) - base_async
    ratio = statistics.median(results["adapter, sync function"]) / statistics.median(
        results["wait_for(run_in_executor) alternative"]
    )
    print(f"adapter (sync) / wait_for(run_in_executor): {ratio:.2f}x")
    worst = max(sync_overhead, async_overhead) * 1000
    verdict = "OK" if worst <= 1.0 else "TOO SLOW"
    print(f"adapter overhead p50: sync {sync_overhead * 1000:.3f} ms, async {async_overhead * 1000:.3f} ms (target <= 1 ms): {verdict}")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    sys.exit(asyncio.run(main(parser.parse_args().calls)))
