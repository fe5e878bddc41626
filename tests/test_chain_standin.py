"""The chain stand-in (tests/fixtures/chain.py) checks transactions as a node would: the SDK's own client signs a
payload that lands; a replay, a bit flipped in the signature, another chain id or a payload for a closed window do not."""

from __future__ import annotations

import asyncio
import hashlib

from tests.fixtures.chain import ChainStandIn, chain  # noqa: F401 - the fixture
from tests.fixtures.runtime import TEST_ADDRESS, TEST_MNEMONIC


async def _submit(stand_in: ChainStandIn, nonce: int, value: float):
    """One InsertWorkerPayload through allora-sdk's own client (signed by cosmpy, sent over grpclib): the
    ``TxResponse``, or the SDK's ``TxError`` when the chain's code is not 0."""
    from allora_sdk import AlloraNetworkConfig, AlloraWalletConfig, LocalWallet
    from allora_sdk.rpc_client.client import AlloraRPCClient
    from allora_sdk.rpc_client.dec_canonical import canonicalize_dec
    from allora_sdk.rpc_client.protos.emissions.v10 import InputLabeledValue

    network = AlloraNetworkConfig(chain_id=stand_in.state.chain_id, url=stand_in.url, websocket_url=None)
    client = AlloraRPCClient(wallet=AlloraWalletConfig(wallet=LocalWallet.from_mnemonic(TEST_MNEMONIC, "allo")), network=network)
    try:
        pending = await client.emissions.tx.insert_worker_payload(
            topic_id=stand_in.state.topic_id, inference_value=[InputLabeledValue(label="y", value=canonicalize_dec(value))], nonce=nonce,
        )  # fmt: skip
        try:
            return await asyncio.wait_for(pending.wait(), 60)
        except Exception as exc:  # noqa: BLE001 - TxError: what the test reads
            return exc
    finally:
        await client.close()


async def _broadcast(stand_in: ChainStandIn, tx_bytes: bytes):
    from grpclib.client import Channel

    from allora_sdk.rpc_client.protos.cosmos.tx.v1beta1 import BroadcastMode, BroadcastTxRequest, ServiceStub

    channel = Channel("127.0.0.1", stand_in.port)
    try:
        answer = await ServiceStub(channel).broadcast_tx(BroadcastTxRequest(tx_bytes=tx_bytes, mode=BroadcastMode.SYNC))
        return answer.tx_response
    finally:
        channel.close()


def test_a_payload_signed_by_the_sdk_lands_once_and_tampered_or_replayed_bytes_are_refused(chain):  # noqa: F811
    chain.open_windows(1188)
    response = asyncio.run(_submit(chain, 1188, 297.25))
    [tx] = chain.transactions()
    assert response.code == 0 and response.txhash == tx.tx_hash == hashlib.sha256(tx.tx_bytes).hexdigest().upper()
    assert (tx.payload.nonce, tx.payload.values, tx.payload.worker, tx.signer) == (1188, {"y": "297.25"}, TEST_ADDRESS, TEST_ADDRESS)
    assert chain.account(TEST_ADDRESS).sequence == 1 and response.tx.type_url == "/cosmos.tx.v1beta1.Tx"

    replay = asyncio.run(_broadcast(chain, tx.tx_bytes))
    assert (replay.code, replay.codespace) == (32, "sdk") and "account sequence mismatch, expected 1, got 0" in replay.raw_log

    from allora_sdk.rpc_client.protos.cosmos.tx.v1beta1 import TxRaw

    raw = TxRaw.parse(tx.tx_bytes)
    raw.signatures = [raw.signatures[0][:-1] + bytes([raw.signatures[0][-1] ^ 1])]
    forged = asyncio.run(_broadcast(chain, bytes(raw)))
    assert forged.code == 4 and "signature verification failed" in forged.raw_log
    assert len(chain.transactions()) == 1 and chain.account(TEST_ADDRESS).sequence == 1


def test_the_signature_covers_the_chain_id_and_a_closed_window_takes_no_payload(chain):  # noqa: F811
    chain.open_windows(1194)
    asyncio.run(_submit(chain, 1194, 1.5))
    signed_here = chain.transactions()[0].tx_bytes
    with ChainStandIn() as other:
        other.state.chain_id = "allora-other-1"
        other.fund(TEST_ADDRESS, 10**12)  # the same account number (1): only the chain id differs
        elsewhere = asyncio.run(_broadcast(other, signed_here))
        assert elsewhere.code == 4 and not other.transactions()

    closed = asyncio.run(_submit(chain, 1200, 2.5))  # never opened
    [_, failed] = chain.transactions()
    assert closed.code == 40 and failed.code == 40 and failed.payload is None and closed.tx_hash == failed.tx_hash


def test_a_second_payload_for_a_window_is_already_submitted(chain):  # noqa: F811
    nonce = 1206
    chain.open_windows(nonce)
    asyncio.run(_submit(chain, nonce, 3.0))
    again = asyncio.run(_submit(chain, nonce, 4.0))
    assert type(again).__name__ == "TxError" and again.code == 75 and "already submitted" in again.message
    assert [p.values for p in chain.payloads()] == [{"y": "3.0"}]


async def _read(stand_in: ChainStandIn, address: str) -> dict:
    """What the platform's reader asks, through allora-sdk's own read-only client (``wallet=None``)."""
    from allora_sdk import AlloraNetworkConfig
    from allora_sdk.rpc_client.client import AlloraRPCClient
    from allora_sdk.rpc_client.protos.cosmos.bank.v1beta1 import QueryBalanceRequest
    from allora_sdk.rpc_client.protos.emissions import v10

    network = AlloraNetworkConfig(chain_id=stand_in.state.chain_id, url=stand_in.url, websocket_url=None)
    client = AlloraRPCClient(wallet=None, network=network)
    topic = stand_in.state.topic_id
    try:
        q = client.emissions.query
        window = await q.get_worker_submission_window_status(v10.GetWorkerSubmissionWindowStatusRequest(topic_id=topic, address=address))
        can = await q.can_submit_worker_payload(v10.CanSubmitWorkerPayloadRequest(topic_id=topic, address=address))
        registered = await q.is_worker_registered_in_topic_id(v10.IsWorkerRegisteredInTopicIdRequest(topic_id=topic, address=address))
        active = await q.is_topic_active(v10.IsTopicActiveRequest(topic_id=topic))
        got = await q.get_topic(v10.GetTopicRequest(topic_id=topic))
        ema = await q.get_inferer_score_ema(v10.GetInfererScoreEmaRequest(topic_id=topic, inferer=address))
        lowest = await q.get_current_lowest_inferer_score(v10.GetCurrentLowestInfererScoreRequest(topic_id=topic))
        fraction = await q.get_previous_inference_reward_fraction(v10.GetPreviousInferenceRewardFractionRequest(topic_id=topic, worker=address))
        balance = await client.bank.query.balance(QueryBalanceRequest(address=address, denom="uallo"))
    finally:
        await client.close()
    return {
        "window": (window.is_open, window.current_nonce_block_height, window.next_window_start_block),
        "eligible": (window.is_registered, window.is_whitelisted, window.is_topic_active),
        "can_submit": can.can_submit_worker_payload, "registered": registered.is_registered, "active": active.is_active,
        "epoch_length": got.topic.epoch_length, "ema": ema.score.score,
        "lowest": lowest.score.score if lowest.score else None, "fraction": (fraction.reward_fraction, fraction.not_found),
        "balance": balance.balance.amount,
    }  # fmt: skip


def test_the_reader_queries_answer_the_scripted_state_and_follow_its_changes(chain):  # noqa: F811
    chain.state.registered.add(TEST_ADDRESS)
    first = chain.next_window()
    chain.set_score(TEST_ADDRESS, "0.42")
    chain.set_lowest_score("0.30")
    chain.set_reward_fraction(TEST_ADDRESS, "0.015")
    before = asyncio.run(_read(chain, TEST_ADDRESS))
    assert before == {
        "window": (True, first, first + 6), "eligible": (True, True, True), "can_submit": True, "registered": True,
        "active": True, "epoch_length": 6, "ema": "0.42", "lowest": "0.30", "fraction": ("0.015", False), "balance": str(10**12),
    }  # fmt: skip

    # Not whitelisted, the topic inactive, the score fallen under the lowest, a stranger with nothing on record.
    chain.state.whitelist = {"allo1someoneelse"}
    chain.set_topic_active(False)
    chain.set_score(TEST_ADDRESS, "0.25")
    second = chain.next_window()
    after = asyncio.run(_read(chain, TEST_ADDRESS))
    assert second == first + 6 and after["window"] == (False, second, second + 6)
    assert (after["eligible"], after["can_submit"], after["active"], after["ema"]) == ((True, False, False), False, False, "0.25")
    stranger = asyncio.run(_read(chain, "allo1stranger"))
    assert (stranger["registered"], stranger["ema"], stranger["fraction"], stranger["balance"]) == (False, "0", ("0", True), "0")
    assert chain.calls("GetInfererScoreEma") == 3


def test_a_chain_not_upgraded_answers_v10_queries_unimplemented():
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from tests.fixtures.chain import ChainState

    with ChainStandIn(ChainState(emissions_version="v9")) as old:
        try:
            asyncio.run(_read(old, TEST_ADDRESS))
        except GRPCError as exc:
            assert exc.status == Status.UNIMPLEMENTED
        else:
            raise AssertionError("a v9 chain answered a v10 query")
        assert old.calls("GetWorkerSubmissionWindowStatus") == 0
