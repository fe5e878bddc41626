"""The runtime's live path (bootstrap.pyz, no --dry-run) through the real allora-sdk worker against the chain stand-in.

Each submission must be recorded under the window its transaction carries (issue 28): when one poll finds
several unfulfilled nonces, the SDK calls the model for the next window before the runtime reads the
previous result, so "the latest call" is the wrong window. These tests read every event against the
chain's own record of what was signed and included, and what the platform stores from the log.
"""

from __future__ import annotations

import signal
from collections import deque
from types import SimpleNamespace as NS

import pytest

from allora_runtime.adapter import SdkCall
from allora_runtime.errors import PredictionRefused
from tests.fixtures.chain import chain, live_env  # noqa: F401 - the fixture
from tests.fixtures.runtime import EXIT_OK, TEST_ADDRESS, RunningBootstrap, make_bundle
from tests.test_db_records import bundle_args, deployment_args

NAME = "linear-forecaster"
OUTCOMES = ("submission", "submission_failed", "submission_skipped")
REFUSED = "prediction_refused"

# One window per kind of outcome, each value different: a success, a payload the chain refuses (its window
# closed before it landed), a success, an exception, a success, a timeout, an invalid value.
#
# allora-sdk 1.3.0 signs the k-th window of a poll with sequence base + k, refused windows included, so the
# transaction after a refusal carries a sequence one too high: the node refuses it at CheckTx, and the SDK
# waits 30 s for a block before it retries with the chain's sequence. One refusal sits before a success
# (the retry path is exercised once, 30 s); the others are last, so the test does not pay for them.
BACKLOG_RUNNER = """
import time


def run(nonce):
    if nonce == 1206:
        raise ValueError("no data for this window")
    if nonce == 1218:
        time.sleep(3)  # over runtime.max_seconds: refused as a timeout
    if nonce == 1224:
        return None
    return nonce / 4
"""
SIMPLE_RUNNER = """
def run(nonce):
    return nonce / 4
"""


def _by_nonce(events: list[dict], name: str) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for event in events:
        if event["event"] == name:
            assert event["nonce"] not in found, f"two {name} events for nonce {event['nonce']}"
            found[event["nonce"]] = event
    return found


def _run_live(bundle, env, windows: int, timeout: float = 120) -> RunningBootstrap:
    """Start the runtime live, wait until ``windows`` windows have an outcome, stop it with SIGTERM (exit 0)."""
    run = RunningBootstrap(bundle, env=env)
    try:
        run.wait_for(lambda events: sum(e["event"] in OUTCOMES for e in events) >= windows, timeout=timeout)
    except BaseException:
        run.kill()
        raise
    code, _ = run.stop(signal.SIGTERM, timeout=30)
    assert code == EXIT_OK, "".join(run.lines)
    return run


def _import(cli, database_url, tmp_path, run: RunningBootstrap, name: str) -> None:
    path = tmp_path / f"{name}.log"
    path.write_text("".join(run.lines))
    imported = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert imported.code == 0, imported.err


def _stored(records, deployment_id) -> dict[tuple[int, str], tuple]:
    rows = records.connection.execute(
        "SELECT nonce, kind, status, prediction, tx_hash, latency_ms FROM submission_results WHERE deployment_id = %s",
        (deployment_id,),
    ).fetchall()
    stored: dict[tuple[int, str], tuple] = {}
    for nonce, kind, status, prediction, tx_hash, latency in rows:
        assert (nonce, kind) not in stored, f"two {kind} rows for nonce {nonce}"
        stored[(nonce, kind)] = (status, prediction, tx_hash, latency)
    return stored


@pytest.fixture
def deployment(records):
    bundle = records.register_bundle(**bundle_args())
    return records.create_deployment(**deployment_args(bundle.id, topic_id=7))


@pytest.mark.slow
def test_one_poll_over_a_backlog_records_each_submission_under_the_nonce_its_transaction_carries(
    chain, tmp_path, cli, database_url, records, deployment  # noqa: F811 - the chain fixture
):
    windows = [1188, 1194, 1200, 1206, 1212, 1218, 1224]
    chain.open_windows(*windows)
    chain.close_on_delivery(1194)
    bundle = make_bundle(tmp_path / "bundle", BACKLOG_RUNNER, topic_id=7, max_seconds=1)
    # A polling interval far longer than the test: every window is handled by the worker's first poll.
    run = _run_live(bundle, live_env(chain, tmp_path, ALLORA_POLLING_INTERVAL="600"), len(windows))
    events = run.events

    payloads = {tx.payload.nonce: tx.payload for tx in chain.transactions() if tx.payload is not None}
    included = {tx.tx_hash: tx for tx in chain.transactions()}
    submitted = _by_nonce(events, "submission")
    failed = _by_nonce(events, "submission_failed")
    skipped = _by_nonce(events, "submission_skipped")
    refused = _by_nonce(events, REFUSED)
    predicted = _by_nonce(events, "prediction")

    # What the chain holds: one signed payload per window the model answered and the chain accepted.
    assert sorted(payloads) == [1188, 1200, 1212]
    assert sorted(submitted) == [1188, 1200, 1212]
    for nonce, event in submitted.items():
        tx = included[event["tx_hash"]]  # the runtime's hash is the chain's
        assert tx.payload is not None and tx.payload.nonce == nonce and tx.signer == TEST_ADDRESS
        assert float(tx.payload.values["y"]) == event["value"] == nonce / 4
        assert event["code"] == 0 and event["latency_ms"] == predicted[nonce]["latency_ms"]
    # The payload the chain refused is a failure of its own window, with the value that was sent.
    rejected = included[failed[1194]["tx_hash"]]
    assert rejected.code == 40 and rejected.payload is None and "reason" not in failed[1194]
    assert failed[1194]["value"] == 1194 / 4 and failed[1194]["latency_ms"] == predicted[1194]["latency_ms"]
    # Refused windows: nothing was signed for them; each is a missed window of its own, with its refusal's latency.
    assert {n: e["reason"] for n, e in refused.items()} == {1206: "exception", 1218: "timeout", 1224: "invalid_value"}
    assert sorted(failed) == [1194, 1206, 1218, 1224] and not skipped
    for nonce in refused:
        assert failed[nonce]["reason"] == "prediction_refused" and failed[nonce]["error_type"] == "PredictionRefused"
        assert failed[nonce]["latency_ms"] == refused[nonce]["latency_ms"] and "value" not in failed[nonce]
    # 1212's first transaction was signed one sequence ahead (the SDK counts the refused 1206): refused at
    # CheckTx, never included; the SDK's retry landed, and it is still recorded under 1212.
    assert chain.state.broadcasts == len(included) + 1
    successes, failures = set(submitted), set(failed) | set(refused)
    assert not successes & failures
    assert successes | failures == set(windows)
    assert not [e for e in events if e["event"] in ("submission_unreported", "submission_unattributed")]

    # What the platform stores from the log, window by window.
    _import(cli, database_url, tmp_path, run, "backlog")
    stored = _stored(records, deployment.id)
    for nonce in windows:
        if nonce in payloads:
            status, prediction, tx_hash, latency = stored[(nonce, "submission")]
            assert (status, float(prediction), tx_hash) == ("success", nonce / 4, payloads[nonce].tx_hash)
            assert latency == predicted[nonce]["latency_ms"]
        elif nonce == 1194:
            status, prediction, tx_hash, _ = stored[(nonce, "submission")]
            assert (status, float(prediction), tx_hash) == ("error", 1194 / 4, rejected.tx_hash)
            assert stored[(nonce, "prediction")][0] == "success"
        else:
            assert stored[(nonce, "submission")][:3] == ("error", None, None)
            assert stored[(nonce, "prediction")][0] == ("timeout" if nonce == 1218 else "error")


@pytest.mark.slow
def test_a_runtime_restarted_against_a_backlog_records_each_window_once_under_its_own_nonce(
    chain, tmp_path, cli, database_url, records, deployment  # noqa: F811 - the chain fixture
):
    bundle = make_bundle(tmp_path / "bundle", SIMPLE_RUNNER, topic_id=7)
    env = live_env(chain, tmp_path, ALLORA_POLLING_INTERVAL="600")
    chain.open_windows(1188)
    first = _run_live(bundle, env, 1)
    assert [(e["nonce"], e["value"]) for e in first.events if e["event"] == "submission"] == [(1188, 297.0)]

    # While the pod is down, three more windows open; 1188's is still open (nobody closed it).
    chain.open_windows(1194, 1200, 1206)
    second = _run_live(bundle, env, 4)

    # The restarted SDK has no memory of 1188 and sends it again: the chain says "already submitted".
    assert {e["nonce"]: e["reason"] for e in second.events if e["event"] == "submission_skipped"} == {1188: "already_submitted"}
    submitted = _by_nonce(second.events, "submission")
    assert sorted(submitted) == [1194, 1200, 1206]
    included = {tx.tx_hash: tx for tx in chain.transactions()}
    for nonce, event in submitted.items():
        payload = included[event["tx_hash"]].payload
        assert payload is not None and payload.nonce == nonce and float(payload.values["y"]) == event["value"] == nonce / 4
    duplicate = [tx for tx in chain.transactions() if tx.code == 75]
    assert len(duplicate) == 1 and duplicate[0].payload is None
    assert not _by_nonce(second.events, "submission_failed")

    _import(cli, database_url, tmp_path, first, "first")
    _import(cli, database_url, tmp_path, second, "second")
    stored = _stored(records, deployment.id)
    payloads = {p.nonce: p for p in chain.payloads()}
    assert sorted(payloads) == [1188, 1194, 1200, 1206]
    assert {n: stored[(n, "submission")][:3] for n in payloads} == {
        n: ("success", str(n / 4), p.tx_hash) for n, p in payloads.items()
    }
    assert sorted(n for n, kind in stored if kind == "submission") == [1188, 1194, 1200, 1206]


# --- attribute() on the sequences the SDK produces that the live tests cannot reach in seconds ----------------

def _calls(*items: tuple) -> deque:
    return deque(SdkCall(nonce, ok, value, latency) for nonce, ok, value, latency in items)


def test_a_failure_without_a_nonce_belongs_to_the_oldest_call_not_yet_read():
    """A TxTimeoutError (the SDK gave up waiting for the block: 90 s and more) carries nothing: call order places it."""
    from allora_runtime.live import attribute

    class TxTimeoutError(Exception):
        pass

    calls = _calls((10, True, 2.5, 0.01), (16, True, 4.0, 0.02))
    first = attribute(TxTimeoutError(), calls)
    assert (first.nonce, first.value, first.latency, first.by) == (10, 2.5, 0.01, "call_order")
    second = attribute(TxTimeoutError(), calls)
    assert (second.nonce, second.value, second.by) == (16, 4.0, "call_order") and not calls
    assert attribute(TxTimeoutError(), calls).by == "unknown"


def test_a_refusal_and_a_transaction_name_their_window_and_drop_older_calls_whose_result_never_came():
    from allora_runtime.live import attribute

    calls = _calls((10, True, 2.5, 0.01), (16, False, None, 0.02), (22, True, 5.5, 0.03))
    refusal = attribute(PredictionRefused("exception", "boom", 16), calls)
    assert (refusal.nonce, refusal.by, [c.nonce for c in refusal.unreported]) == (16, "refusal", [10])
    # A success whose response carries no transaction (a node may leave it out) falls back to call order.
    plain = attribute(NS(submission=5.5, tx_result=NS(txhash="AB" * 32, code=0, tx=None)), calls)
    assert (plain.nonce, plain.value, plain.latency, plain.by) == (22, 5.5, 0.03, "call_order") and not calls


def test_a_result_no_call_explains_is_logged_once_and_never_as_a_result_line():
    """A result line needs a nonce (the platform stores by window): one with none would be refused by the reader."""
    from allora_runtime import live
    from allora_runtime.adapter import Adapter
    from allora_runtime.log import LOG
    from allora_runtime.metrics import Metrics

    adapter = Adapter(NS(name="run"), 1.0, Metrics(False), LOG, 7)  # no call recorded: nothing explains the result
    lines = []
    LOG.stream, saved = NS(write=lines.append, flush=lambda: None), LOG.stream
    try:
        live.report_result(RuntimeError("connection reset"), adapter)
    finally:
        LOG.stream = saved
    [line] = lines
    assert '"event": "submission_unattributed"' in line and '"result_event": "submission_failed"' in line and '"nonce"' not in line
