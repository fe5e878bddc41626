"""Live mode: build the SDK worker around the adapter, connect, run; transient failures retry with a bound."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

from allora_runtime.adapter import Adapter, SdkCall
from allora_runtime.contract import (
    CONNECT_TIMEOUT,
    EVENT_SUBMISSION,
    EVENT_SUBMISSION_FAILED,
    EVENT_SUBMISSION_SKIPPED,
    EVENT_SUBMISSION_UNATTRIBUTED,
    EVENT_SUBMISSION_UNREPORTED,
    EXIT_OK,
    MAX_RETRY_BACKOFF,
    SDK_REQUIREMENT,
    STABLE_RUN_SECONDS,
)
from allora_runtime.errors import BootstrapError, ConfigError, ConnectionFailure, ImportFailure, PredictionRefused, RuntimeFailure
from allora_runtime.log import LOG
from allora_runtime.settings import Settings, WalletSecret, redact_url
from allora_runtime.user import check_prediction

def _import_sdk() -> Any:
    try:
        import allora_sdk
    except ImportError as exc:
        raise ImportFailure(f"allora-sdk cannot be imported ({exc}); the image must install {SDK_REQUIREMENT}") from None
    return allora_sdk


def _sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("allora-sdk")
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def build_worker(settings: Settings, wallet: WalletSecret, adapter: Adapter) -> Any:
    """AlloraWorker.inferer(...). Must run inside the event loop; makes no network connection."""
    sdk = _import_sdk()
    from allora_sdk import AlloraNetworkConfig, AlloraWalletConfig, AlloraWorker, FeeTier

    if settings.topic_id is None:
        raise ConfigError("no topic: set allora.topic_id in model.yaml or ALLORA_TOPIC_ID")
    net = settings.network
    if net.name == "testnet":
        network = AlloraNetworkConfig.testnet()
    elif net.name == "mainnet":
        network = AlloraNetworkConfig.mainnet()
    else:
        network = AlloraNetworkConfig(
            chain_id=net.chain_id or "", url=net.url or "", websocket_url=net.websocket_url, faucet_url=net.faucet_url
        )
    try:
        if wallet.kind == "mnemonic":
            local = sdk.LocalWallet.from_mnemonic(wallet.value, "allo")
        else:
            key = wallet.value[2:] if wallet.value.startswith("0x") else wallet.value
            local = sdk.LocalWallet(sdk.PrivateKey(bytes.fromhex(key)), prefix="allo")
    except Exception:  # noqa: BLE001 - the exception text may quote the secret
        words = len(wallet.value.split())
        detail = f"{words} words" if wallet.kind == "mnemonic" else f"{len(wallet.value)} characters"
        raise ConfigError(f"the wallet {wallet.kind} from {wallet.source} is not valid ({detail})") from None
    try:
        return AlloraWorker.inferer(
            run=adapter,
            wallet=AlloraWalletConfig(wallet=local),
            network=network,
            api_key=settings.api_key,
            topic_id=settings.topic_id,
            fee_tier=FeeTier[settings.fee_tier],
            polling_interval=settings.polling_interval,
            debug=settings.debug,
            show_banner=False,
        )
    except (ValueError, RuntimeError) as exc:  # e.g. cosmpy: "Unsupported url scheme"
        raise ConfigError(f"the SDK refused the configuration: {LOG.scrub(str(exc))}") from None


def worker_summary(worker: Any, adapter: Adapter) -> dict[str, Any]:
    network = worker.client.network
    return {
        "sdk_version": _sdk_version(),
        "role": worker.use_case.name(),
        "topic_id": worker.topic_id,
        "fee_tier": worker.fee_tier.name,
        "polling_interval": worker.polling_interval,
        "address": worker.address,
        "chain_id": network.chain_id,
        "grpc_url": redact_url(network.url),
        "websocket_url": redact_url(network.websocket_url),
        "faucet_url": redact_url(network.faucet_url),
        "api_key": "set" if worker.api_key else "unset",
        "callback": "adapter" if worker.use_case.predict_fn is adapter else "other",
        "function": adapter.user.name,
        "passes": "RunContext" if adapter.user.wants_context else "nonce",
    }


BALANCE_READ_INTERVAL = 300.0  # seconds between wallet balance reads (one bank query each)


def submission_costs(tx: Any) -> tuple[Optional[int], Optional[int]]:
    """(gas used, fee paid in uallo) of a Cosmos ``TxResponse``, each None when the response does not say.

    The fee is the ``fee`` attribute of the ``tx`` event (Cosmos SDK x/auth ante
    handler), a coin list like ``"1234uallo"``; other denominations are ignored.
    """
    gas = getattr(tx, "gas_used", None)
    fee = None
    for event in getattr(tx, "events", None) or ():
        if getattr(event, "type", "") != "tx":
            continue
        for attr in getattr(event, "attributes", None) or ():
            if getattr(attr, "key", "") == "fee":
                coins = [c.strip() for c in str(getattr(attr, "value", "")).split(",")]
                amounts = [int(c[: -len("uallo")]) for c in coins if c.endswith("uallo") and c[: -len("uallo")].isdigit()]
                fee = sum(amounts) if amounts else fee
    return (gas if isinstance(gas, int) and gas > 0 else None), fee


def already_submitted(result: Any) -> bool:
    """Whether a worker result is the SDK's ``AlreadySubmittedError`` (emissions codes 68/75/78, or "already submitted").

    The SDK yields it when the chain already holds this worker's payload for the nonce (it logs it as a
    warning, not an error, in ``allora_sdk.worker.worker``): the round is done, not failed. Matched by
    class name along the MRO so that this module never imports the SDK at import time.
    """
    return isinstance(result, Exception) and any(cls.__name__ == "AlreadySubmittedError" for cls in type(result).__mro__)


TX_TYPE_URL = "/cosmos.tx.v1beta1.Tx"
INSERT_WORKER_PAYLOAD = "/emissions.v10.InsertWorkerPayloadRequest"


def submitted_payload(tx_response: Any) -> Optional[tuple[int, dict[str, str]]]:
    """(nonce, label → value text) of the ``InsertWorkerPayloadRequest`` inside a ``TxResponse``'s own transaction.

    A Cosmos SDK node's ``GetTx`` answers with the transaction itself in ``TxResponse.tx`` (an ``Any`` of
    ``cosmos.tx.v1beta1.Tx``), and that response is what the SDK hands back as ``WorkerResult.tx_result``:
    the signed payload says which window it was for. None when the response carries no transaction
    (a node may leave it out), it cannot be decoded, or it holds no worker payload.
    """
    packed = getattr(tx_response, "tx", None)
    if packed is None or getattr(packed, "type_url", "") != TX_TYPE_URL:
        return None
    try:
        from allora_sdk.rpc_client.protos.cosmos.tx.v1beta1 import Tx
        from allora_sdk.rpc_client.protos.emissions.v10 import InsertWorkerPayloadRequest

        body = Tx.parse(packed.value).body
        for message in body.messages if body is not None else ():
            if message.type_url != INSERT_WORKER_PAYLOAD:
                continue
            bundle = InsertWorkerPayloadRequest.parse(message.value).worker_data_bundle
            if bundle is None or bundle.nonce is None:
                return None
            inner = bundle.inference_forecasts_bundle
            inference = inner.inference if inner is not None else None
            values = {v.label: v.value for v in inference.values} if inference is not None else {}
            return bundle.nonce.block_height, values
    except Exception:  # noqa: BLE001 - an undecodable transaction: fall back to the order of the calls
        return None
    return None


@dataclass(frozen=True)
class Attribution:
    """The window one item of ``worker.run()`` belongs to (see ``attribute``).

    ``value``: the JSON form of the value submitted for it (None when unknown or refused); ``latency``:
    seconds the model took for that window (None when unknown); ``by``: how the window was known —
    ``transaction`` (the payload of the item's own transaction), ``refusal`` (the refusal the adapter
    raised, handed back), ``call_order`` (the oldest call not yet read), ``unknown``. ``unreported``:
    earlier calls whose result never came, dropped.
    """

    nonce: Optional[int]
    value: Any
    latency: Optional[float]
    by: str
    unreported: tuple[SdkCall, ...] = ()


def _take_through(calls: "deque[SdkCall]", nonce: int) -> tuple[Optional[SdkCall], tuple[SdkCall, ...]]:
    """Remove the oldest pending call for ``nonce`` and the calls before it (whose results never came)."""
    if not any(call.nonce == nonce for call in calls):
        return None, ()
    skipped = []
    while calls:
        call = calls.popleft()
        if call.nonce == nonce:
            return call, tuple(skipped)
        skipped.append(call)
    return None, tuple(skipped)  # not reached: the call is in the deque


def attribute(result: Any, calls: "deque[SdkCall]") -> Attribution:
    """Which window an item of ``worker.run()`` is the result of; consumes its entry of ``calls``.

    Why not "the latest call": allora-sdk 1.3.0 (``AlloraWorker._maybe_submit_impl``) handles the windows
    of one poll serially under its submit lock — call the model, sign and send, wait for the block, put the
    result (a ``WorkerResult`` or an exception) on an ``asyncio.Queue`` — and goes on to the next window's
    model call without waiting for the runtime to read the queue. With a backlog (a pod starting or
    restarting, windows overlapping) the latest call is already the next window when a result is read.

    What is used instead, in order of trust:

    1. ``transaction``: a successful submission's ``tx_result`` carries the signed transaction, whose
       ``InsertWorkerPayloadRequest`` names its nonce. That is the chain's own record: nothing to infer.
       The value is ``WorkerResult.submission``, the very object the SDK signed into that transaction.
    2. ``refusal``: a refused window comes back as the ``PredictionRefused`` the adapter raised for it,
       which names its nonce.
    3. ``call_order``: a failed submission (``TxError``, ``AlreadySubmittedError``, ``TxTimeoutError``,
       a broken connection) carries no nonce. The SDK puts exactly one result on its FIFO queue per model
       call, in the order of the calls (``submit``'s ``finally``, skipped only once the worker is being
       stopped), so the k-th result read belongs to the k-th call not yet read: the oldest in ``calls``.
       The value and latency are that call's. (A submission whose transaction carries no payload — a node
       that leaves ``tx`` out — is placed this way too.)

    1 and 2 also keep 3 in step: they remove their own call and any older one, whose result can then never
    come (``unreported``). ``calls`` must be cleared whenever a new SDK worker starts (its queue is new).
    """
    if isinstance(result, PredictionRefused) and result.nonce is not None:
        call, skipped = _take_through(calls, result.nonce)
        return Attribution(result.nonce, None, call.latency if call else None, "refusal", skipped)
    tx = getattr(result, "tx_result", None)
    if tx is not None and not isinstance(result, Exception):
        payload = submitted_payload(tx)
        value = check_prediction(result.submission) if result.submission is not None else None
        if payload is not None:
            call, skipped = _take_through(calls, payload[0])
            return Attribution(payload[0], value, call.latency if call else None, "transaction", skipped)
        if calls:
            call = calls.popleft()
            return Attribution(call.nonce, value, call.latency, "call_order")
        return Attribution(None, value, None, "unknown")
    if calls:
        call = calls.popleft()
        return Attribution(call.nonce, call.value, call.latency, "call_order")
    return Attribution(None, None, None, "unknown")


def submission_event(
    result: Any, nonce: Optional[int], *, value: Any = None, latency: Optional[float] = None
) -> tuple[str, dict[str, Any]]:
    """What one item of ``worker.run()`` is logged (and reported) as: ``(event, fields)``.

    An exception is ``submission_failed`` with its type and message (and the transaction hash when the SDK's
    ``TxError`` has one); a submission is ``submission`` with the value, the transaction hash and code, and
    gas used and fee (``"1234uallo"``) when the response says. ``nonce``, ``value`` (a failure's: the value the
    SDK was sending; a submission's value is the result's own) and ``latency`` (seconds the model took, reported
    as ``latency_ms``) come from ``attribute``, never from the latest call. The fields are those
    ``allora_gitops.result_log`` reads; ``fee_uallo`` (the fee as a number, for the metrics) is popped before
    logging.
    """
    timing = {"latency_ms": round(latency * 1000, 3)} if latency is not None else {}
    if isinstance(result, Exception):
        fields: dict[str, Any] = {
            "nonce": nonce, "error_type": type(result).__name__, "message": LOG.scrub(str(result))[:500],
        }  # fmt: skip
        tx_hash = getattr(result, "tx_hash", None)
        if isinstance(tx_hash, str) and tx_hash:
            fields["tx_hash"] = tx_hash
        if value is not None:
            fields["value"] = value
        return EVENT_SUBMISSION_FAILED, {**fields, **timing}
    tx = getattr(result, "tx_result", None)
    gas, fee = submission_costs(tx)
    fields = {
        "nonce": nonce,
        "value": check_prediction(result.submission) if result.submission is not None else None,
        "tx_hash": getattr(tx, "txhash", None),
        "code": getattr(tx, "code", None),
        **timing,
    }
    if gas is not None:
        fields["gas_used"] = gas
    if fee is not None:
        fields["fee"] = f"{fee}uallo"
        fields["fee_uallo"] = fee
    return EVENT_SUBMISSION, fields


def report_result(result: Any, adapter: Adapter, worker: Optional[str] = None) -> None:
    """Log one item of ``worker.run()`` under the window ``attribute`` finds, and count it in the metrics.

    - a success → ``submission`` (a chain code other than 0 is read as an error by the results reader);
    - ``AlreadySubmittedError`` → ``submission_skipped`` (the chain holds our payload for that window: after a
      restart, the window the previous process submitted) — not a result, so the window keeps its one record;
    - the adapter's own refusal handed back → ``submission_failed`` with ``reason: prediction_refused``: the
      window was missed (nothing was signed), so the submission success rate counts it, as the metrics do
      ("a refused prediction is a failed submission, counted once");
    - any other exception → ``submission_failed`` under the window, with the value that was being sent.

    ``worker`` (the wallet's public address) goes on each result line as ``worker``: the platform reads the
    chain for that address (allora_gitops/chain).
    """
    window = attribute(result, adapter.calls)
    for lost in window.unreported:
        LOG.emit(EVENT_SUBMISSION_UNREPORTED, level="warning", nonce=lost.nonce, reason="the SDK returned no result for it")
    if already_submitted(result):
        adapter.metrics.submission("already_submitted")
        LOG.emit(EVENT_SUBMISSION_SKIPPED, nonce=window.nonce, reason="already_submitted")
        return
    event, fields = submission_event(result, window.nonce, value=window.value, latency=window.latency)
    if isinstance(result, PredictionRefused):
        fields["reason"] = "prediction_refused"
    if worker:
        fields["worker"] = worker
    failed = event == EVENT_SUBMISSION_FAILED
    if failed:
        adapter.metrics.submission("error", fields["error_type"])
    else:
        adapter.metrics.submission("ok", gas_used=fields.get("gas_used"), fee_uallo=fields.pop("fee_uallo", None))
    if window.nonce is None:  # no window to store it under: said once, never a result line with a made-up nonce
        fields.pop("nonce")
        LOG.emit(EVENT_SUBMISSION_UNATTRIBUTED, level="warning", result_event=event, **fields)
    else:
        LOG.emit(event, level="error" if failed else "info", **fields)


async def read_balance(worker: Any, metrics: Any, last_read: float) -> float:
    """Set the wallet balance gauge from one bank query, at most every BALANCE_READ_INTERVAL; returns the read time.

    Best effort: a failed query changes nothing (the alert then sees the last value).
    """
    now = time.monotonic()
    if not metrics.enabled or (last_read and now - last_read < BALANCE_READ_INTERVAL):
        return last_read
    try:
        from allora_sdk.rpc_client.protos.cosmos.bank.v1beta1 import QueryBalanceRequest

        request = QueryBalanceRequest(address=worker.address, denom="uallo")
        resp = await asyncio.wait_for(worker.client.bank.query.balance(request), CONNECT_TIMEOUT)
        if resp.balance is not None:
            metrics.wallet_balance(int(resp.balance.amount))
    except Exception as exc:  # noqa: BLE001 - a metric must never stop the worker
        LOG.emit("balance_unavailable", level="warning", error_type=type(exc).__name__)
    return now


SDK_EMISSIONS_VERSION = "v10"


async def why_stopped(worker: Any, topic_id: Optional[int]) -> str:
    """Why ``worker.run()`` ended on its own, in one line: allora-sdk 1.3.0 stops its worker, after one log line,
    when the chain refuses the wallet on the topic (``can_submit_worker_payload`` false: not whitelisted), so the
    chain is asked; anything else is the SDK's own reason, in its log lines."""
    try:
        from allora_sdk.rpc_client.protos.emissions.v10 import CanSubmitWorkerPayloadRequest

        request = CanSubmitWorkerPayloadRequest(topic_id=topic_id or 0, address=worker.address)
        answer = await asyncio.wait_for(worker.client.emissions.query.can_submit_worker_payload(request), CONNECT_TIMEOUT)
        if not answer.can_submit_worker_payload:
            return (
                f"the wallet {worker.address} may not submit on topic {topic_id}: the chain says it is not whitelisted"
                " (can_submit_worker_payload is false); ask the topic's creator to whitelist it"
            )
    except Exception:  # noqa: BLE001 - the question is best effort; the generic reason stands
        pass
    return "the SDK worker stopped on its own (see its log lines above)"


def _is_unimplemented(exc: BaseException) -> bool:
    """A gRPC UNIMPLEMENTED: the node has no such service (emissions v10 on a chain still at v9)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "GRPCError" in names and getattr(getattr(exc, "status", None), "name", "") == "UNIMPLEMENTED"


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"StreamTerminatedError", "WebSocketException", "ConnectionClosed", "InvalidHandshake", "ProtocolError"}:
        return True
    if "GRPCError" in names:
        status = getattr(getattr(exc, "status", None), "name", "")
        return status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL", "RESOURCE_EXHAUSTED")
    return False


async def _close_worker(worker: Any) -> None:
    try:
        await asyncio.wait_for(worker.client.close(), 5)
    except Exception:  # noqa: BLE001 - best effort on the way to a retry or exit
        pass


async def run_live(settings: Settings, wallet: WalletSecret, adapter: Adapter, stop: asyncio.Event, holder: dict) -> int:
    """Build the worker, check the chain, run; transient failures retry with backoff up to a bound."""
    failures = 0
    worker = None
    while True:
        if worker is None:
            worker = build_worker(settings, wallet, adapter)
            holder["worker"] = worker
            LOG.emit("worker_constructed", **worker_summary(worker, adapter))
        started = time.monotonic()
        ran = False
        try:
            try:
                chain_id = await asyncio.wait_for(worker.client.raise_for_chain_id_mismatch(), CONNECT_TIMEOUT)
            except ValueError as exc:
                raise ConfigError(f"chain id mismatch: {exc}") from None
            LOG.emit("connected", chain_id=chain_id)
            ran = True
            balance_read = await read_balance(worker, adapter.metrics, 0.0)
            adapter.calls.clear()  # calls made for an earlier worker: their results went with its queue
            async for result in worker.run():
                report_result(result, adapter, getattr(worker, "address", None))
                balance_read = await read_balance(worker, adapter.metrics, balance_read)
            if stop.is_set():
                return EXIT_OK
            raise RuntimeFailure(await why_stopped(worker, settings.topic_id))
        except BootstrapError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retry or crash below
            if stop.is_set():
                return EXIT_OK
            if _is_unimplemented(exc):
                raise RuntimeFailure(
                    f"the chain does not serve emissions {SDK_EMISSIONS_VERSION}, the only version allora-sdk {_sdk_version()} speaks"
                    f" (it answered UNIMPLEMENTED: {LOG.scrub(str(getattr(exc, 'message', '') or exc))[:200]}); the chain may not be"
                    " upgraded yet, or ALLORA_NETWORK points at another network"
                ) from None
            if not _is_transient(exc):
                raise RuntimeFailure(f"the worker failed: {type(exc).__name__}: {LOG.scrub(str(exc))[:500]}") from exc
            if time.monotonic() - started > STABLE_RUN_SECONDS:
                failures = 0
            failures += 1
            error = {"error_type": type(exc).__name__, "message": LOG.scrub(str(exc))[:300]}
            if failures > settings.connect_retries:
                await _close_worker(worker)
                raise ConnectionFailure(
                    f"the chain is unreachable after {settings.connect_retries} retries"
                    f" ({error['error_type']}: {error['message']})"
                ) from None
            delay = min(settings.retry_backoff * 2 ** (failures - 1), MAX_RETRY_BACKOFF)
            LOG.emit("connection_retry", level="warning", attempt=failures, of=settings.connect_retries, delay_s=delay, **error)
            if ran:  # run() leaves the SDK worker half-initialised: build a fresh one
                await _close_worker(worker)
                worker = None
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return EXIT_OK
            except asyncio.TimeoutError:
                pass

