"""The runtime (bootstrap.pyz) without a chain: the adapter, checks, modes, configuration errors and lifecycle, as a real subprocess."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from tests.fixtures.runtime import (
    EXIT_CONFIG,
    EXIT_IMPORT,
    EXIT_INVALID_PREDICTION,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_UNHEALTHY,
    TEST_MNEMONIC,
    RunningBootstrap,
    bootstrap_env,
    free_port,
    make_bundle,
    run_bootstrap,
)

CONSTANT = """
def run(nonce: int) -> float:
    return 42.0
"""

# One function, many behaviours, chosen by the nonce.
VARIED = """
import math
import time
from decimal import Decimal

def run(nonce: int):
    if nonce == 1:
        return None
    if nonce == 2:
        return math.nan
    if nonce == 3:
        return [1.0, 2.0]
    if nonce == 4:
        return True
    if nonce == 5:
        raise ValueError("model exploded")
    if nonce == 6:
        return -math.inf
    if nonce == 7:
        return "abc"
    if nonce == 8:
        return {"y": 1.5, "z": Decimal("2.25")}
    if nonce == 9:
        return Decimal("3.5")
    if nonce == 10:
        return 7
    if nonce == 11:
        return "12.5"
    if nonce == 12:
        import numpy
        return numpy.array([1.0])
    if nonce == 14:
        import numpy
        return numpy.float64(2.5)  # a float subclass: accepted
    if nonce == 15:
        import numpy
        return numpy.float32(2.5)  # not a float: refused with the fix to apply
    return nonce / 10
"""


def by_nonce(result, event):
    return {e["nonce"]: e for e in result.of(event)}


def test_dry_run_predicts_each_nonce_and_every_line_is_json(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1000", "--nonce", "1001")
    assert result.code == EXIT_OK, result.out + result.err
    predictions = result.of("prediction")
    assert [(p["nonce"], p["value"]) for p in predictions] == [(1000, 42.0), (1001, 42.0)]
    assert all(p["latency_ms"] >= 0 for p in predictions)
    assert result.one("dry_run_finished") == {**result.one("dry_run_finished"), "predictions": 2, "refused": 0}
    assert result.events[0]["event"] == "start" and result.events[0]["mode"] == "dry_run"
    assert result.err == ""


def test_refused_values_are_logged_with_a_reason_and_the_loop_goes_on(tmp_path):
    bundle = make_bundle(tmp_path / "b", VARIED)
    nonces = [str(n) for n in range(1, 16)]
    args = [a for n in nonces for a in ("--nonce", n)]
    result = run_bootstrap(bundle, "--dry-run", *args)
    assert result.code == EXIT_INVALID_PREDICTION
    refused = by_nonce(result, "prediction_refused")
    ok = by_nonce(result, "prediction")
    assert sorted(refused) == [1, 2, 3, 4, 5, 6, 7, 12, 15]
    assert refused[1]["message"] == "the prediction is None; return a number"
    assert refused[2]["message"] == "the prediction is nan; NaN and infinity cannot be submitted"
    assert refused[3]["message"] == "the prediction is a list; return one scalar, e.g. float(values[0])"
    assert refused[4]["message"] == "the prediction is a bool (True); return a number"
    assert refused[5]["reason"] == "exception" and refused[5]["error_type"] == "ValueError"
    assert refused[5]["message"] == "model exploded"
    assert refused[5]["where"].endswith("src/demo/runner.py:16")
    assert "traceback" not in refused[5]
    assert refused[6]["message"] == "the prediction is -inf; NaN and infinity cannot be submitted"
    assert refused[7]["message"] == "the prediction is the string 'abc', not a finite decimal number"
    assert refused[12]["message"] == "the prediction is an array (numpy.ndarray); return one scalar, e.g. float(values[0])"
    assert refused[15]["message"] == "the prediction is a numpy.float32; return float(value)"
    assert {n: r["reason"] for n, r in refused.items() if n != 5} == {n: "invalid_value" for n in (1, 2, 3, 4, 6, 7, 12, 15)}
    assert ok[8]["value"] == {"y": 1.5, "z": "2.25"}
    assert ok[9]["value"] == "3.5" and ok[10]["value"] == 7 and ok[11]["value"] == "12.5"
    assert ok[13]["value"] == 1.3  # after eight refusals the worker still predicts
    assert ok[14]["value"] == 2.5
    assert result.one("dry_run_finished")["refused"] == 9


def test_debug_adds_the_traceback(tmp_path):
    bundle = make_bundle(tmp_path / "b", VARIED)
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "5", env=bootstrap_env(DEBUG="1"))
    refused = result.one("prediction_refused")
    assert "Traceback (most recent call last)" in refused["traceback"]
    assert 'raise ValueError("model exploded")' in refused["traceback"]


SLOW = """
import time

def run(nonce: int) -> float:
    if nonce < 10:
        time.sleep(60)  # hangs: a thread cannot be interrupted
    return float(nonce)
"""


def test_a_hung_sync_call_times_out_and_later_windows_still_run(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW)
    result = run_bootstrap(bundle, "--dry-run", "--timeout", "0.5", "--nonce", "1", "--nonce", "10", "--nonce", "11")
    assert result.code == EXIT_INVALID_PREDICTION
    assert result.seconds < 10  # did not wait the minute, neither for the call nor at exit
    timed_out = result.one("prediction_refused")
    assert (timed_out["nonce"], timed_out["reason"], timed_out["message"]) == (1, "timeout", "run() did not return within 0.5 s")
    assert 450 <= timed_out["latency_ms"] < 2000
    assert [(p["nonce"], p["value"]) for p in result.of("prediction")] == [(10, 10.0), (11, 11.0)]


def test_too_many_stuck_calls_exit_so_the_pod_restarts(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW)
    env = bootstrap_env(ALLORA_MAX_STUCK_CALLS="2")
    result = run_bootstrap(bundle, "--dry-run", "--timeout", "0.3", "--nonce", "1", "--nonce", "2", "--nonce", "10", env=env)
    assert result.code == EXIT_RUNTIME
    assert result.seconds < 10
    error = result.one("runtime_error")
    assert error["message"].startswith("2 timed-out calls are still running in their threads")
    assert [e["nonce"] for e in result.of("prediction_refused")] == [1, 2]
    assert result.of("prediction") == []  # nonce 10 never ran: the process was on its way out


ASYNC = """
import asyncio

async def run(nonce: int) -> float:
    if nonce == 1:
        await asyncio.sleep(60)
    if nonce == 2:
        while True:  # swallows cancellation: must not hold the loop either
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass
    await asyncio.sleep(0.01)
    return nonce * 2.5
"""


def test_async_functions_work_and_time_out(tmp_path):
    bundle = make_bundle(tmp_path / "b", ASYNC)
    result = run_bootstrap(bundle, "--dry-run", "--timeout", "0.5", "--nonce", "4", "--nonce", "1", "--nonce", "2", "--nonce", "3")
    assert result.one("imported")["is_async"] is True
    assert [(p["nonce"], p["value"]) for p in result.of("prediction")] == [(4, 10.0), (3, 7.5)]
    assert [(r["nonce"], r["reason"]) for r in result.of("prediction_refused")] == [(1, "timeout"), (2, "timeout")]
    assert result.seconds < 15


CONTEXT = """
from allora_sdk import RunContext

def run(ctx: RunContext) -> float:
    return ctx.nonce + ctx.topic_id / 100
"""

CONTEXT_BY_NAME = """
def predict(context):
    return float(context.nonce * 2)
"""


def test_a_function_that_asks_for_the_context_gets_one(tmp_path):
    by_annotation = make_bundle(tmp_path / "a", CONTEXT.replace("from allora_sdk import RunContext\n", ""), topic_id=42)
    # Annotation as a string (no SDK import needed in dry-run): def run(ctx: "RunContext")
    runner = by_annotation / "src" / "demo" / "runner.py"
    runner.write_text(runner.read_text().replace("ctx: RunContext", 'ctx: "RunContext"'))
    result = run_bootstrap(by_annotation, "--dry-run", "--nonce", "5")
    assert result.one("imported")["passes"] == "RunContext"
    assert result.one("prediction")["value"] == 5.42

    by_name = make_bundle(tmp_path / "b", CONTEXT_BY_NAME, function="predict")
    result = run_bootstrap(by_name, "--dry-run", "--nonce", "21")
    assert result.one("imported")["passes"] == "RunContext"
    assert result.one("prediction")["value"] == 42.0


def test_check_passes_on_a_valid_value_and_fails_on_a_bad_one(tmp_path):
    bundle = make_bundle(tmp_path / "b", VARIED)
    good = run_bootstrap(bundle, "--check")
    assert good.code == EXIT_OK, good.out
    assert good.one("prediction")["nonce"] == 1000
    assert good.one("check_passed")["nonce"] == 1000
    bad = run_bootstrap(bundle, "--check", "--nonce", "2")
    assert bad.code == EXIT_INVALID_PREDICTION
    assert bad.one("check_failed")["nonce"] == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLORA_TOPIC_ID": "abc"}, "ALLORA_TOPIC_ID must be a positive integer, got 'abc'"),
        ({"ALLORA_TOPIC_ID": "0"}, "ALLORA_TOPIC_ID must be a positive integer, got '0'"),
        ({"ALLORA_FEE_TIER": "FAST"}, "ALLORA_FEE_TIER must be one of ECO, STANDARD, PRIORITY, got 'FAST'"),
        ({"ALLORA_POLLING_INTERVAL": "-5"}, "ALLORA_POLLING_INTERVAL must be a positive integer, got '-5'"),
        ({"ALLORA_NETWORK": "devnet"}, "ALLORA_NETWORK must be testnet, mainnet or a gRPC URL"),
        ({"ALLORA_NETWORK": "grpc+http://127.0.0.1:9"}, "ALLORA_NETWORK is a custom URL: ALLORA_CHAIN_ID and ALLORA_WEBSOCKET_URL must be set too"),
        ({"ALLORA_METRICS_PORT": "http"}, "ALLORA_METRICS_PORT must be a port number (0 disables metrics), got 'http'"),
    ],
)
def test_bad_environment_values_are_configuration_errors(tmp_path, env, message):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=bootstrap_env(**env))
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"].startswith(message)
    assert result.of("prediction") == []


def test_model_yaml_errors_name_the_field(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    manifest = bundle / "model.yaml"
    manifest.write_text(manifest.read_text().replace('module: "src.demo.runner"', 'module: "src/demo/runner.py"'))
    result = run_bootstrap(bundle, "--dry-run")
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"] == (
        "model.yaml: entrypoint.module must be a dotted module path like src.my_model.runner, got 'src/demo/runner.py'"
    )
    manifest.write_text(manifest.read_text().replace("fee_tier: \"STANDARD\"", "fee_tier: \"FAST\""))
    missing = run_bootstrap(tmp_path / "nowhere", "--dry-run")
    assert missing.code == EXIT_CONFIG
    assert missing.one("config_error")["message"] == f"{tmp_path / 'nowhere' / 'model.yaml'} not found (BUNDLE_ROOT={tmp_path / 'nowhere'})"


def test_missing_wallet_is_a_configuration_error_not_a_prompt(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    result = run_bootstrap(bundle, env=bootstrap_env(ALLORA_METRICS_PORT="0"), timeout=30)
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"].startswith("no wallet: set ALLORA_MNEMONIC or ALLORA_PRIVATE_KEY")
    assert "Mnemonic:" not in result.out + result.err
    assert not (bundle / ".allora_key").exists()


def test_two_wallets_are_refused_without_showing_either(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    env = bootstrap_env(ALLORA_MNEMONIC=TEST_MNEMONIC, ALLORA_PRIVATE_KEY="ab" * 32, ALLORA_METRICS_PORT="0")
    result = run_bootstrap(bundle, env=env)
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"] == (
        "two wallets given (env:ALLORA_MNEMONIC and env:ALLORA_PRIVATE_KEY); keep exactly one"
    )
    assert TEST_MNEMONIC not in result.out + result.err and "ab" * 32 not in result.out + result.err


@pytest.mark.parametrize(
    ("runner", "function", "message"),
    [
        ("import not_a_real_package\n", "run", "cannot import src.demo.runner: a module it imports is missing (No module named 'not_a_real_package')"),
        ("def predict(nonce):\n    return 1.0\n", "run", "src.demo.runner has no attribute 'run' (model.yaml entrypoint.function)"),
        ("raise RuntimeError('weights not found')\n", "run", "importing src.demo.runner raised RuntimeError: weights not found"),
        ("def run(nonce, extra):\n    return 1.0\n", "run", "src.demo.runner.run(nonce, extra) must take exactly one argument: the nonce (block height)"),
        ("run = 3\n", "run", "src.demo.runner.run is a int, not a function"),
    ],
)
def test_import_problems_exit_with_the_import_code(tmp_path, runner, function, message):
    bundle = make_bundle(tmp_path / "b", runner, function=function)
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1")
    assert result.code == EXIT_IMPORT
    assert result.one("import_error")["message"] == message
    assert "Traceback" not in result.out + result.err


def test_a_missing_entrypoint_module_is_named(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    (bundle / "src" / "demo" / "runner.py").unlink()
    result = run_bootstrap(bundle, "--check")
    assert result.code == EXIT_IMPORT
    assert result.one("import_error")["message"] == (
        "cannot import src.demo.runner: the entrypoint module is missing (No module named 'src.demo.runner')"
    )


def test_sigterm_exits_zero_in_time_even_with_a_call_hung_in_its_thread(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW, max_seconds=600)
    running = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", "0.1")
    try:
        running.wait_for(lambda events: any(e["event"] == "imported" for e in events))
        time.sleep(0.5)  # nonce 1 is now sleeping in its thread
        code, took = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == EXIT_OK
    assert took < 10
    assert [e["event"] for e in running.events][-2:] == ["stopping", "stopped"]


def test_sigint_exits_zero_too(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "0.05")
    try:
        running.wait_for(lambda events: sum(e["event"] == "prediction" for e in events) >= 2)
        code, took = running.stop(signal.SIGINT)
    finally:
        running.kill()
    assert (code, took < 10) == (EXIT_OK, True)


def test_metrics_count_dry_run_predictions_and_failures(tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return None if nonce % 2 else 1.5\n")
    port = free_port()
    env = bootstrap_env(ALLORA_METRICS_PORT=str(port), ALLORA_METRICS_ADDRESS="127.0.0.1")
    live = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", "0.05", env=env)
    try:
        live.wait_for(lambda events: sum(e["event"] in ("prediction", "prediction_refused") for e in events) >= 6)
        assert any(e["event"] == "metrics_serving" and e["port"] == port for e in live.events)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        code, _ = live.stop(signal.SIGTERM)
    finally:
        live.kill()
    assert code == EXIT_OK
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert values["allora_predictions_total"] >= 3
    assert values['allora_prediction_failures_total{reason="invalid_value"}'] >= 3
    assert values['allora_prediction_failures_total{reason="timeout"}'] == 0
    assert values["allora_prediction_latency_seconds_count"] >= 6
    assert values["allora_last_success_timestamp_seconds"] > time.time() - 60
    assert "process_resident_memory_bytes" in values


def test_heartbeat_advances_and_healthcheck_follows_it(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    beat = tmp_path / "heartbeat"
    env = bootstrap_env(ALLORA_HEARTBEAT_FILE=str(beat), ALLORA_HEARTBEAT_INTERVAL="0.2")
    assert run_bootstrap(None, "--healthcheck", env=env).code == EXIT_UNHEALTHY  # no file yet
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "0.1", env=env)
    try:
        running.wait_for(lambda events: any(e["event"] == "prediction" for e in events))
        deadline = time.monotonic() + 10
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first = beat.stat().st_mtime_ns
        mtimes = {first}
        while len(mtimes) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            mtimes.add(beat.stat().st_mtime_ns)
        assert len(mtimes) >= 3, "the heartbeat file did not advance"
        healthy = run_bootstrap(None, "--healthcheck", env=env)
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert healthy.code == EXIT_OK and healthy.out == ""
    os.utime(beat, (time.time() - 300, time.time() - 300))
    stale = run_bootstrap(None, "--healthcheck", env=env)
    assert stale.code == EXIT_UNHEALTHY
    assert stale.err.startswith("unhealthy: heartbeat is 30") and stale.err.endswith("s old (max 120 s)\n")


def test_user_code_cannot_read_the_wallet_and_prints_are_wrapped(tmp_path):
    runner = """
    import os

    print("imported with", os.environ.get("ALLORA_MNEMONIC"))

    def run(nonce):
        return 1.0
    """
    bundle = make_bundle(tmp_path / "b", runner)
    env = bootstrap_env(ALLORA_MNEMONIC=TEST_MNEMONIC, ALLORA_API_KEY="secret-api-key-123")
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=env)
    assert result.code == EXIT_OK, result.out + result.err
    assert [e["message"] for e in result.of("print")][0] == "imported with None"
    assert result.one("config")["api_key"] == "set"
    assert TEST_MNEMONIC not in result.out + result.err
    assert "secret-api-key-123" not in result.out + result.err


def test_a_secret_printed_by_user_code_is_redacted(tmp_path):
    runner = f"""
    def run(nonce):
        print("leaking {TEST_MNEMONIC}")
        raise ValueError("key is {TEST_MNEMONIC}")
    """
    bundle = make_bundle(tmp_path / "b", runner)
    # In dry-run no wallet is read, but a wallet in the environment is still never echoed.
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=bootstrap_env(ALLORA_MNEMONIC=TEST_MNEMONIC))
    assert TEST_MNEMONIC not in result.out + result.err
    assert result.one("print")["message"] == "leaking [redacted]"
    assert result.one("prediction_refused")["message"] == "key is [redacted]"


@pytest.mark.parametrize("codec, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe")])
def test_the_runtime_reads_a_bom_marked_model_yaml_as_validate_does(tmp_path, codec, bom):
    """validate accepts a model.yaml with a byte-order mark (Windows editors write them); so must the container."""
    bundle = make_bundle(tmp_path / "b", VARIED)
    manifest = bundle / "model.yaml"
    manifest.write_bytes(bom + manifest.read_text().encode(codec))
    result = run_bootstrap(bundle, "--check")
    assert result.code == EXIT_OK, result.out + result.err
    assert result.one("check_passed")["nonce"] == 1000


def test_max_runtime_ends_a_dry_run_cleanly_with_exit_zero(tmp_path):
    """ALLORA_MAX_RUNTIME=3: a run that would go on forever stops after ~3 s, exit 0, so a sandbox Job completes."""
    bundle = make_bundle(tmp_path / "b", CONSTANT)

    result = run_bootstrap(bundle, "--dry-run", "--interval", "0.2", env={**bootstrap_env(), "ALLORA_MAX_RUNTIME": "3"}, timeout=60)

    assert result.code == EXIT_OK, result.stderr
    assert 3 <= result.seconds < 15
    events = [e["event"] for e in result.events]
    assert events[-2:] == ["stopping", "stopped"] and "max_runtime_reached" in events
    assert result.one("max_runtime_reached")["seconds"] == 3.0
    assert sum(e == "prediction" for e in events) >= 5  # it really ran until then
    assert result.one("config")["max_runtime"] == 3.0


def test_a_bad_max_runtime_is_a_config_error(tmp_path):
    bundle = make_bundle(tmp_path / "b", CONSTANT)
    result = run_bootstrap(bundle, "--dry-run", "--count", "1", env={**bootstrap_env(), "ALLORA_MAX_RUNTIME": "soon"})
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"] == "ALLORA_MAX_RUNTIME must be a number, got 'soon'"
