"""Live mode: build the SDK worker around the adapter, connect, run; transient failures retry with a bound."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

from allora_runtime.adapter import Adapter
from allora_runtime.contract import (
    CONNECT_TIMEOUT,
    EVENT_SUBMISSION,
    EVENT_SUBMISSION_FAILED,
    EXIT_OK,
    MAX_RETRY_BACKOFF,
    SDK_REQUIREMENT,
    STABLE_RUN_SECONDS,
)
from allora_runtime.errors import BootstrapError, ConfigError, ConnectionFailure, ImportFailure, RuntimeFailure
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


def submission_event(result: Any, nonce: Optional[int]) -> tuple[str, dict[str, Any]]:
    """What one item of ``worker.run()`` is logged (and reported) as: ``(event, fields)``.

    An exception is ``submission_failed`` with its type and message; a submission is ``submission`` with the value,
    the transaction hash and code, and gas used and fee (``"1234uallo"``) when the response says. ``nonce``: the
    nonce of the prediction the SDK just submitted (it submits one at a time, right after predicting).
    The fields are those ``allora_gitops.result_log`` reads; ``fee_uallo`` (the fee as a number, for the
    metrics) is popped before logging.
    """
    if isinstance(result, Exception):
        return EVENT_SUBMISSION_FAILED, {
            "nonce": nonce, "error_type": type(result).__name__, "message": LOG.scrub(str(result))[:500],
        }  # fmt: skip
    tx = getattr(result, "tx_result", None)
    gas, fee = submission_costs(tx)
    fields: dict[str, Any] = {
        "nonce": nonce,
        "value": check_prediction(result.submission) if result.submission is not None else None,
        "tx_hash": getattr(tx, "txhash", None),
        "code": getattr(tx, "code", None),
    }
    if gas is not None:
        fields["gas_used"] = gas
    if fee is not None:
        fields["fee"] = f"{fee}uallo"
        fields["fee_uallo"] = fee
    return EVENT_SUBMISSION, fields


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
            async for result in worker.run():
                event, fields = submission_event(result, adapter.last_nonce)
                if already_submitted(result):
                    adapter.metrics.submission("already_submitted")
                    LOG.emit("submission_skipped", nonce=adapter.last_nonce, reason="already_submitted")
                elif event == EVENT_SUBMISSION_FAILED:
                    adapter.metrics.submission("error", fields["error_type"])
                    LOG.emit(event, level="error", **fields)
                else:
                    adapter.metrics.submission("ok", gas_used=fields.get("gas_used"), fee_uallo=fields.pop("fee_uallo", None))
                    LOG.emit(event, **fields)
                balance_read = await read_balance(worker, adapter.metrics, balance_read)
            if stop.is_set():
                return EXIT_OK
            raise RuntimeFailure("the SDK worker stopped on its own (see its log lines above)")
        except BootstrapError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retry or crash below
            if stop.is_set():
                return EXIT_OK
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

