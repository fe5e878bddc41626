"""The runtime with the real allora-sdk 1.3.0: the worker it builds, and how it fails when the chain is unreachable.

Building an AlloraWorker costs a few CPU seconds (the SDK imports and indexes its
event classes), so every process here is started at once by one module fixture
and the tests read their results.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.runtime import (
    BOOTSTRAP,
    EXIT_CONFIG,
    EXIT_CONNECTION,
    EXIT_OK,
    TEST_ADDRESS,
    TEST_MNEMONIC,
    bootstrap_env,
    free_port,
    make_bundle,
    parse_events,
)

pytestmark = pytest.mark.slow

RUNNER = """
def run(nonce: int) -> float:
    return 42.0
"""
# Drives the SDK's own Inferer.submit() (what the worker calls for each window) with bootstrap's adapter as callback.
SUBMIT_DRIVER = """
import asyncio, os, sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, sys.argv[1])  # the packed runtime: a zipapp is importable as it is
from allora_runtime import adapter, live, log, metrics, settings, user
bs = SimpleNamespace(**{k: getattr(m, k) for m in (adapter, live, log, metrics, settings, user) for k in dir(m)})
sys.stdout = bs.PrintCapture(bs.LOG)

async def main():
    env = dict(os.environ)
    settings = bs.load_settings(Path(sys.argv[2]), env)
    bs._install_logging(bs.LOG, False)
    adapter = bs.Adapter(bs.load_user_function(settings), 5.0, bs.Metrics(False), bs.LOG, settings.topic_id)
    worker = bs.build_worker(settings, bs.read_wallet(env), adapter)
    for nonce in (1, 2):
        result = await asyncio.wait_for(worker.use_case.submit(nonce, 0), 60)
        bs.LOG.emit("submit_result", nonce=nonce, result_type=type(result).__name__)

asyncio.run(main())
"""
CONTEXT_RUNNER = """
def run(ctx):
    print("context", type(ctx).__module__, type(ctx).__name__, ctx.nonce, ctx.topic_id)
    return None if ctx.nonce == 1 else 3.5
"""

# The private key of the BIP-39 test vector above (m/44'/118'/0'/0/0), so both wallet kinds derive one address.
TEST_PRIVATE_KEY = "c4a48e2fce1481cd3294b4490f6678090ea98d3d0e5cd984558ab0968741b104"


@dataclass
class Finished:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def events(self):
        return parse_events(self.out)

    def one(self, name):
        found = [e for e in self.events if e["event"] == name]
        assert len(found) == 1, (name, self.out, self.err)
        return found[0]


def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every SDK-backed bootstrap process in parallel; return name → Finished."""
    root = tmp_path_factory.mktemp("worker")
    bundle = make_bundle(root / "bundle", RUNNER, topic_id=69)
    wallet_dir = root / "wallet"
    wallet_dir.mkdir()
    (wallet_dir / "mnemonic").write_text(TEST_MNEMONIC + "\n")
    key_file = root / "private_key"
    key_file.write_text(TEST_PRIVATE_KEY)
    closed = _closed_port()
    custom = {
        "ALLORA_NETWORK": f"grpc+http://127.0.0.1:{closed}",
        "ALLORA_CHAIN_ID": "allora-local-1",
        "ALLORA_WEBSOCKET_URL": f"ws://127.0.0.1:{closed}/websocket",
    }
    quiet = {"ALLORA_METRICS_PORT": "0", "ALLORA_HEARTBEAT_FILE": str(root / "heartbeat")}
    plans = {
        "testnet": (["--print-config"], {"ALLORA_MNEMONIC": TEST_MNEMONIC, "ALLORA_API_KEY": "api-key-for-the-faucet"}),
        "mainnet": (
            ["--print-config"],
            {
                "ALLORA_NETWORK": "mainnet",
                "ALLORA_WALLET_DIR": str(wallet_dir),  # the Secret mounted as files, as in the pod
                "ALLORA_TOPIC_ID": "7",
                "ALLORA_FEE_TIER": "priority",
                "ALLORA_POLLING_INTERVAL": "30",
            },
        ),
        "custom": (["--print-config"], {**custom, "ALLORA_PRIVATE_KEY_FILE": str(key_file), "ALLORA_FEE_TIER": "ECO"}),
        "closed": (
            [],
            {**custom, **quiet, "ALLORA_MNEMONIC": TEST_MNEMONIC, "ALLORA_CONNECT_RETRIES": "2", "ALLORA_RETRY_BACKOFF": "0.2"},
        ),
        "bad_mnemonic": (["--print-config"], {"ALLORA_MNEMONIC": "abandon " * 11 + "zebra-not-a-word"}),
    }
    context_bundle = make_bundle(root / "context", CONTEXT_RUNNER, topic_id=11)
    driver = root / "submit_driver.py"
    driver.write_text(SUBMIT_DRIVER)
    procs = {}
    started = {}
    started["submit"] = time.monotonic()
    procs["submit"] = subprocess.Popen(
        [sys.executable, str(driver), str(BOOTSTRAP), str(context_bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=bootstrap_env(**custom, ALLORA_MNEMONIC=TEST_MNEMONIC),
    )
    for name, (args, extra) in plans.items():
        started[name] = time.monotonic()
        procs[name] = subprocess.Popen(
            [sys.executable, str(BOOTSTRAP), "--bundle-root", str(bundle), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,  # an SDK prompt would block here: the timeout below would catch it
            text=True,
            env=bootstrap_env(**extra),
        )
    # The live one that is stopped during its backoff: started last, signalled once it says it will retry.
    sigterm = subprocess.Popen(
        [sys.executable, str(BOOTSTRAP), "--bundle-root", str(bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=bootstrap_env(**custom, **quiet, ALLORA_MNEMONIC=TEST_MNEMONIC, ALLORA_RETRY_BACKOFF="60"),
    )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        results[name] = Finished(proc.returncode, out, err, time.monotonic() - started[name])
    assert sigterm.stdout is not None
    lines = []
    for line in sigterm.stdout:
        lines.append(line)
        if '"connection_retry"' in line:
            break
    signalled = time.monotonic()
    sigterm.send_signal(signal.SIGTERM)
    out, err = sigterm.communicate(timeout=30)
    results["sigterm"] = Finished(sigterm.returncode, "".join(lines) + out, err, time.monotonic() - signalled)
    return results


def test_testnet_worker_from_model_yaml_and_env(runs):
    result = runs["testnet"]
    assert result.code == EXIT_OK, result.out + result.err
    worker = result.one("worker_constructed")
    assert worker == {
        **worker,
        "sdk_version": "1.3.0",
        "role": "inferer",
        "topic_id": 69,
        "fee_tier": "STANDARD",
        "polling_interval": 120,
        "address": TEST_ADDRESS,
        "chain_id": "allora-testnet-1",
        "grpc_url": "grpc+https://allora-grpc.testnet.allora.network:443",
        "websocket_url": "wss://allora-rpc.testnet.allora.network/websocket",
        "faucet_url": "https://faucet.testnet.allora.run",
        "api_key": "set",
        "callback": "adapter",
        "function": "src.demo.runner.run",
        "passes": "nonce",
    }
    assert result.one("config")["wallet"] == "env:ALLORA_MNEMONIC"
    assert TEST_MNEMONIC not in result.out + result.err
    assert "api-key-for-the-faucet" not in result.out + result.err


def test_mainnet_worker_with_env_overrides_and_a_mounted_wallet(runs):
    result = runs["mainnet"]
    assert result.code == EXIT_OK, result.out + result.err
    worker = result.one("worker_constructed")
    assert (worker["topic_id"], worker["fee_tier"], worker["polling_interval"]) == (7, "PRIORITY", 30)
    assert worker["chain_id"] == "allora-mainnet-1"
    assert worker["grpc_url"] == "grpc+https://allora-grpc.mainnet.allora.network:443"
    assert worker["websocket_url"] == "wss://allora-rpc.mainnet.allora.network/websocket"
    assert worker["address"] == TEST_ADDRESS
    assert worker["api_key"] == "unset"
    assert result.one("config")["wallet"].startswith("file:") and result.one("config")["wallet"].endswith("/wallet/mnemonic")
    assert TEST_MNEMONIC not in result.out + result.err


def test_custom_loopback_network(runs):
    result = runs["custom"]
    assert result.code == EXIT_OK, result.out + result.err
    worker = result.one("worker_constructed")
    assert worker["chain_id"] == "allora-local-1"
    assert worker["grpc_url"].startswith("grpc+http://127.0.0.1:")
    assert worker["websocket_url"].startswith("ws://127.0.0.1:") and worker["websocket_url"].endswith("/websocket")
    assert worker["faucet_url"] is None
    assert (worker["fee_tier"], worker["topic_id"], worker["address"]) == ("ECO", 69, TEST_ADDRESS)
    assert result.one("config")["wallet"] == f"file:{Path(result.one('config')['bundle_root']).parent / 'private_key'}"
    assert TEST_PRIVATE_KEY not in result.out + result.err


def test_closed_port_exits_with_the_connection_code_after_bounded_retries(runs):
    result = runs["closed"]
    assert result.code == EXIT_CONNECTION, result.out + result.err
    retries = [e for e in result.events if e["event"] == "connection_retry"]
    assert [(r["attempt"], r["of"], r["delay_s"]) for r in retries] == [(1, 2, 0.2), (2, 2, 0.4)]
    assert retries[0]["error_type"] == "ConnectionRefusedError"
    error = result.one("connection_error")
    assert error["message"].startswith("the chain is unreachable after 2 retries (ConnectionRefusedError:")
    assert error["exit_code"] == EXIT_CONNECTION
    assert "Traceback" not in result.out + result.err
    assert result.err == ""
    assert TEST_MNEMONIC not in result.out + result.err
    for word in ("abandon abandon", "about"):
        assert word not in result.out + result.err


def test_an_invalid_mnemonic_is_a_configuration_error_that_does_not_echo_it(runs):
    result = runs["bad_mnemonic"]
    assert result.code == EXIT_CONFIG
    assert result.one("config_error")["message"] == "the wallet mnemonic from env:ALLORA_MNEMONIC is not valid (12 words)"
    assert "zebra-not-a-word" not in result.out + result.err


def test_sigterm_during_backoff_exits_zero_quickly(runs):
    result = runs["sigterm"]
    assert result.code == EXIT_OK, result.out + result.err
    assert result.seconds < 10
    events = [e["event"] for e in result.events]
    assert events[-2:] == ["stopping", "stopped"]


def test_the_sdk_calls_the_adapter_with_its_run_context_and_refused_values_are_not_submitted(runs):
    result = runs["submit"]
    assert result.code == 0, result.out + result.err
    prints = [e["message"] for e in result.events if e["event"] == "print"]
    assert prints == ["context allora_sdk.worker.context RunContext 1 11", "context allora_sdk.worker.context RunContext 2 11"]
    refused = result.one("prediction_refused")
    assert (refused["nonce"], refused["message"]) == (1, "the prediction is None; return a number")
    assert result.one("prediction")["value"] == 3.5
    outcomes = {e["nonce"]: e["result_type"] for e in result.events if e["event"] == "submit_result"}
    # nonce 1 never reaches the chain; nonce 2 is handed to the SDK's transaction path (nothing listens: refused)
    assert outcomes == {1: "PredictionRefused", 2: "ConnectionRefusedError"}
    # The SDK's own "Prediction function failed" traceback is not repeated for a refusal the adapter logged.
    assert not any(e["event"] == "log" and "Prediction function failed" in e.get("message", "") for e in result.events)
    assert "Traceback" not in result.out + result.err
