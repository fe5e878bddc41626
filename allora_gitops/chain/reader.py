"""One read of a worker's standing on its topic, through allora-sdk 1.3.0's own read-only gRPC client.

Per deployment (topic, worker address), all at the chain's latest height, concurrently, under one timeout:

====================================  ============================================================
emissions v10 query                   gives
====================================  ============================================================
GetWorkerSubmissionWindowStatus       window open, current nonce (block height), registered,
                                      whitelisted, topic active
CanSubmitWorkerPayload                ``can_submit_worker_payload`` (the whitelist check the chain
                                      applies to a payload)
GetTopic                              epoch length (blocks between windows)
GetInfererScoreEma                    the worker's inferer score EMA (``score.score``)
GetCurrentLowestInfererScore          the lowest score among the topic's active inferers
GetPreviousInferenceRewardFraction    the worker's reward fraction of the previous epoch
cosmos bank Balance                   the wallet's balance in uallo
tendermint GetNodeInfo                the node's chain id, for testnet and mainnet: an endpoint serving
                                      another chain fails the read (a testnet deployment is never shown
                                      a mainnet standing)
====================================  ============================================================

A chain that does not answer emissions v10 (one not upgraded from v9) fails with one ``ChainReadError``
naming the version mismatch; an unreachable one with one naming the endpoint's host, never a stack of gRPC
errors. REST endpoints are not used (allora-sdk 1.3.0's REST clients cannot work: see
``allora_runtime.settings.REST_UNSUPPORTED``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from allora_gitops.errors import UsageError

ENDPOINTS_ENV = "ALLORA_CHAIN_ENDPOINTS"  # NETWORK=grpc+https://HOST:PORT[,NETWORK=…]: overrides the SDK's defaults
DENOM = "uallo"
SDK_EMISSIONS_VERSION = "v10"


class ChainReadError(Exception):
    """A read that did not complete: one line, safe to store and show (no URL credentials). ``endpoint``: the
    failure is the endpoint's (no answer in time, unreachable, another chain or emissions version), so every
    read through it would fail alike; otherwise it is this worker's read alone (the chain refused the query,
    or answered something unusable)."""

    def __init__(self, message: str, *, endpoint: bool = False):
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class Standing:
    """What the chain says about one worker on one topic (one ``ChainReadError`` otherwise)."""

    window_open: bool
    current_nonce: int  # block height of the topic's latest worker window
    epoch_length: int  # blocks between windows
    registered: bool
    whitelisted: bool
    topic_active: bool
    can_submit: bool
    score_ema: Optional[Decimal]
    lowest_score: Optional[Decimal]  # None: the topic has no active inferer score yet
    reward_fraction: Optional[Decimal]  # None: not found (no reward in the previous epoch)
    balance_uallo: Optional[int]


def endpoint_overrides(raw: Optional[str] = None) -> dict[str, str]:
    """``$ALLORA_CHAIN_ENDPOINTS`` (``testnet=grpc+https://host:443,mainnet=…``) → network → gRPC URL.

    Raises UsageError for a malformed entry or a scheme other than grpc+https / grpc+http."""
    raw = os.environ.get(ENDPOINTS_ENV, "") if raw is None else raw
    out: dict[str, str] = {}
    for number, entry in enumerate(filter(None, (e.strip() for e in raw.split(","))), 1):
        network, sep, url = entry.partition("=")
        network, url = network.strip(), url.strip()
        if not sep or not network or not url or "/" in network:  # the entry is not echoed: it may hold credentials
            raise UsageError(f"${ENDPOINTS_ENV}: entry {number} is not NETWORK=grpc+https://HOST:PORT")
        if url.split("://", 1)[0] not in ("grpc+https", "grpc+http"):
            raise UsageError(f"${ENDPOINTS_ENV}: the endpoint of {network} must be grpc+https:// or grpc+http://")
        try:  # what cosmpy's parse_url reads: a host, and a port when given (else 443 / 80)
            parts = urlsplit(url)
            host_ok, _ = bool(parts.hostname), parts.port
        except ValueError:
            host_ok = False
        if not host_ok:  # the URL is not echoed: it may hold credentials
            raise UsageError(f"${ENDPOINTS_ENV}: the endpoint of {network} is not grpc+https://HOST[:PORT] (a host, and a port of 1-65535)")
        out[network] = url
    return out


def network_config(network: str, overrides: Mapping[str, str]) -> Any:
    """The SDK's ``AlloraNetworkConfig`` for a deployment's network: an override's URL, else the SDK's own
    testnet/mainnet endpoints; ChainReadError for a network the platform has no endpoint for."""
    from allora_sdk import AlloraNetworkConfig

    known = {"testnet": AlloraNetworkConfig.testnet, "mainnet": AlloraNetworkConfig.mainnet}
    if network in overrides:
        chain_id = known[network]().chain_id if network in known else network
        return AlloraNetworkConfig(chain_id=chain_id, url=overrides[network], websocket_url=None)
    if network in known:
        config = known[network]()
        return AlloraNetworkConfig(chain_id=config.chain_id, url=config.url, websocket_url=None)
    raise ChainReadError(f"no chain endpoint for network {network!r}: set {ENDPOINTS_ENV}={network}=grpc+https://HOST:PORT", endpoint=True)


def expected_chain_id(network: str) -> Optional[str]:
    """The chain id a ``testnet``/``mainnet`` endpoint must report (the SDK's); None for a network named only by
    ``$ALLORA_CHAIN_ENDPOINTS``, whose chain id the platform has no record of."""
    from allora_sdk import AlloraNetworkConfig

    known = {"testnet": AlloraNetworkConfig.testnet, "mainnet": AlloraNetworkConfig.mainnet}
    return known[network]().chain_id if network in known else None


def endpoint_host(config: Any) -> str:
    """host:port of the endpoint, without scheme or credentials, for messages."""
    rest = config.url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]


def open_client(config: Any) -> Any:
    """``AlloraRPCClient(wallet=None, network=config)``; must be called inside a running event loop. Connects lazily."""
    from allora_sdk.rpc_client.client import AlloraRPCClient

    return AlloraRPCClient(wallet=None, network=config)


async def close_client(client: Any) -> None:
    try:
        await asyncio.wait_for(client.close(), 5)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


MAX_DIGITS = 80  # a Cosmos LegacyDec is at most 2^256 × 10^-18 (~1.2e59); a balance's Int fits in 78 digits


def _decimal(text: Any, what: str, host: str) -> Optional[Decimal]:
    """The chain's decimal text (LegacyDec) as a Decimal; None when empty (not set); ChainReadError for text no
    node would send (not a finite number, or more digits than a LegacyDec has), which PostgreSQL's numeric
    could not even store."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        value = None
    if value is None or not value.is_finite() or (value != 0 and abs(value.adjusted()) > MAX_DIGITS):
        raise ChainReadError(f"{host} answered a {what} that is not a decimal number: {str(text)[:40]!r}")
    return value


def _amount(text: Any, host: str) -> Optional[int]:
    """A bank Coin's amount (an Int's decimal digits) as an int; ChainReadError for anything else."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    if not text.isdigit() or len(text) > MAX_DIGITS:
        raise ChainReadError(f"{host} answered a balance that is not a whole number of uallo: {text[:40]!r}")
    return int(text)


async def read_standing(
    client: Any, topic_id: int, address: str, *, timeout: float, host: str = "the chain", chain_id: Optional[str] = None
) -> Standing:
    """The queries of the module docstring for one worker, concurrently; ChainReadError on any failure, and when
    ``chain_id`` is given and the node reports another (an endpoint of the wrong network)."""
    from allora_sdk.rpc_client.protos.cosmos.bank.v1beta1 import QueryBalanceRequest
    from allora_sdk.rpc_client.protos.cosmos.base.tendermint.v1beta1 import GetNodeInfoRequest
    from allora_sdk.rpc_client.protos.emissions import v10

    q = client.emissions.query
    calls = (
        q.get_worker_submission_window_status(v10.GetWorkerSubmissionWindowStatusRequest(topic_id=topic_id, address=address)),
        q.can_submit_worker_payload(v10.CanSubmitWorkerPayloadRequest(topic_id=topic_id, address=address)),
        q.get_topic(v10.GetTopicRequest(topic_id=topic_id)),
        q.get_inferer_score_ema(v10.GetInfererScoreEmaRequest(topic_id=topic_id, inferer=address)),
        q.get_current_lowest_inferer_score(v10.GetCurrentLowestInfererScoreRequest(topic_id=topic_id)),
        q.get_previous_inference_reward_fraction(v10.GetPreviousInferenceRewardFractionRequest(topic_id=topic_id, worker=address)),
        client.bank.query.balance(QueryBalanceRequest(address=address, denom=DENOM)),
        *((client.tendermint.query.get_node_info(GetNodeInfoRequest()),) if chain_id else ()),
    )
    try:
        window, can, topic, ema, lowest, fraction, balance, *node = await asyncio.wait_for(asyncio.gather(*calls), timeout)
    except asyncio.TimeoutError:
        raise ChainReadError(f"{host} did not answer within {timeout:g} s", endpoint=True) from None
    except Exception as exc:  # noqa: BLE001 - sorted into one line below
        status = getattr(getattr(exc, "status", None), "name", "")
        answered = any(c.__name__ == "GRPCError" for c in type(exc).__mro__) and status != "UNIMPLEMENTED"
        raise ChainReadError(describe_failure(exc, host), endpoint=not answered) from None
    if node:
        reported = node[0].default_node_info.network if node[0].default_node_info is not None else ""
        if reported != chain_id:
            raise ChainReadError(
                f"{host} serves chain {reported[:80]!r}, not {chain_id!r}: its endpoint in ${ENDPOINTS_ENV} belongs to another network",
                endpoint=True,
            )
    score = ema.score.score if ema.score is not None else None
    return Standing(
        window_open=window.is_open, current_nonce=window.current_nonce_block_height,
        epoch_length=topic.topic.epoch_length if topic.topic is not None else 0,
        registered=window.is_registered, whitelisted=window.is_whitelisted, topic_active=window.is_topic_active,
        can_submit=can.can_submit_worker_payload, score_ema=_decimal(score, "score EMA", host),
        lowest_score=_decimal(lowest.score.score, "lowest score", host) if lowest.score is not None else None,
        reward_fraction=None if fraction.not_found else _decimal(fraction.reward_fraction, "reward fraction", host),
        balance_uallo=_amount(balance.balance.amount, host) if balance.balance is not None else None,
    )  # fmt: skip


def describe_failure(exc: BaseException, host: str) -> str:
    """One line for a failed read: the version mismatch, the unreachable host, or the chain's own status."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(getattr(exc, "status", None), "name", "")
    if "GRPCError" in names and status == "UNIMPLEMENTED":
        return (
            f"{host} does not serve emissions {SDK_EMISSIONS_VERSION} (allora-sdk 1.3.0 speaks {SDK_EMISSIONS_VERSION} only;"
            " the chain may not be upgraded yet)"
        )
    if "GRPCError" in names:
        message = (getattr(exc, "message", None) or "").splitlines()[0:1]
        return f"{host} answered {status or 'an error'}" + (f": {message[0][:200]}" if message else "")
    if names & {"StreamTerminatedError", "ProtocolError"}:  # connected, but what came back was no gRPC (HTTP/2) answer
        return f"{host} closed the connection without a gRPC answer (not a gRPC endpoint, plain text where TLS is expected, or the node went away)"
    if isinstance(exc, (OSError, ConnectionError, EOFError)):
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return f"cannot reach {host}: {reason}"
    return f"reading {host} failed: {type(exc).__name__}"


async def read_workers(workers: list, *, endpoints: Mapping[str, str], timeout: float, concurrency: int) -> tuple[list[tuple[Any, Optional[Standing], Optional[str]]], int]:
    """Read each of ``workers`` (``store.LiveWorker`` with an address): one client per network, at most
    ``concurrency`` reads at a time, each bounded by ``timeout``. Once a network's endpoint has failed
    (``ChainReadError.endpoint``), its reads not yet started get the same failure without a read, so a hanging
    endpoint costs one timeout, not one per deployment. → ([(worker, standing or None, error or None)], reads made)."""
    semaphore = asyncio.Semaphore(concurrency)
    clients: dict[str, Any] = {}
    outcomes: list[tuple[Any, Optional[Standing], Optional[str]]] = []
    down: dict[str, str] = {}  # network → why its endpoint failed
    attempts = 0

    async def read(worker) -> None:
        nonlocal attempts
        async with semaphore:
            if worker.network in down:
                outcomes.append((worker, None, down[worker.network]))
                return
            attempts += 1
            try:
                config = network_config(worker.network, endpoints)
                if worker.network not in clients:
                    clients[worker.network] = open_client(config)
                standing = await read_standing(
                    clients[worker.network], worker.topic_id, worker.address, timeout=timeout,
                    host=endpoint_host(config), chain_id=expected_chain_id(worker.network),
                )  # fmt: skip
                outcomes.append((worker, standing, None))
            except ChainReadError as exc:
                outcomes.append((worker, None, str(exc)))
                if exc.endpoint:
                    down.setdefault(worker.network, str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. the SDK refusing a URL: one line, stored
                outcomes.append((worker, None, f"reading the chain failed: {type(exc).__name__}"))

    try:
        await asyncio.gather(*(read(w) for w in workers))
    finally:
        for client in clients.values():
            await close_client(client)
    return outcomes, attempts
