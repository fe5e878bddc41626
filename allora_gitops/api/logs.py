"""Model logs: a pod ships what its model printed (``POST /api/v1/logs``); its owner reads them (``GET /api/v1/logs``,
``allora-bundle logs``, the deployment page's live tail).

Writing takes the pod's projected ServiceAccount token through the very dependency of ``POST /api/v1/results``
(``results.pod_deployment``, ``api/podidentity.py``): the token names the deployment, so a pod can write only its own deployment's lines (401 for a token that does not
verify, 403 for one of no live deployment, 503 when the cluster's keys are not configured). The body is the
runtime's ``{"lines": [<JSON log object>, ...]}`` (``allora_runtime/reporter.py``), read by
``db/logs.py`` through ``allora_gitops.untrusted``; one bad line is refused alone::

    {"deployment_id": "…", "received": 3, "stored": 2, "dropped": 0, "refused": [{"index": 1, "message": "…"}]}

Each pod may write ``LINES_PER_SECOND`` lines a second (a token bucket of ``BURST`` lines, per server
process): lines beyond it are not stored and counted in ``dropped`` (the runtime counts them in its metric).
After a write, the deployment's retention runs at most once a minute (``ApiSettings.logs_retention``,
``logs_max_lines``).

Reading takes a user's API token: ``name`` (and ``network`` when the name is deployed on several) or
``deployment_id``; a deployment of a name the caller does not own is a 404, as everywhere in the API. Lines come
oldest first with a ``cursor``; ``after=<cursor>`` returns only what came since (what ``--follow`` and the page
poll with). No message is ever written to the server's log.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from allora_gitops.api.dependencies import Caller, caller, get_settings, open_session
from allora_gitops.api.problems import ApiError
from allora_gitops.api.results import pod_deployment
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["logs"])
page_router = APIRouter(include_in_schema=False)
log = logging.getLogger("allora_gitops.api.logs")
LINES_PER_SECOND = 200.0  # per pod, sustained
BURST = 2000.0  # per pod: a start-up's or a traceback's lines at once
PRUNE_EVERY_SECONDS = 60.0
MAX_BUCKETS = 10_000  # pods remembered per process; beyond it the idlest are forgotten (a full bucket again)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class PodRate:
    """Token buckets of lines, one per (deployment, pod): ``take(key, n)`` → how many of ``n`` lines may be stored."""

    def __init__(self, rate: float = LINES_PER_SECOND, burst: float = BURST):
        self.rate, self.burst = rate, burst
        self._buckets: dict[Any, tuple[float, float]] = {}  # key → (tokens, monotonic time of the last refill)
        self._lock = threading.Lock()

    def take(self, key: Any, wanted: int, now: Optional[float] = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            granted = min(wanted, int(tokens))
            self._buckets[key] = (tokens - granted, now)
            if len(self._buckets) > MAX_BUCKETS:
                for idle in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: MAX_BUCKETS // 10]:
                    del self._buckets[idle]
        return granted


def _state(request: Request) -> tuple[PodRate, dict]:
    state = request.app.state
    if getattr(state, "log_rate", None) is None:
        state.log_rate, state.log_pruned = PodRate(), {}
    return state.log_rate, state.log_pruned


def pod_name_of(request: Request) -> Optional[str]:
    """The pod's name in the bearer token that ``results.pod_deployment`` has just verified for this request (its
    ``kubernetes.io`` claim, checked there against the subject); None when the token names no pod."""
    import jwt

    from allora_gitops.api.podidentity import identity_from_claims

    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    try:
        return identity_from_claims(jwt.decode(token, options={"verify_signature": False})).pod
    except Exception:  # noqa: BLE001 - verified already; a pod name is only a label of the stored lines
        return None


@router.post("/v1/logs", summary="Store a model pod's log lines (rate-limited per pod; answered per line)")
def post_logs(request: Request, batch: Any = Body(...), session: tuple = Depends(pod_deployment), settings: ApiSettings = Depends(get_settings)) -> dict:
    from allora_gitops.db.logs import log_rows, prune_logs, record_logs
    from allora_gitops.db.retention import parse_duration

    records, deployment = session  # the token verified and mapped to its deployment, as for results
    pod = pod_name_of(request)
    reading = log_rows(batch)
    rate, pruned = _state(request)
    allowed = rate.take((deployment.id, pod), len(reading.rows))
    stored = record_logs(records.connection, deployment.id, pod, reading.rows[:allowed])
    dropped = len(reading.rows) - allowed
    if dropped or reading.refused:  # counts only: a line may hold what must not be logged
        log.warning("logs of deployment %s: %d over the rate limit, %d refused, of %d", deployment.id, dropped, len(reading.refused), reading.received)
    now = time.monotonic()
    if now - pruned.get(deployment.id, float("-inf")) >= PRUNE_EVERY_SECONDS:
        pruned[deployment.id] = now
        prune_logs(records.connection, deployment.id, older_than=parse_duration(settings.logs_retention), max_lines=settings.logs_max_lines)
    return {"deployment_id": str(deployment.id), "received": reading.received, "stored": stored, "dropped": dropped,
            "refused": reading.refused}  # fmt: skip


def parse_since(text: Optional[str], now: Optional[datetime] = None) -> Optional[datetime]:
    """``10m`` / ``2h`` / ``7d`` ago, or an ISO 8601 time (UTC when it has no zone); None for none."""
    from allora_gitops.db.retention import parse_duration
    from allora_gitops.errors import RecordRefused, UsageError

    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:
            return (now or datetime.now(timezone.utc)) - parse_duration(text, what="since")
        except UsageError:
            raise RecordRefused(f"since {text[:40]!r} is neither a duration (10m, 2h, 7d) nor an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _deployment_ids(c: Caller, name: Optional[str], network: Optional[str], deployment_id: Optional[str]) -> list[str]:
    """The records of the deployment the caller names: every version of NAME on NETWORK (its log goes on across
    versions), or the one id; 404 for a deployment that is not the caller's."""
    if deployment_id is not None:
        d = c.records.get_deployment(deployment_id)
        if d is None or not c.accounts.may_see(c.principal, d.name):
            raise ApiError(404, f"no deployment {deployment_id}")
        return [d.id for d in c.records.list_deployments(name=d.name, network=d.network)]
    if not name:
        raise ApiError(422, "name a deployment: name (and network) or deployment_id")
    found = c.records.list_deployments(name=name, network=network) if c.accounts.may_see(c.principal, name) else []
    if not found:
        raise ApiError(404, f"no deployment of {name}" + (f" on {network}" if network else "") + " among yours")
    networks = sorted({d.network for d in found})
    if len(networks) > 1:
        raise ApiError(422, f"{name} is deployed on {' and '.join(networks)}: choose one with network (--network)")
    return [d.id for d in found]


@router.get("/v1/logs", summary="A deployment's model log lines, oldest first (after=CURSOR for what came since)")
def get_logs(
    name: Optional[str] = Query(None, max_length=63),
    network: Optional[str] = Query(None, max_length=32),
    deployment_id: Optional[str] = Query(None, pattern=UUID_PATTERN),
    since: Optional[str] = Query(None, max_length=64, description="10m, 2h, 7d, or an ISO 8601 time (default: the last lines)"),
    after: Optional[str] = Query(None, max_length=48, description="The cursor of the last line already read"),
    level: Optional[str] = Query(None, max_length=16, description="debug, info, warning, error or critical: that level and above"),
    limit: int = Query(200, ge=1, le=1000),
    c: Caller = Depends(caller),
) -> dict:
    from allora_gitops.db.logs import check_level, read_logs

    ids = _deployment_ids(c, name, network, deployment_id)
    start = parse_since(since)
    lines = read_logs(c.records.connection, ids, since=start, after=after, level=check_level(level), limit=limit,
                      newest=after is None and start is None)  # fmt: skip
    return {"lines": [line.to_dict() for line in lines], "cursor": lines[-1].cursor if lines else after}


@page_router.get("/deployments/{deployment_id}/logs")
def page_logs(request: Request, deployment_id: str, after: Optional[str] = None, level: Optional[str] = None, session=Depends(open_session)):
    """The page's live tail (``static/logs-tail.js`` polls it): the same answer as ``GET /api/v1/logs``, signed in
    with the session cookie; 401 without a session, 404 for another user's deployment. (A GET that changes
    nothing: the SameSite=Strict cookie is not sent from other sites, and the answer is JSON, not a page.)"""
    from allora_gitops.api.web import SESSION_COOKIE, deployment_named, read_session
    from allora_gitops.db.logs import check_level, read_logs
    from allora_gitops.errors import RecordRefused

    records, accounts = session
    web = read_session(request.cookies.get(SESSION_COOKIE), accounts)
    if web is None:
        return JSONResponse({"detail": "signed out: sign in again"}, status_code=401)
    d = deployment_named(records, deployment_id)  # the page's id, or one of its releases' (what the page's script polls)
    if d is None or not accounts.may_see(web.principal, d.name):
        return JSONResponse({"detail": "There is no such deployment among yours."}, status_code=404)
    ids = [x.id for x in records.list_deployments(name=d.name, network=d.network)]
    try:
        lines = read_logs(records.connection, ids, after=after or None, level=check_level(level), newest=not after)
    except RecordRefused as exc:
        return JSONResponse({"detail": exc.message}, status_code=422)
    return JSONResponse({"lines": [line.to_dict() for line in lines], "cursor": lines[-1].cursor if lines else after},
                        headers={"Cache-Control": "no-store"})  # fmt: skip


@page_router.get("/static/logs-tail.js")
def tail_script() -> FileResponse:
    return FileResponse(Path(__file__).parent / "static" / "logs-tail.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})
