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
    RenderError,
    ResultsError,
    StorageError,
    UsageError,
)

API_PREFIX = "/api"
PROBLEM_MEDIA_TYPE = "application/problem+json"
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
    if isinstance(exc, (DatabaseError, StorageError)):
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
            {"field": ".".join(str(x) for x in e.get("loc", ()) if x != "body"), "message": e.get("msg", "invalid")}
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


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for ``settings``: health, OpenAPI at ``/api/openapi.json``, bundles and deployments under ``/api``."""
    from allora_gitops.api import bundles, deployments, results

    app = FastAPI(
        title="allora-gitops platform API",
        version=__version__,
        description="Upload model bundles and deploy them through the GitOps repository (a review branch per change).",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
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

    app.include_router(bundles.router, prefix=API_PREFIX)
    app.include_router(deployments.router, prefix=API_PREFIX)
    app.include_router(results.router, prefix=API_PREFIX)
    return app


# --- dependencies shared by the routers ----------------------------------------------------------


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def open_session(settings: ApiSettings = Depends(get_settings)) -> Iterator[tuple[Any, Accounts]]:
    """(records, accounts) on one database connection for the request; closed after the response."""
    from allora_gitops.db import open_records

    records = open_records(settings.database_url)
    try:
        yield records, Accounts(records.connection)
    finally:
        records.close()


def current_principal(request: Request, session=Depends(open_session)) -> Principal:
    """The caller, from ``Authorization: Bearer TOKEN``; 401 (the same answer) for missing, unknown, revoked or expired."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = session[1].authenticate(token.strip()) if scheme.lower() == "bearer" else None
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
