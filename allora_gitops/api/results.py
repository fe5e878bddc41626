"""``POST /api/v1/results``: a model pod reports its own results (allora_runtime/reporter.py).

The pod proves which deployment it is with its projected ServiceAccount token (``api/podidentity.py``), not with
a user's API token: 401 for a token that does not verify, 403 for a valid one of no live deployment, 503 when
the cluster's keys cannot be read or reporting is not configured. The body is the reporter's
``{"results": [<result log object>, ...]}``, read by ``result_log.report_rows`` (every value through
``allora_gitops.untrusted``) and stored by ``record_results``: idempotent on (deployment, nonce, kind), so a batch
the reporter sends again after a lost answer is stored once.

One bad result never costs the others: a well-formed batch is answered 200 with what happened to each result::

    {"deployment_id": "…", "received": 3, "stored": 2, "already_recorded": 0, "unattributed": 0,
     "refused": [{"index": 1, "nonce": 8, "message": "ts '9999-12-31T23:30:00-01:00' is out of range: …"}],
     "adjusted": [{"index": 2, "nonce": 9, "message": "ts … is 3 d ahead of the server's clock …; recorded at …"}]}

(``stored`` + ``already_recorded`` + ``unattributed`` + refused = ``received``.) Only a body that is not such a
batch is refused whole: 422, never a 5xx, so the reporter drops it instead of retrying it.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import HTTPBearer

from allora_gitops.api.dependencies import get_settings, records_pool_ready
from allora_gitops.api.problems import ApiError
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["results"])
log = logging.getLogger("allora_gitops.api.results")
# declares the pods' scheme in the OpenAPI document; the header itself is read (and answered) below
pod_bearer = HTTPBearer(
    auto_error=False, scheme_name="podToken",
    description="A projected ServiceAccount token (audience allora-platform) of the model's pod",
)  # fmt: skip


async def pod_deployment(
    request: Request, settings: ApiSettings = Depends(get_settings), _declared: Any = Depends(pod_bearer)
) -> AsyncIterator[tuple[Any, Any]]:
    """(records, the caller's deployment) from the pod's bearer token, verified before a pooled connection is leased
    (``RecordsPool.lease``: waited for in the event loop, given back after the response)."""
    from starlette.concurrency import run_in_threadpool

    from allora_gitops.api.podidentity import deployment_for_pod
    from allora_gitops.db.records import Records

    verifier = getattr(request.app.state, "pod_verifier", None)
    if verifier is None:
        raise ApiError(503, "results reporting is not configured on this server: set ALLORA_API_POD_JWKS and ALLORA_API_POD_ISSUER")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "a projected ServiceAccount token is required: 'Authorization: Bearer TOKEN'",
            headers={"WWW-Authenticate": 'Bearer realm="allora-platform"'},
        )  # fmt: skip
    # before any database work: a bad or unverifiable token costs none (on a worker: an unknown kid may wait ~0.25 s)
    identity = await run_in_threadpool(verifier.verify, token.strip())
    pool = await records_pool_ready(request)
    async with pool.lease() as conn:
        records = Records(pool.database_url, conn=conn)
        yield records, await run_in_threadpool(deployment_for_pod, records, identity, verifier.namespace)


@router.post("/v1/results", summary="Record a model pod's results (idempotent on deployment, nonce and kind; answered per result)")
def post_results(report: Any = Body(...), session: tuple[Any, Any] = Depends(pod_deployment)) -> dict:
    from allora_gitops.db.results import record_each
    from allora_gitops.result_log import ItemNote, report_rows

    records, deployment = session
    reading = report_rows(report)
    stored, refused_rows = record_each(records.connection, deployment.id, reading.rows)
    for position, why in refused_rows:  # the database's last line of defence refused these alone
        index = reading.indices[position]
        reading.refused.append(ItemNote(index, reading.rows[position].nonce, why))
        reading.adjusted = [note for note in reading.adjusted if note.index != index]
    reading.refused.sort(key=lambda note: note.index)
    if reading.refused:  # once per report, not per result; no message: a refused value may hold what must not be logged
        log.warning("results of deployment %s: %d of %d refused (the answer names each)", deployment.id, len(reading.refused), reading.received)
    _record_worker(records, deployment, report)
    return {
        "deployment_id": str(deployment.id),
        "received": reading.received,
        "stored": stored,
        "already_recorded": len(reading.rows) - len(refused_rows) - stored,
        "unattributed": reading.unattributed,
        "refused": [note.to_dict() for note in reading.refused],
        "adjusted": [note.to_dict() for note in reading.adjusted],
    }


def _record_worker(records, deployment, report: Any) -> None:
    """The worker address the runtime reports with its results (``worker``), for the chain reader (chain/store.py)."""
    from allora_gitops.chain.store import record_worker_address, worker_address_of

    address = worker_address_of(report)
    if address is not None:
        record_worker_address(records.connection, deployment.id, address, "runtime")
