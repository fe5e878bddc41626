"""``GET /metrics``: the ``allora_chain_*`` series (``chain.metrics``) of every live deployment, for Prometheus.

No token: like any exporter's ``/metrics``, it is for the cluster's Prometheus; it says nothing a chain explorer
does not (public addresses' standing), and the NetworkPolicy of the platform decides who reaches it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from allora_gitops.api.app import open_session

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics: allora_chain_* per live deployment", response_class=Response)
def metrics(session=Depends(open_session)) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from allora_gitops.chain.metrics import render_metrics
    from allora_gitops.chain.store import chain_view, live_workers

    records, _ = session
    conn = records.connection
    body = render_metrics(chain_view(conn, w) for w in live_workers(conn))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


def deployment_chain(records, d) -> dict | None:
    """The ``chain`` object of GET /api/deployments/{id} (``store.ChainView.to_dict``); None for a sandbox or one not live."""
    from allora_gitops.chain.store import chain_view, live_workers

    found = [w for w in live_workers(records.connection, name=d.name, network=d.network) if w.deployment_id == d.id]
    return chain_view(records.connection, found[0]).to_dict() if found else None
