"""Read the chain now for live deployments and record the reads (``chain status``): the poller's work, once."""

from __future__ import annotations

import asyncio
from typing import Optional

CONCURRENCY = 8  # reads at a time, as the poller's default: one client per network, not one connection per deployment


def observe_now(conn, *, name: Optional[str] = None, network: Optional[str] = None, timeout: float = 10.0) -> list:
    """Read every live deployment matching ``name``/``network`` that has a worker address (``reader.read_workers``:
    one client per network, a failed endpoint failing its other reads at once), each read within ``timeout``;
    store each read; → their ``store.ChainView`` (in name order)."""
    from allora_gitops.chain.reader import endpoint_overrides, read_workers
    from allora_gitops.chain.store import chain_view, live_workers, store_observation

    workers = live_workers(conn, name=name, network=network)
    overrides = endpoint_overrides()
    watched = [w for w in workers if w.address]
    if watched:
        outcomes, _ = asyncio.run(read_workers(watched, endpoints=overrides, timeout=timeout, concurrency=CONCURRENCY))
        for worker, standing, error in outcomes:
            store_observation(conn, worker, standing, error)
    return [chain_view(conn, w) for w in workers]
