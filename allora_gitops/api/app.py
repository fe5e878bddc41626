"""The FastAPI application: problem responses, authentication, and the routers of each resource.

Every error leaves as one RFC 9457 problem object (``application/problem+json``: type, title, status,
detail, and ``problems`` — one per file/line when the core error has them), never a traceback: the
project's own errors are mapped by kind, anything else is a 500 that says only "internal error".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from allora_gitops import __version__
from allora_gitops.api.auth import Accounts, Principal
from allora_gitops.api.settings import ApiSettings
from allora_gitops.errors import (
    AlloraGitopsError,
    BundleError,
    DatabaseError,
    GitOpsError,
    ManifestError,
    RecordConflict,
    RemoteUnavailable,
    RenderError,
    ResultsError,
    StorageError,
    UsageError,
)

API_PREFIX = "/api"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Every body but the upload's is a small JSON document: a larger one is refused before the routes (and
# before authentication) ever see it, so nobody can make the server hold a body of any size in memory.
MAX_REQUEST_BODY = 64 << 10  # > allora_runtime.contract.RESULTS_BATCH_BYTES: a results batch always fits
UPLOAD_ROUTE = ("POST", f"{API_PREFIX}/bundles")  # streamed to disk under its own limit (api/upload.py)
log = logging.getLogger("allora_gitops.api")


class ApiError(Exception):
    """An HTTP refusal decided by a route (not found, forbidden, too large…)."""

    def __init__(self, status: int, detail: str, *, title: Optional[str] = None, problems: Optional[list[dict]] = None, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title
        self.problems = problems or []
        self.headers = headers or {}


_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip


def problem(status: int, detail: str, *, title: Optional[str] = None, problems: Optional[list[dict]] = None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def core_status(exc: AlloraGitopsError) -> int:
    """The HTTP status of one of our own errors, by kind."""
    from allora_gitops.api.podidentity import PodIdentityError

    if isinstance(exc, PodIdentityError):
        return exc.status_code  # 401 / 403 / 503
    if isinstance(exc, ResultsError):
        return 422  # malformed results: the reporter drops the batch instead of retrying it
    if isinstance(exc, RecordConflict):
        return 409
    if isinstance(exc, (BundleError, ManifestError, RenderError, UsageError)):
        return 422
    if isinstance(exc, (DatabaseError, StorageError, RemoteUnavailable)):
        return 503
    if isinstance(exc, GitOpsError):
        return 409
    return 500


def _scrub(text: str, request: Request) -> str:
    """Server-side paths (the upload spool) are not the client's business."""
    for prefix in getattr(request.state, "scrub", ()):
        text = text.replace(prefix, "")
    return text


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return problem(exc.status, exc.detail, title=exc.title, problems=exc.problems, headers=exc.headers)

    @app.exception_handler(AlloraGitopsError)
    async def _core_error(request: Request, exc: AlloraGitopsError):
        status = core_status(exc)
        problems = [{**p.to_dict(), **({"file": _scrub(p.file, request)} if p.file else {})} for p in exc.problems]
        detail = _scrub(exc.message or (str(exc.problems[0]) if exc.problems else type(exc).__name__), request)
        return problem(status, detail, problems=problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # the offending values are left out: a request body may hold what a user pasted by mistake
        problems = [
            {"field": "body", "message": f"not valid JSON ({e.get('ctx', {}).get('error', 'malformed')} at character {e['loc'][-1]})"}
            if e.get("type") == "json_invalid"  # loc is ("body", position): a position, not a field
            else {"field": ".".join(str(x) for x in e.get("loc", ()) if x != "body"), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        return problem(422, "the request is invalid: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems), problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem(500, f"internal error ({type(exc).__name__}); the server log has the request")


class BodyLimit:
    """ASGI middleware: a request body other than the upload's is read here, at most ``limit`` bytes, and
    handed on whole; a larger one (declared in ``Content-Length`` or sent chunked) is a 413 problem and the
    connection is closed. FastAPI reads a JSON body into memory before any dependency runs, so without this
    an unauthenticated client could make the server hold a body of any size.
    """

    def __init__(self, app, limit: int = MAX_REQUEST_BODY, exempt: tuple[tuple[str, str], ...] = (UPLOAD_ROUTE,)):
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"].rstrip("/")) in self.exempt:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        detail = f"the request body is larger than {self.limit >> 10} KB (bundles go to POST {UPLOAD_ROUTE[1]} as multipart)"
        await problem(413, detail, headers={"Connection": "close"})(scope, receive, send)


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for ``settings``: health, OpenAPI at ``/api/openapi.json``, bundles and deployments under ``/api``."""
    from allora_gitops.api import bundles, chain, deployments, results, web

    app = FastAPI(
        title="allora-gitops platform API",
        version=__version__,
        description="Upload model bundles and deploy them through the GitOps repository (a review branch per change).",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit)
    app.state.pod_verifier = None  # POST /api/v1/results answers 503 until the cluster's issuer is configured
    if settings.pod_jwks and settings.pod_issuer:
        from allora_gitops.api.podidentity import PodTokenVerifier

        app.state.pod_verifier = PodTokenVerifier(settings.pod_jwks, settings.pod_issuer, namespace=settings.models_namespace)
    _install_handlers(app)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get(f"{API_PREFIX}/health", tags=["health"], summary="Readiness: the records database answers")
    def health() -> dict:
        from allora_gitops.db import open_records

        with open_records(settings.database_url):
            pass
        return {"status": "ok", "version": __version__}

    unauthorized = {401: {"description": "Missing, unknown, revoked or expired token (a problem object)"}}
    app.include_router(bundles.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(deployments.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(results.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(web.router)  # the monitoring pages (HTML, session cookie)
    app.include_router(chain.router)  # GET /metrics: allora_chain_* (api/chain.py)
    return app


def create_app_from_environment() -> FastAPI:
    """The app for the settings in the environment (``load_api_settings()``): the factory each worker
    process of ``serve --workers N`` calls."""
    from allora_gitops.api.settings import load_api_settings

    return create_app(load_api_settings())


# --- dependencies shared by the routers ----------------------------------------------------------


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def open_session(request: Request, settings: ApiSettings = Depends(get_settings)) -> Iterator[tuple[Any, Accounts]]:
    """(records, accounts) on one database connection for the request; closed after the response.

    The schema is checked against this code's migrations on the first request of the process only (``serve``
    checks it at start too): an applied migration stays applied, and the check cost every request a second
    connection and its queries (about 6-14 ms of a page's time, benchmarks/bench_pages.py)."""
    from allora_gitops.db import open_records
    from allora_gitops.db.records import Records

    checked = getattr(request.app.state, "checked_database_url", None)
    if checked is None:
        records = open_records(settings.database_url)
        request.app.state.checked_database_url = records.database_url
    else:
        records = Records(checked)
    try:
        yield records, Accounts(records.connection)
    finally:
        records.close()


# declares the scheme in the OpenAPI document (securitySchemes, and `security` on every route that needs it);
# the refusal itself stays ours, one problem object for every way a token can be wrong
bearer = HTTPBearer(auto_error=False, scheme_name="token", description="An API token from `allora-gitops token create`")


def current_principal(
    credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer), session=Depends(open_session)
) -> Principal:
    """The caller, from ``Authorization: Bearer TOKEN``; 401 (the same answer) for missing, unknown, revoked or expired."""
    principal = session[1].authenticate(credentials.credentials.strip()) if credentials is not None else None
    if principal is None:
        raise ApiError(
            401,
            "a valid API token is required: send 'Authorization: Bearer TOKEN' (create one with `allora-gitops token create`)",
            headers={"WWW-Authenticate": 'Bearer realm="allora-gitops"'},
        )
    return principal


@dataclass
class Caller:
    """What a route needs about one request: who calls, the records and accounts, the server's settings."""

    principal: Principal
    records: Any
    accounts: Accounts
    settings: ApiSettings


def caller(principal: Principal = Depends(current_principal), session=Depends(open_session), settings: ApiSettings = Depends(get_settings)) -> Caller:
    return Caller(principal, session[0], session[1], settings)
