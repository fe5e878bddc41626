"""``GET /metrics``: the ``allora_chain_*`` series (``chain.metrics``) of live deployments, for Prometheus.

Behind an API token like the rest of the API (Prometheus sends it: ``authorization`` of a ServiceMonitor or
scrape config): an admin's token gets every deployment's series, another user's only their own deployments'
(names and standing of other users' deployments are theirs).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from allora_gitops.api.dependencies import Caller, caller

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics: allora_chain_* per live deployment", response_class=Response)
def metrics(c: Caller = Depends(caller)) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from allora_gitops.chain.metrics import render_metrics
    from allora_gitops.chain.store import chain_views, live_workers

    conn = c.records.connection
    visible = [w for w in live_workers(conn) if c.principal.is_admin or c.accounts.may_see(c.principal, w.name)]
    body = render_metrics(chain_views(conn, visible))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


def deployment_chain(records, d) -> dict | None:
    """The ``chain`` object of GET /api/deployments/{id} (``store.ChainView.to_dict``); None for a sandbox or one not live."""
    from allora_gitops.chain.store import chain_view, live_workers

    found = [w for w in live_workers(records.connection, name=d.name, network=d.network) if w.deployment_id == d.id]
    return chain_view(records.connection, found[0]).to_dict() if found else None
