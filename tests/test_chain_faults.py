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
