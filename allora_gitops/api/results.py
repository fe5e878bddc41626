"""``POST /api/v1/results``: a model pod reports its own results (allora_runtime/reporter.py).

The pod proves which deployment it is with its projected ServiceAccount token (``api/podidentity.py``), not with
a user's API token: 401 for a token that does not verify, 403 for a valid one of no live deployment, 503 when
the cluster's keys cannot be read or reporting is not configured. The body is the reporter's
``{"results": [<result log object>, ...]}``, read by ``result_log.report_rows`` (422 with one problem per bad
result, nothing stored) and stored by ``record_results``: idempotent on (deployment, nonce, kind), so a batch
the reporter sends again after a lost answer is stored once.
"""

from __future__ import annotations

from typing import Any, Iterator

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import HTTPBearer

from allora_gitops.api.app import ApiError, get_settings
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["results"])
# declares the pods' scheme in the OpenAPI document; the header itself is read (and answered) below
pod_bearer = HTTPBearer(
    auto_error=False, scheme_name="podToken",
    description="A projected ServiceAccount token (audience allora-platform) of the model's pod",
)  # fmt: skip


def pod_deployment(
    request: Request, settings: ApiSettings = Depends(get_settings), _declared: Any = Depends(pod_bearer)
) -> Iterator[tuple[Any, Any]]:
    """(records, the caller's deployment) from the pod's bearer token; the connection is closed after the response."""
    from allora_gitops.api.podidentity import authorize_pod
    from allora_gitops.db import open_records

    verifier = getattr(request.app.state, "pod_verifier", None)
    if verifier is None:
        raise ApiError(503, "results reporting is not configured on this server: set ALLORA_API_POD_JWKS and ALLORA_API_POD_ISSUER")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "a projected ServiceAccount token is required: 'Authorization: Bearer TOKEN'",
            headers={"WWW-Authenticate": 'Bearer realm="allora-platform"'},
        )  # fmt: skip
    records = open_records(settings.database_url)
    try:
        yield records, authorize_pod(verifier, records, token.strip())
    finally:
        records.close()


@router.post("/v1/results", summary="Record a model pod's results (idempotent on deployment, nonce and kind)")
def post_results(report: Any = Body(...), session: tuple[Any, Any] = Depends(pod_deployment)) -> dict:
    from allora_gitops.db.results import record_results
    from allora_gitops.result_log import report_rows

    records, deployment = session
    rows, unattributed = report_rows(report)
    stored = record_results(records.connection, deployment.id, rows)
    _record_worker(records, deployment, report)
    return {
        "deployment_id": str(deployment.id),
        "received": len(rows) + unattributed,
        "stored": stored,
        "already_recorded": len(rows) - stored,
        "unattributed": unattributed,
    }


def _record_worker(records, deployment, report: Any) -> None:
    """The worker address the runtime reports with its results (``worker``), for the chain reader (chain/store.py)."""
    from allora_gitops.chain.store import record_worker_address, worker_address_of

    address = worker_address_of(report)
    if address is not None:
        record_worker_address(records.connection, deployment.id, address, "runtime")
