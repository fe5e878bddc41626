"""The runtime's metrics: the documented set, bounded cardinality, and a real Prometheus scraping and alerting on them."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.prometheus import Prometheus
from tests.fixtures.runtime import EXIT_OK, RunningBootstrap, bootstrap_env, free_port, make_bundle

SHA = "ab" * 32


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line and not line.startswith("#")}


def allora_series(values: dict[str, float]) -> list[str]:
    return sorted(k for k in values if k.startswith("allora_"))


def start_runtime(bundle: Path, port: int, *args: str) -> RunningBootstrap:
    env = bootstrap_env(ALLORA_METRICS_PORT=str(port), ALLORA_METRICS_ADDRESS="127.0.0.1", ALLORA_BUNDLE_SHA256=SHA)
    return RunningBootstrap(bundle, "--dry-run", *args, env=env)


def test_metrics_answer_the_guides_questions(tmp_path):
    """Scraped from a running dry-run: every documented series is there, with bounded labels only."""
    runner = (
        "import pathlib\n"
        "def run(nonce):\n"
        "    if pathlib.Path(__file__).with_name('fail').exists():\n"
        "        raise RuntimeError(f'nonce {nonce}')\n"
        "    return nonce * 0.001\n"
    )
    bundle = make_bundle(tmp_path / "b", runner, topic_id=42)
    flag = bundle / "src" / "demo" / "fail"
    flag.touch()
    port = free_port()
    running = start_runtime(bundle, port, "--start-nonce", "1", "--interval", "0.02")
    try:
        running.wait_for(lambda ev: sum(e["event"] == "prediction_refused" for e in ev) >= 4)
        failing = scrape(port)
        flag.unlink()
        running.wait_for(lambda ev: ev[-1]["event"] == "prediction" and sum(e["event"] == "prediction" for e in ev) >= 2)
        recovered = scrape(port)
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == EXIT_OK
    assert failing["allora_consecutive_failures"] >= 4
    assert failing['allora_prediction_failures_total{reason="exception"}'] >= 4
    assert recovered["allora_consecutive_failures"] == 0
    assert recovered["allora_last_success_timestamp_seconds"] > time.time() - 60
    assert recovered["allora_heartbeat_timestamp_seconds"] > time.time() - 60
    info = f'allora_model_info{{name="demo",network="testnet",sha256="{SHA}",topic="42",version="0.1.0"}}'
    assert recovered[info] == 1
    assert recovered['allora_submissions_total{error_type="",result="ok"}'] == 0  # dry run: nothing submitted
    assert recovered["allora_gas_used_total"] == 0 and recovered["allora_fees_paid_uallo_total"] == 0
    assert recovered["allora_stuck_calls"] == 0
    # the latency histogram resolves 1 ms to the 25 s timeout
    buckets = sorted(float(k.split('le="')[1].split('"')[0]) for k in recovered if k.startswith("allora_prediction_latency_seconds_bucket") and "+Inf" not in k)
    assert buckets[0] == 0.001 and 25.0 in buckets and all(b / a <= 2.5 for a, b in zip(buckets, buckets[1:]) if b <= 25)
    # no series before the worker read the balance (the low-balance alert must not fire on a zero it never read)
    assert not [k for k in recovered if k.startswith("allora_wallet_balance_uallo")]


@pytest.mark.slow
def test_cardinality_is_the_same_after_ten_thousand_predictions_as_after_ten(tmp_path):
    """Distinct nonces, values and failure messages never become labels."""
    runner = (
        "def run(nonce):\n"
        "    if nonce % 7 == 0:\n"
        "        raise ValueError(f'failure {nonce} value {nonce * 3.7}')\n"
        "    if nonce % 11 == 0:\n"
        "        return float('nan')\n"
        "    return nonce * 1.000001\n"
    )
    bundle = make_bundle(tmp_path / "b", runner)
    port = free_port()
    running = start_runtime(bundle, port, "--start-nonce", "1", "--interval", "0.0001")
    try:
        done = lambda n: lambda ev: sum(e["event"] in ("prediction", "prediction_refused") for e in ev) >= n  # noqa: E731
        running.wait_for(done(10))
        after_10 = allora_series(scrape(port))
        running.wait_for(done(10_000), timeout=240)
        after_10k_values = scrape(port)
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == EXIT_OK
    assert after_10k_values["allora_prediction_latency_seconds_count"] >= 10_000
    assert allora_series(after_10k_values) == after_10
    from allora_gitops.render.monitoring import SAMPLE_LIMIT

    # a tenth of the PodMonitor's sampleLimit: 61 series since the log shipper's sent/dropped counters
    assert len(after_10) < SAMPLE_LIMIT // 10


def test_submission_error_types_are_bounded_and_live_rounds_settle_on_the_submission():
    from allora_runtime.metrics import MAX_ERROR_TYPES, Metrics

    metrics = Metrics(True, settle_on_submission=True)
    for i in range(100):
        metrics.submission("error", f"Error{i}")
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    errors = [l for l in text.splitlines() if l.startswith('allora_submissions_total{error_type="') and 'result="error"' in l]
    assert len(errors) == MAX_ERROR_TYPES + 1  # + "other"
    assert 'allora_submissions_total{error_type="other",result="error"} 80.0' in text
    assert "allora_consecutive_failures 100.0" in text
    metrics.failure("exception", 0.1)  # a refused prediction is also a failed submission: counted once, there
    assert "allora_consecutive_failures 100.0" in generate_latest(metrics.registry).decode()
    metrics.submission("ok", gas_used=81234, fee_uallo=2500)
    text = generate_latest(metrics.registry).decode()
    assert "allora_consecutive_failures 0.0" in text
    assert "allora_gas_used_total 81234.0" in text and "allora_fees_paid_uallo_total 2500.0" in text


def test_an_already_submitted_nonce_is_neither_a_failure_nor_a_success():
    """The SDK yields AlreadySubmittedError (an Exception) for a nonce the chain already has from us, e.g. after a restart:
    four of them must not raise AlloraConsecutiveFailures, nor reset a real failure streak."""
    from allora_sdk.rpc_client.tx_manager import TxError
    from allora_sdk.worker.types import AlreadySubmittedError
    from prometheus_client import generate_latest

    from allora_runtime.live import already_submitted
    from allora_runtime.metrics import Metrics

    dup = AlreadySubmittedError(codespace="emissions", code=75, tx_hash="AB12", message="already submitted")
    assert already_submitted(dup)
    assert not already_submitted(TxError(codespace="sdk", code=13, tx_hash="AB12", message="insufficient fee"))
    assert not already_submitted(RuntimeError("down")) and not already_submitted(None)

    metrics = Metrics(True, settle_on_submission=True)
    metrics.submission("error", "TxError")
    for _ in range(4):
        metrics.submission("already_submitted")
    text = generate_latest(metrics.registry).decode()
    assert "allora_consecutive_failures 1.0" in text
    assert 'allora_submissions_total{error_type="",result="already_submitted"} 4.0' in text
    assert 'allora_submissions_total{error_type="TxError",result="error"} 1.0' in text


def test_gas_and_fee_come_from_the_transaction_response():
    from types import SimpleNamespace as NS

    from allora_runtime.live import submission_costs

    tx = NS(
        gas_used=81234,
        events=[
            NS(type="coin_spent", attributes=[NS(key="amount", value="999uallo")]),
            NS(type="tx", attributes=[NS(key="fee", value="2500uallo"), NS(key="fee_payer", value="allo1xyz")]),
        ],
    )
    assert submission_costs(tx) == (81234, 2500)
    assert submission_costs(NS(gas_used=0, events=[])) == (None, None)
    assert submission_costs(None) == (None, None)


# --- a real Prometheus (tests/fixtures/prometheus.py) ---------------------------------------


def test_a_real_prometheus_alerts_on_four_failures_and_sees_the_recovery_and_the_latency(tmp_path, make_spec):
    from allora_gitops.render.monitoring import render_rule_file
    from allora_gitops.render.monitoring import runtime_selector

    spec = make_spec("testnet")
    rules = render_rule_file(spec, {"AlloraConsecutiveFailures": "2s"})  # the production template, a short for:
    runner = (
        "import pathlib, time\n"
        "def run(nonce):\n"
        "    time.sleep(0.3)\n"
        "    if pathlib.Path(__file__).with_name('fail').exists():\n"
        "        raise RuntimeError('down')\n"
        "    return 1.0\n"
    )
    bundle = make_bundle(tmp_path / "b", runner)
    flag = bundle / "src" / "demo" / "fail"
    flag.touch()
    port = free_port()
    # The labels the PodMonitor's relabelings give a pod of this deployment.
    labels = {"namespace": spec.namespace, "allora_deployment": spec.instance, "allora_model": spec.name, "allora_network": spec.network}
    prom = Prometheus(tmp_path, f"127.0.0.1:{port}", labels, rules)
    running = start_runtime(bundle, port, "--start-nonce", "1", "--interval", "0.2")
    try:
        prom.wait("target up", lambda: prom.value(f'up{{job="allora"}} == 1'))
        alert = prom.wait(
            "AlloraConsecutiveFailures",
            lambda: [a for a in prom.get("/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == "AlloraConsecutiveFailures"],
        )[0]
        assert alert["state"] in ("pending", "firing")
        assert {k: alert["labels"][k] for k in ("severity", "allora_deployment", "allora_network", "namespace")} == {
            "severity": "warning", "allora_deployment": spec.instance, "allora_network": "testnet", "namespace": spec.namespace,
        }  # fmt: skip
        assert running.count("prediction_refused") >= 4
        assert prom.value(f"allora_consecutive_failures{{{runtime_selector(spec.namespace, spec.instance)}}}")[0][1] >= 4

        flag.unlink()  # the model recovers
        prom.wait("gauge back to 0", lambda: [v for _, v in prom.value("allora_consecutive_failures") if v == 0])
        prom.wait(
            "alert resolved",
            lambda: not [a for a in prom.get("/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == "AlloraConsecutiveFailures"] or None,
        )
        # Every call sleeps 0.3 s: p95 must fall in the (0.2, 0.5] bucket.
        q = "histogram_quantile(0.95, sum by (le) (rate(allora_prediction_latency_seconds_bucket[15s])))"
        p95 = prom.wait("p95", lambda: prom.value(q))[0][1]
        assert 0.2 < p95 <= 0.5, p95
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
        prom.stop()
    assert code == EXIT_OK
