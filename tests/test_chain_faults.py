"""Bad input to the chain reader, found by trying issue 23 as a fresh operator (review-23): each fault's failing
value, against the chain stand-in (tests/fixtures/chain.py) and the real database."""

from __future__ import annotations

import asyncio

from allora_gitops.chain.store import chain_view, live_workers, record_worker_address
from tests.fixtures.chain import ChainStandIn, ChainState, chain  # noqa: F401 - the fixture
from tests.fixtures.runtime import TEST_ADDRESS
from tests.test_chain_reader import NAME, TOPIC, _status, watched  # noqa: F401 - the fixture


def test_a_mistyped_address_is_refused_by_its_checksum(watched, records, cli, database_url):  # noqa: F811
    """One character off keeps the allo1 + bech32 shape but not the checksum: the chain would refuse every query."""
    typo = TEST_ADDRESS[:-1] + ("q" if TEST_ADDRESS[-1] != "q" else "p")
    answer = cli("gitops", "chain", "set-address", "mean-reverter", typo, "--database-url", database_url)
    assert (answer.code, answer.out) == (2, "")
    assert answer.err == f"error: {typo!r} is not an Allora account address: its bech32 checksum does not match (a mistyped character?)\n"
    assert [w.address for w in live_workers(records.connection, name="mean-reverter")] == [None]  # nothing recorded
    from allora_gitops.chain.store import worker_address_of

    assert worker_address_of({"results": [{"worker": TEST_ADDRESS}, {"worker": typo}]}) == TEST_ADDRESS  # a runtime's report too


def test_an_endpoint_of_another_network_is_one_line_not_its_standing(watched, records, cli, database_url, monkeypatch):  # noqa: F811
    """$ALLORA_CHAIN_ENDPOINTS pointing testnet at a mainnet node: its standing would be another chain's."""
    from allora_gitops.chain.poller import ChainPoller, PollerSettings

    with ChainStandIn(ChainState(chain_id="allora-mainnet-1", topic_id=TOPIC)) as mainnet:
        mainnet.state.registered.add(TEST_ADDRESS)
        mainnet.next_window()
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet={mainnet.url}")
        answer = _status(cli, database_url)
        poller = ChainPoller(database_url, PollerSettings(interval=10, timeout=5, endpoints={"testnet": mainnet.url}))
        assert asyncio.run(poller.poll_once()) == 1
    wrong = (f"127.0.0.1:{mainnet.port} serves chain 'allora-mainnet-1', not 'allora-testnet-1':"
             " its endpoint in $ALLORA_CHAIN_ENDPOINTS belongs to another network")  # fmt: skip
    assert answer.code == 1 and answer.out.splitlines()[1:] == [f"  chain unreachable: {wrong}"]
    view = chain_view(records.connection, live_workers(records.connection, name=NAME)[0])
    assert view.states == ["unreachable"] and view.error == wrong and view.registered is None  # nothing of mainnet's kept


def test_numbers_no_node_would_send_are_one_line_and_cost_no_other_read(chain, watched, records, cli, database_url):  # noqa: F811
    """A score of 1e999999 ended `chain status` in "internal error (NumericValueOutOfRange)" and, in the poller,
    lost the whole round (every deployment's read); text that is no number was shown as "no score"."""
    from allora_gitops.chain.poller import ChainPoller, PollerSettings

    OTHER = "allo1368tawed8y6ap5h2kh67qa5a5puk4c7lq4n4n3"
    [bob] = live_workers(records.connection, name="mean-reverter")
    record_worker_address(records.connection, bob.deployment_id, OTHER, "admin")
    chain.next_window()
    host = f"127.0.0.1:{chain.port}"
    for score, said in (("1e999999", "'1e999999'"), ("NaN", "'NaN'"), ("nonsense", "'nonsense'")):
        chain.set_score(TEST_ADDRESS, score)
        answer = _status(cli, database_url)
        assert (answer.code, answer.err) == (1, "") and answer.out.splitlines()[1:] == [
            f"  chain unreachable: {host} answered a score EMA that is not a decimal number: {said}"
        ]
    chain.set_score(TEST_ADDRESS, "1e999999")
    chain.set_score(OTHER, "0.4")
    poller = ChainPoller(database_url, PollerSettings(interval=10, timeout=5, endpoints={"testnet": chain.url}))
    assert asyncio.run(poller.poll_once()) == 2 and poller.attempts == 2  # this worker's garbage: the other is still read
    mine, theirs = (chain_view(records.connection, w) for w in live_workers(records.connection) if w.name in (NAME, "mean-reverter"))
    assert mine.states == ["unreachable"] and "score EMA that is not a decimal number" in mine.error
    assert theirs.reachable and str(theirs.score_ema) == "0.4"  # the good read beside it is kept


def test_a_standing_the_database_cannot_store_is_stored_as_a_failed_read(watched, records):  # noqa: F811
    from decimal import Decimal

    from allora_gitops.chain.reader import Standing
    from allora_gitops.chain.store import store_observation

    [worker] = live_workers(records.connection, name=NAME)
    store_observation(records.connection, worker, Standing(True, 1006, 6, True, True, True, True, Decimal("1e999999"), None, None, 5))
    view = chain_view(records.connection, worker)
    assert view.states == ["unreachable"] and view.error == "the chain's answer could not be stored (NumericValueOutOfRange)"


def test_an_endpoint_without_a_host_or_with_a_bad_port_is_refused_with_the_variable_named():
    """grpc+http://127.0.0.1:notaport was taken, and every read then failed as "reading the chain failed: ValueError"."""
    import pytest

    from allora_gitops.chain.reader import endpoint_overrides
    from allora_gitops.errors import UsageError

    assert endpoint_overrides("testnet=grpc+https://node.example:9090,mainnet=grpc+https://node.example") == {
        "testnet": "grpc+https://node.example:9090", "mainnet": "grpc+https://node.example",
    }  # fmt: skip
    for url in ("grpc+http://127.0.0.1:notaport", "grpc+http://127.0.0.1:70000", "grpc+https://", "grpc+https://:9090"):
        with pytest.raises(UsageError) as raised:
            endpoint_overrides(f"testnet={url}")
        assert str(raised.value) == (
            "$ALLORA_CHAIN_ENDPOINTS: the endpoint of testnet is not grpc+https://HOST[:PORT] (a host, and a port of 1-65535)"
        ), url


def test_a_hanging_endpoint_costs_the_poller_one_timeout_per_round_not_one_per_deployment(watched, records, database_url):  # noqa: F811
    """Before, every deployment on the hanging network waited out its own timeout (1,000 deployments at 8 at a
    time and 10 s: a 21-minute round, the other networks' reads queued behind them); now the first failure
    stands for the network's remaining reads in that round, and each is still stored and backed off."""
    import socket

    from allora_gitops.chain.poller import ChainPoller, PollerSettings

    OTHER = "allo1368tawed8y6ap5h2kh67qa5a5puk4c7lq4n4n3"
    [bob] = live_workers(records.connection, name="mean-reverter")
    record_worker_address(records.connection, bob.deployment_id, OTHER, "admin")
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        url = f"grpc+http://127.0.0.1:{port}"
        poller = ChainPoller(database_url, PollerSettings(interval=10, concurrency=1, timeout=1, endpoints={"testnet": url}))
        assert asyncio.run(poller.poll_once()) == 2
    assert poller.attempts == 1
    errors = {v.name: (v.states, v.error) for v in (chain_view(records.connection, w) for w in live_workers(records.connection))}
    said = (["unreachable"], f"127.0.0.1:{port} did not answer within 1 s")
    assert errors == {NAME: said, "mean-reverter": said}
    assert {b.failures for b in poller.backoff.values()} == {1}


def test_an_endpoint_answering_something_other_than_grpc_is_said_so(watched, cli, database_url, monkeypatch):  # noqa: F811
    """An HTTP/1.1 server (a REST gateway's port, a proxy) was "cannot reach HOST: StreamTerminatedError"."""
    import socket
    import threading

    with socket.socket() as web:
        web.bind(("127.0.0.1", 0))
        web.listen(4)

        def answer() -> None:
            connection, _ = web.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        port = web.getsockname()[1]
        monkeypatch.setenv("ALLORA_CHAIN_ENDPOINTS", f"testnet=grpc+http://127.0.0.1:{port}")
        answered = _status(cli, database_url, "--timeout", "5")
    assert (answered.code, answered.err) == (1, "") and answered.out.splitlines()[1:] == [
        f"  chain unreachable: 127.0.0.1:{port} closed the connection without a gRPC answer"
        " (not a gRPC endpoint, plain text where TLS is expected, or the node went away)"
    ]


def test_a_release_waiting_for_review_beside_the_running_one_is_not_a_second_worker(
    chain, watched, records, cli, database_url, tmp_path  # noqa: F811
):
    """linear-forecaster 1.3.0 published for review while 1.2.0 runs: both releases were read, listed twice by
    `chain status`, and exported as two `allora_chain_*` series with the same labels on /metrics."""
    from allora_gitops.chain.metrics import render_metrics
    from allora_gitops.chain.store import chain_views
    from tests.test_db_records import SHA, bundle_args, deployment_args

    newer = records.register_bundle(**bundle_args(
        version="1.3.0", archive_url=f"s3://archives/bundles/{NAME}/1.3.0/{SHA}.tar.gz",
        manifest={"name": NAME, "version": "1.3.0", "allora": {"topic_id": TOPIC}},
    ))  # fmt: skip
    waiting = records.create_deployment(**deployment_args(newer.id, repo_branch=f"deploy/{NAME}/testnet/1.3.0"))
    record_worker_address(records.connection, waiting.id, TEST_ADDRESS, "runtime")
    records.connection.execute(
        "UPDATE deployments SET live_release_id = %s WHERE id = (SELECT deployment_id FROM releases WHERE id = %s)", (watched.id, watched.id)
    )
    chain.next_window()
    answer = _status(cli, database_url)
    assert answer.code == 0 and answer.out.count(f"{NAME} on testnet") == 1, answer.out
    assert [w.deployment_id for w in live_workers(records.connection, name=NAME)] == [watched.id]  # the one that runs
    metrics = render_metrics(chain_views(records.connection, live_workers(records.connection))).decode()
    assert [line for line in metrics.splitlines() if line.startswith("allora_chain_up{")] == [
        f'allora_chain_up{{allora_deployment="{NAME}-testnet",allora_model="{NAME}",allora_network="testnet"}} 1.0'
    ]
    records.connection.execute("UPDATE deployments SET live_release_id = NULL")  # none settled yet: the most recent
    assert [w.deployment_id for w in live_workers(records.connection, name=NAME)] == [waiting.id]


def test_chain_status_reads_every_deployment_of_a_network_through_one_connection(chain, watched, records, cli, database_url):  # noqa: F811
    """It opened one client (one HTTP/2 connection) per deployment, all at once: with a thousand deployments, a
    thousand connections to a public node; now one per network, at most 8 reads at a time, as the poller."""
    OTHER = "allo1368tawed8y6ap5h2kh67qa5a5puk4c7lq4n4n3"
    [bob] = live_workers(records.connection, name="mean-reverter")
    record_worker_address(records.connection, bob.deployment_id, OTHER, "admin")
    chain.next_window()
    before = chain.connections
    answer = cli("gitops", "chain", "status", "--database-url", database_url)
    assert answer.code == 0 and answer.out.count("  eligible: registered") == 1 and "not registered on topic" in answer.out
    assert chain.calls("GetWorkerSubmissionWindowStatus") == 2 and chain.connections - before == 1


def test_a_poll_interval_under_a_second_is_refused_not_a_busy_loop():
    """ALLORA_CHAIN_POLL_INTERVAL=0.001 was taken: a round (a database connection, every deployment read) each millisecond."""
    import pytest

    from allora_gitops.chain.poller import PollerSettings
    from allora_gitops.errors import UsageError

    assert PollerSettings.from_environment({"ALLORA_CHAIN_POLL_INTERVAL": "0"}).interval == 0  # off
    assert PollerSettings.from_environment({"ALLORA_CHAIN_POLL_INTERVAL": "1"}).interval == 1
    with pytest.raises(UsageError) as raised:
        PollerSettings.from_environment({"ALLORA_CHAIN_POLL_INTERVAL": "0.001"})
    assert str(raised.value) == "$ALLORA_CHAIN_POLL_INTERVAL must be 0 (off) or at least 1 (seconds)"


def test_a_mnemonic_or_key_pasted_as_the_address_is_never_echoed(watched, cli, database_url):  # noqa: F811
    """`chain set-address NAME "<the wallet's mnemonic>"` (the wallet, not its address) quoted it back in full."""
    mnemonic = "abandon " * 11 + "about"
    key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    for secret in (mnemonic, key):
        answer = cli("gitops", "chain", "set-address", "mean-reverter", secret, "--database-url", database_url)
        assert answer.code == 2 and answer.err == (
            "error: this looks like a wallet's key or mnemonic (not shown), not its address: give the public address (allo1…)\n"
        )
        assert "abandon" not in answer.out + answer.err and key not in answer.out + answer.err
