"""The live path end to end (issue 23 item 2): bootstrap.pyz without --dry-run, a test mnemonic, the real
allora-sdk worker → the chain stand-in (tests/fixtures/chain.py: the SDK's gRPC protocol, every transaction's
signature verified) → results reported to the real platform server (uvicorn, PostgreSQL) with the pod's
projected ServiceAccount token → ``allora-gitops status``.

Windows are short epochs driven by the test (``next_window``: one window open at a time, as a topic opens
them), so each poll of the worker finds one window and the test takes about a second per window.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.fixtures.chain import chain, live_env  # noqa: F401 - the fixture
from tests.fixtures.runtime import EXIT_OK, TEST_ADDRESS, RunningBootstrap, make_bundle
from tests.test_api_results import key, platform  # noqa: F401 - the fixtures
from tests.test_podidentity import projected_token

NAME = "linear-forecaster"
WINDOWS = 20
TOPIC = 69  # the deployment's (tests/test_db_records.deployment_args)
OUTCOMES = ("submission", "submission_failed", "submission_skipped")


def _runner(failing: set[int]) -> str:
    return f"""
def run(nonce):
    if nonce in {sorted(failing)!r}:
        raise ValueError(f"no data for window {{nonce}}")
    return nonce / 8 + 0.125
"""


def _outcome(run: RunningBootstrap, nonce: int, timeout: float = 60) -> None:
    run.wait_for(lambda events: any(e["event"] in OUTCOMES and e.get("nonce") == nonce for e in events), timeout=timeout)


def drive_windows(chain, run: RunningBootstrap, count: int) -> list[int]:  # noqa: F811
    """Open ``count`` windows one epoch apart, each once the runtime has an outcome for the previous one."""
    nonces = []
    for _ in range(count):
        nonce = chain.next_window()
        nonces.append(nonce)
        _outcome(run, nonce)
    return nonces


@pytest.mark.slow
def test_twenty_live_windows_four_failing_land_sixteen_verified_transactions_and_status_shows_them(
    chain, platform, key, tmp_path, cli, database_url  # noqa: F811 - the fixtures
):
    server, deployment, _ = platform
    chain.state.topic_id = TOPIC
    first = chain.state.height + chain.state.epoch_length
    windows = [first + i * chain.state.epoch_length for i in range(WINDOWS)]
    failing = {windows[2], windows[7], windows[12], windows[17]}
    token_file = tmp_path / "token"
    token_file.write_text(projected_token(key, "cluster-key"))
    bundle = make_bundle(tmp_path / "bundle", _runner(failing), name=NAME, topic_id=TOPIC)
    env = live_env(
        chain, tmp_path, ALLORA_POLLING_INTERVAL="1",
        ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file),
    )  # fmt: skip
    run = RunningBootstrap(bundle, env=env)
    try:
        assert drive_windows(chain, run, WINDOWS) == windows
        run.wait_for(lambda events: sum(e["event"] in OUTCOMES for e in events) >= WINDOWS, timeout=30)
    except BaseException:
        run.kill()
        raise
    code, _ = run.stop(signal.SIGTERM, timeout=30)
    assert code == EXIT_OK, "".join(run.lines)
    events = run.events

    # The chain: 16 payloads, each in a transaction whose signature the stand-in verified at CheckTx, carrying the
    # model's value for its window and topic, signed by the test wallet. Nothing was signed for a failing window.
    payloads = {p.nonce: p for p in chain.payloads()}
    assert sorted(payloads) == sorted(set(windows) - failing)
    for nonce, payload in payloads.items():
        assert (payload.topic_id, payload.worker, float(payload.values["y"])) == (TOPIC, TEST_ADDRESS, nonce / 8 + 0.125)
    # The runtime logged the chain's hashes, window by window.
    submitted = {e["nonce"]: e for e in events if e["event"] == "submission"}
    assert {n: e["tx_hash"] for n, e in submitted.items()} == {n: p.tx_hash for n, p in payloads.items()}
    failed = {e["nonce"]: e for e in events if e["event"] == "submission_failed"}
    assert sorted(failed) == sorted(failing) and all("tx_hash" not in e for e in failed.values())
    stopped = [e for e in events if e["event"] == "results_reporter_stopped"][-1]
    assert (stopped["dropped"], stopped["pending"]) == (0, 0), stopped

    # The platform: what `status` shows came through POST /api/v1/results.
    status = cli("gitops", "status", NAME, "--database-url", database_url, "--json", "--last", "60")
    assert status.code == 0, status.err
    [row] = json.loads(status.out)
    [hour] = [w for w in row["results"]["windows"] if w["window"] == "1h" and w["kind"] == "submission"]
    assert (hour["total"], hour["success"], hour["error"]) == (WINDOWS, 16, 4)
    recent = [r for r in row["results"]["recent"] if r["kind"] == "submission"]
    assert {r["nonce"]: r["tx_hash"] for r in recent if r["status"] == "success"} == {n: p.tx_hash for n, p in payloads.items()}
    assert sorted(r["nonce"] for r in recent if r["status"] == "error") == sorted(failing)
    text = cli("gitops", "status", NAME, "--database-url", database_url, "--last", "60")
    assert all(p.tx_hash in text.out for p in payloads.values())
    # The runtime's wallet address came with its results: the platform reads the chain for it (chain/store.py).
    from allora_gitops.db import open_records

    with open_records(database_url) as records:
        worker = records.connection.execute("SELECT address, source FROM deployment_workers WHERE deployment_id = %s", (deployment.id,)).fetchone()
    assert worker == (TEST_ADDRESS, "runtime")


@pytest.mark.slow
def test_a_chain_answering_only_emissions_v9_is_one_error_naming_the_version(tmp_path):
    from tests.fixtures.chain import ChainStandIn, ChainState
    from tests.fixtures.runtime import EXIT_RUNTIME, run_bootstrap

    with ChainStandIn(ChainState(emissions_version="v9")) as old:
        old.fund(TEST_ADDRESS, 10**12)
        bundle = make_bundle(tmp_path / "bundle", _runner(set()), topic_id=old.state.topic_id)
        run = run_bootstrap(bundle, env=live_env(old, tmp_path, ALLORA_POLLING_INTERVAL="1"))
    assert run.code == EXIT_RUNTIME, run.out + run.err
    error = run.one("runtime_error")["message"]
    assert error.startswith("the chain does not serve emissions v10, the only version allora-sdk 1.3.0 speaks (it answered UNIMPLEMENTED")
    assert not run.of("connection_retry") and "Traceback" not in run.err


@pytest.mark.slow
def test_a_wallet_not_whitelisted_stops_with_the_chains_reason_and_submits_nothing(chain, tmp_path):  # noqa: F811
    from tests.fixtures.runtime import EXIT_RUNTIME, run_bootstrap

    chain.state.whitelist = {"allo1someoneelse"}
    chain.next_window()
    bundle = make_bundle(tmp_path / "bundle", _runner(set()), topic_id=chain.state.topic_id)
    run = run_bootstrap(bundle, env=live_env(chain, tmp_path, ALLORA_POLLING_INTERVAL="1"))
    assert run.code == EXIT_RUNTIME, run.out + run.err
    assert run.one("runtime_error")["message"] == (
        f"the wallet {TEST_ADDRESS} may not submit on topic {chain.state.topic_id}: the chain says it is not whitelisted"
        " (can_submit_worker_payload is false); ask the topic's creator to whitelist it"
    )
    assert not chain.payloads() and not run.of("prediction")


@pytest.mark.slow
def test_the_chain_going_away_mid_run_is_survived_and_the_next_window_submitted(chain, tmp_path):  # noqa: F811
    bundle = make_bundle(tmp_path / "bundle", _runner(set()), topic_id=chain.state.topic_id)
    run = RunningBootstrap(bundle, env=live_env(chain, tmp_path, ALLORA_POLLING_INTERVAL="1"))
    try:
        first = chain.next_window()
        _outcome(run, first, timeout=90)
        chain.stop()  # the node goes away: polls fail for a while
        time.sleep(6)
        chain.start()  # and comes back on the same address
        second = chain.next_window()
        _outcome(run, second, timeout=90)
        assert run.proc.poll() is None  # still running: no exit, no crash loop
    except BaseException:
        run.kill()
        raise
    code, _ = run.stop(signal.SIGTERM, timeout=30)
    assert code == EXIT_OK, "".join(run.lines)
    assert sorted(p.nonce for p in chain.payloads()) == [first, second]
    assert [e["nonce"] for e in run.events if e["event"] == "submission"] == [first, second]
    assert not [e for e in run.events if e["event"] == "runtime_error"]
