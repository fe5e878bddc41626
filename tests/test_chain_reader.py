"""The platform reads the chain (issue 23 item 3) against the chain stand-in (tests/fixtures/chain.py): the
reader's queries through allora-sdk's own client, the derived state in `chain status`, the API, the page and
/metrics, the poller's backoff and leadership, and an unreachable chain."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import datetime, timezone

import httpx
import pytest

from allora_gitops.chain.poller import ChainPoller, PollerSettings
from allora_gitops.chain.store import chain_view, live_workers, record_worker_address
from allora_gitops.db.results import record_results
from allora_gitops.result_log import ResultRow
from tests.fixtures.chain import chain  # noqa: F401 - the fixture
from tests.fixtures.platform import start_owned_platform, stop_platform
from tests.fixtures.runtime import TEST_ADDRESS
from tests.test_podidentity import create_two_deployments
from tests.test_web import sign_in

TOPIC = 69  # tests/test_db_records.deployment_args
NAME = "linear-forecaster"
OTHER_ADDRESS = "allo1368tawed8y6ap5h2kh67qa5a5puk4c7lq4n4n3"  # a valid bech32 address (checksum included) of no wallet here


@pytest.fixture
def watched(chain, records, monkeypatch):  # noqa: F811
    """linear-forecaster live on testnet, its worker (the test wallet) registered on the stand-in's topic 69,
    the platform's testnet endpoint the stand-in."""
    a, _ = create_two_deployments(records)
    chain.state.topic_id = TOPIC
    chain.state.chain_id = "allora-testnet-1"  # the reader checks the node's chain id against the network's
    chain.state.registered.add(TEST_ADDRESS)
    record_worker_address(records.connection, a.id, TEST_ADDRESS, "runtime")
    monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet={chain.url}")
    monkeypatch.setenv("ALLORA_CHAIN_POLL_INTERVAL", "0")  # servers started here read nothing themselves
    return a


def _succeed(records, deployment, *nonces: int) -> None:
    now = datetime.now(timezone.utc)
    rows = [ResultRow("submission", n, "success", now, value="1.5", tx_hash=f"{n:064X}") for n in nonces]
    record_results(records.connection, deployment.id, rows)


def _status(cli, database_url, *args: str):
    return cli("gitops", "chain", "status", NAME, "--database-url", database_url, *args)


def test_each_condition_the_chain_reports_is_said_by_chain_status_the_api_the_page_and_metrics(
    chain, watched, records, cli, database_url, tmp_path  # noqa: F811
):
    w0 = chain.next_window()
    chain.set_score(TEST_ADDRESS, "0.52")
    chain.set_lowest_score("0.31")
    chain.set_reward_fraction(TEST_ADDRESS, "0.0125")
    _succeed(records, watched, w0)
    healthy = _status(cli, database_url)
    assert healthy.code == 0, healthy.err
    assert healthy.out.splitlines()[:2] == [
        f"{NAME} on testnet (topic {TOPIC}, worker {TEST_ADDRESS})", f"  eligible: registered, whitelisted, topic {TOPIC} active",
    ]  # fmt: skip
    assert f"score EMA 0.52 (topic's lowest 0.31), reward fraction 0.0125, balance {10**12} uallo, window open at nonce {w0}" in healthy.out

    chain.state.whitelist = {"allo1someoneelse"}
    assert f"not whitelisted on topic {TOPIC}: the chain refuses its payloads" in _status(cli, database_url).out
    chain.state.whitelist = None
    chain.set_topic_active(False)
    assert f"topic {TOPIC} is inactive: it opens no windows" in _status(cli, database_url).out
    chain.set_topic_active(True)
    chain.set_score(TEST_ADDRESS, "0.27")
    falling = _status(cli, database_url)
    assert "score EMA 0.27 is below the topic's lowest active score 0.31: at risk of being dropped" in falling.out

    # The model submits three more windows, then stops: five windows close with nothing recorded.
    for _ in range(3):
        _succeed(records, watched, chain.next_window())
    for _ in range(5):
        chain.next_window()
    chain.next_window()  # open now: not missed yet
    missed = json.loads(_status(cli, database_url, "--json").out)[0]
    assert (missed["windows_closed"], missed["windows_submitted"], missed["missed_windows"]) == (9, 4, 5)
    assert "missed_windows" in missed["states"] and "score_below_lowest" in missed["states"]

    # All at once, then shown by the server: not whitelisted, topic inactive, score under the lowest, 5 missed.
    chain.state.whitelist = {"allo1someoneelse"}
    chain.set_topic_active(False)
    final = json.loads(_status(cli, database_url, "--json").out)[0]
    assert final["states"] == ["topic_inactive", "not_whitelisted", "score_below_lowest", "missed_windows"]
    assert final["missed_windows"] == 6  # an inactive topic's window is not open: the latest one is counted too
    status = cli("gitops", "status", NAME, "--database-url", database_url)
    assert f"  chain: {'; '.join(final['summary'])}" in status.out.splitlines()
    [row] = json.loads(cli("gitops", "status", NAME, "--database-url", database_url, "--json").out)
    assert row["chain"]["states"] == final["states"]
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": NAME})
    try:
        api = httpx.get(f"{server.url}/api/deployments/{watched.id}", headers=server.headers(tokens["alice"]), timeout=10).json()
        assert api["chain"]["states"] == final["states"] and api["chain"]["missed_windows"] == 6
        assert api["chain"]["score_ema"] == "0.27" and api["chain"]["address"] == TEST_ADDRESS
        with httpx.Client(base_url=server.url, timeout=10) as client:
            sign_in(client, tokens["alice"])
            page = client.get(f"/deployments/{watched.id}").text
        for line in final["summary"]:
            assert line.replace("'", "&#39;") in page or line in page, line
        assert 'id="chain-score-chart"' in page and f"of 10 closed since" in page
        metrics = httpx.get(f"{server.url}/metrics", headers=server.headers(tokens["alice"]), timeout=10).text
    finally:
        stop_platform(server)
    from prometheus_client.parser import text_string_to_metric_families

    exported = {s.name: (s.labels, s.value) for f in text_string_to_metric_families(metrics) for s in f.samples}
    labels = {"allora_deployment": f"{NAME}-testnet", "allora_model": NAME, "allora_network": "testnet"}
    assert {name: exported[name] for name in (
        "allora_chain_up", "allora_chain_registered", "allora_chain_whitelisted", "allora_chain_topic_active",
        "allora_chain_score_ema", "allora_chain_topic_lowest_score", "allora_chain_missed_windows", "allora_chain_balance_uallo",
    )} == {name: (labels, value) for name, value in (
        ("allora_chain_up", 1.0), ("allora_chain_registered", 1.0), ("allora_chain_whitelisted", 0.0),
        ("allora_chain_topic_active", 0.0), ("allora_chain_score_ema", 0.27), ("allora_chain_topic_lowest_score", 0.31),
        ("allora_chain_missed_windows", 6.0), ("allora_chain_balance_uallo", 1e12),
    )}  # fmt: skip


def test_an_unreachable_chain_is_one_line_within_the_timeout(watched, cli, database_url, monkeypatch):
    import allora_sdk.rpc_client.client  # noqa: F401 - imported once, so the timing below is the read's

    with socket.socket() as silent:  # accepts connections and never answers: a chain that hangs
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet=grpc+http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        hung = _status(cli, database_url, "--timeout", "1")
        took = time.monotonic() - started
    assert hung.code == 1 and took < 5
    lines = hung.out.splitlines()
    assert lines[1].startswith("  chain unreachable: 127.0.0.1:") and lines[1].endswith("did not answer within 1 s") and len(lines) == 2

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet=grpc+http://127.0.0.1:{closed.getsockname()[1]}")
        refused = _status(cli, database_url, "--timeout", "1")
    assert refused.code == 1 and "  chain unreachable: cannot reach 127.0.0.1:" in refused.out


def test_a_chain_not_upgraded_is_one_line_naming_the_version(watched, records, cli, database_url, monkeypatch):
    from tests.fixtures.chain import ChainStandIn, ChainState

    with ChainStandIn(ChainState(emissions_version="v9", topic_id=TOPIC)) as old:
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet={old.url}")
        answer = _status(cli, database_url)
    assert answer.code == 1
    assert answer.out.splitlines()[1] == (
        f"  chain unreachable: 127.0.0.1:{old.port} does not serve emissions v10 (allora-sdk 1.3.0 speaks v10 only;"
        " the chain may not be upgraded yet)"
    )


def test_the_poller_backs_off_per_deployment_and_only_one_replica_leads(chain, watched, records, database_url):  # noqa: F811
    now = [1000.0]
    settings = PollerSettings(interval=10, timeout=2, max_backoff=25, endpoints={"testnet": chain.url})
    leader, other = ChainPoller(database_url, settings, clock=lambda: now[0]), ChainPoller(database_url, settings)
    try:
        assert leader._lead() and not other._lead() and leader._lead()  # held on its own connection, kept
        chain.next_window()
        assert asyncio.run(leader.poll_once()) == 1 and chain.calls("GetWorkerSubmissionWindowStatus") == 1
        chain.stop()
        attempts = []
        for step in range(8):  # down: read at t=0 (fails), t=10 (fails), then every 25 s at most
            attempts.append(asyncio.run(leader.poll_once()))
            now[0] += 10
        assert attempts == [1, 1, 0, 1, 0, 0, 1, 0]
        view = chain_view(records.connection, live_workers(records.connection, name=NAME)[0])
        assert view.states == ["unreachable"] and view.summary[0].startswith("chain unreachable: cannot reach 127.0.0.1:")
        assert view.registered is True and view.last_reachable_at is not None  # the last standing, said as such
        chain.start()
        now[0] += 25
        assert asyncio.run(leader.poll_once()) == 1 and chain.calls("GetWorkerSubmissionWindowStatus") >= 1
        assert asyncio.run(leader.poll_once()) == 1  # back: read every round again
        leader._release()
        assert other._lead()  # the lock went with the leader's session
    finally:
        leader.stop()
        other.stop()


@pytest.mark.slow
def test_a_hanging_chain_never_slows_the_server(watched, records, database_url, tmp_path, monkeypatch):
    """The poller's read hangs on a chain that accepts and never answers; the API answers meanwhile, and the
    read ends as a stored failure once its timeout passes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.settimeout(90)  # the server imports the SDK first
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet=grpc+http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("ALLORA_CHAIN_POLL_INTERVAL", "1")
        monkeypatch.setenv("ALLORA_CHAIN_TIMEOUT", "20")
        server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": NAME})
        try:
            reading, _ = silent.accept()  # the poller is now inside its read
            with reading:
                for _ in range(5):
                    started = time.monotonic()
                    answer = httpx.get(f"{server.url}/api/deployments/{watched.id}", headers=server.headers(tokens["alice"]), timeout=10)
                    assert answer.status_code == 200 and time.monotonic() - started < 5
                assert records.connection.execute("SELECT count(*) FROM chain_observations").fetchone()[0] == 0  # still reading
                deadline = time.monotonic() + 60
                while not records.connection.execute("SELECT count(*) FROM chain_observations").fetchone()[0]:
                    assert time.monotonic() < deadline, server.log.read_text()
                    time.sleep(0.5)
        finally:
            stop_platform(server)
    [(reachable, error)] = records.connection.execute("SELECT reachable, error FROM chain_observations").fetchall()
    assert not reachable and error.endswith("did not answer within 20 s")


def test_metrics_need_a_token_and_show_a_user_only_their_own_deployments(chain, watched, records, database_url, tmp_path):  # noqa: F811
    from datetime import timedelta

    from allora_gitops.chain.reader import Standing
    from allora_gitops.chain.store import store_observation

    [mine] = live_workers(records.connection, name=NAME)
    [theirs] = live_workers(records.connection, name="mean-reverter")
    record_worker_address(records.connection, theirs.deployment_id, OTHER_ADDRESS, "admin")
    standing = Standing(True, 1006, 6, True, True, True, True, None, None, None, 5)
    store_observation(records.connection, mine, standing)
    store_observation(records.connection, live_workers(records.connection, name="mean-reverter")[0], standing)
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": NAME, "bob": "mean-reverter"})
    try:
        admin = server.token("root", admin=True)
        expired = server.token("alice", expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))

        def deployments(token):
            answer = httpx.get(f"{server.url}/metrics", headers=server.headers(token) if token else {}, timeout=10)
            if answer.status_code != 200:
                return answer.status_code
            return sorted(line.split('allora_deployment="')[1].split('"')[0] for line in answer.text.splitlines() if line.startswith("allora_chain_up{"))

        assert deployments(None) == deployments("agp_0123abcd_" + "x" * 43) == deployments(expired) == 401
        assert deployments(tokens["alice"]) == [f"{NAME}-testnet"]
        assert deployments(tokens["bob"]) == ["mean-reverter-testnet"]
        assert deployments(admin) == ["linear-forecaster-testnet", "mean-reverter-testnet"]
    finally:
        stop_platform(server)


def test_an_admins_address_is_used_until_the_runtime_reports_its_own_and_bad_input_is_one_line(watched, records, cli, database_url):
    other = OTHER_ADDRESS
    [bob] = [w for w in live_workers(records.connection) if w.name == "mean-reverter"]
    assert bob.address is None
    assert chain_view(records.connection, bob).states == ["no_address"]
    recorded = cli("gitops", "chain", "set-address", "mean-reverter", other, "--database-url", database_url)
    assert (recorded.code, recorded.out) == (0, f"mean-reverter on testnet: worker {other}\n")
    assert record_worker_address(records.connection, bob.deployment_id, TEST_ADDRESS, "runtime")  # the runtime's replaces it
    kept = cli("gitops", "chain", "set-address", "mean-reverter", other, "--database-url", database_url)
    assert kept.out == f"mean-reverter on testnet: worker {other} (unchanged: the runtime's report is kept)\n"
    assert [w.address for w in live_workers(records.connection, name="mean-reverter")] == [TEST_ADDRESS]

    bad = cli("gitops", "chain", "set-address", "mean-reverter", "cosmos1abc", "--database-url", database_url)
    assert bad.code == 2 and bad.err == "error: 'cosmos1abc' is not an Allora account address (allo1 followed by 38 bech32 characters)\n"
    missing = cli("gitops", "chain", "status", "no-such-model", "--database-url", database_url)
    assert (missing.code, missing.err) == (1, "error: no-such-model has no live deployment\n")
    with pytest.raises(ValueError):
        record_worker_address(records.connection, bob.deployment_id, "allo1" + "b" * 38, "runtime")  # "b" is not bech32


def test_poller_settings_come_from_the_environment_and_bad_values_name_the_variable():
    from allora_gitops.errors import UsageError

    settings = PollerSettings.from_environment({
        "ALLORA_CHAIN_POLL_INTERVAL": "30", "ALLORA_CHAIN_POLL_CONCURRENCY": "2", "ALLORA_CHAIN_TIMEOUT": "4",
        "ALLORA_CHAIN_RETENTION_HOURS": "24", "ALLORA_CHAIN_ENDPOINTS": "testnet=grpc+http://127.0.0.1:9090, devnet=grpc+https://n:443",
        "ALLORA_CHAIN_LOCK_DATABASE_URL": "postgresql://direct/db",
    })  # fmt: skip
    assert (settings.interval, settings.concurrency, settings.timeout, settings.retention.total_seconds()) == (30, 2, 4, 86400)
    assert settings.endpoints == {"testnet": "grpc+http://127.0.0.1:9090", "devnet": "grpc+https://n:443"}
    assert settings.lock_database_url == "postgresql://direct/db" and PollerSettings.from_environment({}).interval == 60
    for env, message in (
        ({"ALLORA_CHAIN_POLL_INTERVAL": "soon"}, "$ALLORA_CHAIN_POLL_INTERVAL must be a number, not 'soon'"),
        ({"ALLORA_CHAIN_TIMEOUT": "0"}, "$ALLORA_CHAIN_TIMEOUT must be at least 0.1"),
        ({"ALLORA_CHAIN_ENDPOINTS": "testnet=rest+https://n"}, "$ALLORA_CHAIN_ENDPOINTS: the endpoint of testnet must be grpc+https:// or grpc+http://"),
        ({"ALLORA_CHAIN_ENDPOINTS": "testnet=grpc+http://a:1,https://user:pw@n"}, "$ALLORA_CHAIN_ENDPOINTS: entry 2 is not NETWORK=grpc+https://HOST:PORT"),
    ):
        with pytest.raises(UsageError) as raised:
            PollerSettings.from_environment(env)
        assert str(raised.value) == message


def test_an_error_text_that_looks_like_a_secret_is_withheld_and_the_read_still_recorded(watched, records):
    from allora_gitops.chain.store import WITHHELD, store_observation

    [worker] = live_workers(records.connection, name=NAME)
    leaked = "node said: abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
    store_observation(records.connection, worker, None, leaked)
    view = chain_view(records.connection, worker)
    assert view.states == ["unreachable"] and view.error == WITHHELD


def test_the_poller_ends_quietly_while_the_process_exits(tmp_path):
    """``serve`` exits through its exit hooks (the embedded PostgreSQL stops there, which takes a while): the
    poller's thread must not die with a traceback once the interpreter refuses new executor work."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    script = f"""
import atexit, time
from allora_gitops.chain.poller import ChainPoller, PollerSettings
ChainPoller("postgresql://nobody@/none?host={tmp_path}", PollerSettings(interval=0.05)).start()
atexit.register(time.sleep, 1.0)  # an exit hook that takes a while, as stopping PostgreSQL does
time.sleep(0.3)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
