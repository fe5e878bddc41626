"""Read the chain now for live deployments and record the reads (``chain status``): the poller's work, once."""

from __future__ import annotations

import asyncio
from typing import Optional


def observe_now(conn, *, name: Optional[str] = None, network: Optional[str] = None, timeout: float = 10.0) -> list:
    """Read every live deployment matching ``name``/``network`` that has a worker address, concurrently, within
    ``timeout``; store each read; → their ``store.ChainView`` (in name order)."""
    from allora_gitops.chain.reader import ChainReadError, endpoint_overrides, read_once
    from allora_gitops.chain.store import chain_view, live_workers, store_observation

    workers = live_workers(conn, name=name, network=network)
    overrides = endpoint_overrides()

    async def read(worker):
        try:
            return worker, await read_once(worker.network, worker.topic_id, worker.address, timeout=timeout, overrides=overrides), None
        except ChainReadError as exc:
            return worker, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            return worker, None, f"reading the chain failed: {type(exc).__name__}"

    async def read_all():
        return await asyncio.gather(*(read(w) for w in workers if w.address))

    for worker, standing, error in asyncio.run(read_all()) if any(w.address for w in workers) else ():
        store_observation(conn, worker, standing, error)
    return [chain_view(conn, w) for w in workers]
