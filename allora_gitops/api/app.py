"""The FastAPI application: problem responses, authentication, and the routers of each resource.

Every error leaves as one RFC 9457 problem object (``application/problem+json``: type, title, status,
detail, and ``problems`` — one per file/line when the core error has them), never a traceback: the
project's own errors are mapped by kind, anything else is a 500 that says only "internal error".
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from allora_gitops import __version__
from allora_gitops.api.auth import Accounts
from allora_gitops.api.dependencies import records_pool_ready
from allora_gitops.api.problems import _TITLES, ApiError, core_problem, problem, validation_problem
from allora_gitops.api.settings import ApiSettings
from allora_gitops.errors import AlloraGitopsError, DatabaseUnavailable

API_PREFIX = "/api"
# Every body but the upload's is a small JSON document: a larger one is refused before the routes (and
# before authentication) ever see it, so nobody can make the server hold a body of any size in memory.
MAX_REQUEST_BODY = 64 << 10  # > allora_runtime.contract.RESULTS_BATCH_BYTES: a results batch always fits
UPLOAD_ROUTE = ("POST", f"{API_PREFIX}/bundles")  # streamed to disk under its own limit (api/upload.py)
CONSOLE_UPLOAD_ROUTE = ("POST", "/upload")  # the console's upload form (api/console.py): the same pipeline
BUSY_RETRY_AFTER_SECONDS = 1  # a busy pool frees a connection within milliseconds: come back soon, not in 5 s
OPENAPI_VERSION = "1"  # the API contract's version (routes under /api/v1 keep it); bump on a breaking change
log = logging.getLogger("allora_gitops.api")



def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return problem(exc.status, exc.detail, title=exc.title, problems=exc.problems, headers=exc.headers)

    @app.exception_handler(AlloraGitopsError)
    async def _core_error(request: Request, exc: AlloraGitopsError):
        from allora_gitops.db.connection import DatabaseBusy

        if isinstance(exc, DatabaseUnavailable):  # where the database lives is the operator's business: the log's
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
            return problem(503, "the records database is unavailable; try again shortly", headers={"Retry-After": "5"})
        if isinstance(exc, DatabaseBusy):  # saturated: every connection stayed lent out for the whole wait
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
            return problem(503, exc.message, headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
        status, detail, problems = core_problem(exc, request)
        return problem(status, detail, problems=problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        status, detail, problems = validation_problem(exc.errors())
        return problem(status, detail, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        why = _unreadable_json(exc)
        if why is not None:  # the same problem as any other JSON the reader refuses, saying why
            problems = [{"field": "body", "message": f"not valid JSON ({why})"}]
            return problem(422, f"the request is invalid: body: not valid JSON ({why})", problems=problems)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    # Input errors raised below our own code are the client's too: a 4xx problem, never a 500 or a retryable 503.
    from python_multipart.exceptions import FormParserError
    from psycopg import DataError

    @app.exception_handler(FormParserError)
    async def _multipart(request: Request, exc: FormParserError):
        # python-multipart refuses before or while parsing (a boundary over 256 characters: CVE-2024-24762's
        # shape; a malformed part); its message names the limit, never the client's bytes
        return problem(400, f"the multipart body is malformed: {str(exc)[:200]}", headers={"Connection": "close"})

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError):
        from allora_gitops.db.connection import translate_error

        return problem(422, f"a value in the request cannot be stored: {translate_error(exc)}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        from allora_gitops.db.refusals import describe_refusal

        refusal = describe_refusal(exc)  # a database refusal no route translated: still the input's words
        if refusal is not None:
            return problem(409 if refusal.conflict else 422, str(refusal))
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem(500, f"internal error ({type(exc).__name__}); the server log has the request")


def _unreadable_json(exc: StarletteHTTPException) -> Optional[str]:
    """Why FastAPI could not read a JSON body, when ``exc`` is its bare "There was an error parsing the body" (400).

    FastAPI turns a ``JSONDecodeError`` into a validation error (422, with the position) but anything else the reader
    raises into that 400 without a reason: bytes that are not UTF-8, nesting deeper than Python's recursion limit,
    an integer of more digits than Python converts. The client's bytes are never quoted.
    """
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None or exc.detail != "There was an error parsing the body":
        return None
    if isinstance(cause, UnicodeDecodeError):
        return f"not UTF-8 at byte {cause.start}"
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"a number of more than {sys.get_int_max_str_digits()} digits"
    return "malformed"


class BodyLimit:
    """ASGI middleware: a request body other than the upload's is read here, at most ``limit`` bytes within
    ``idle`` seconds (else 408), and handed on whole; a larger one (declared in ``Content-Length`` or sent chunked) is a 413 problem and the
    connection is closed. FastAPI reads a JSON body into memory before any dependency runs, so without this
    an unauthenticated client could make the server hold a body of any size.
    """

    def __init__(self, app, limit: int = MAX_REQUEST_BODY, exempt: tuple[tuple[str, str], ...] = (UPLOAD_ROUTE, CONSOLE_UPLOAD_ROUTE), idle: float = 30.0):
        self.app, self.limit, self.exempt, self.idle = app, limit, exempt, idle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"].rstrip("/")) in self.exempt:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        import asyncio

        messages, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.idle  # a small body: the idle deadline bounds all of it
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0.001))
            except asyncio.TimeoutError:
                detail = f"the request body did not arrive within {self.idle:g} s"
                return await problem(408, detail, headers={"Connection": "close"})(scope, receive, send)
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


class RefuseNulInUrl:
    """ASGI middleware: a path or query that decodes to a NUL (``%00``) is a 400 problem before any route runs.

    No name, id or filter of ours holds one, and PostgreSQL's text refuses it: without this the same request
    is a 503 or a 500 depending on which query meets it first. (Headers cannot carry one: the HTTP parser
    refuses them.)
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")):
            return await problem(400, "the URL holds a NUL character (%00)")(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for ``settings``: health, OpenAPI at ``/api/openapi.json``, bundles and deployments under ``/api``."""
    import contextlib

    from allora_gitops.api import argocd, bundles, chain, console, deployments, docs, logs, results, web

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.pod_verifier is not None:
            app.state.pod_verifier.start()  # the pods' issuer keys, fetched before the first report needs them
        try:
            yield
        finally:
            pool = getattr(app.state, "pool", None)
            if pool is not None:
                pool.close()

    app = FastAPI(
        title="allora-gitops platform API",
        version=OPENAPI_VERSION,  # the API's, not the server's build: that is shown to token holders only
        description="Upload model bundles and deploy them through the GitOps repository (a review branch per change).",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served from vendored assets (api/docs.py), not a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = None  # db/connection.py RecordsPool, made at the first request (after the schema check)
    app.state.uploads = {}  # user id -> uploads streaming now (the per-user cap, this process)
    app.add_middleware(BodyLimit, idle=settings.upload_idle_seconds)
    app.add_middleware(RefuseNulInUrl)
    app.state.pod_verifier = None  # POST /api/v1/results answers 503 until the cluster's issuer is configured
    if settings.pod_jwks and settings.pod_issuer:
        from allora_gitops.api.podidentity import JwksFetcher, PodTokenVerifier

        fetcher = None
        if settings.pod_jwks.startswith(("https://", "http://")):
            fetcher = JwksFetcher(
                settings.pod_jwks, ca_file=settings.pod_jwks_ca_file, token_file=settings.pod_jwks_token_file,
                max_stale_seconds=settings.pod_jwks_max_stale_seconds,
            )  # fmt: skip
        app.state.pod_verifier = PodTokenVerifier(
            settings.pod_jwks, settings.pod_issuer, namespace=settings.models_namespace,
            max_lifetime=settings.pod_token_max_lifetime_seconds, fetcher=fetcher,
        )  # fmt: skip
    _install_handlers(app)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers (the version only with a valid token)")
    async def healthz(request: Request) -> dict:
        return await _with_version(request, {"status": "ok"})

    @app.get(f"{API_PREFIX}/health", tags=["health"], summary="Readiness: the records database answers (the version only with a valid token)")
    async def health(request: Request) -> dict:
        return await _with_version(request, {"status": "ok", "database": await database_state(request)})

    unauthorized = {401: {"description": "Missing, unknown, revoked or expired token (a problem object)"}}
    app.include_router(bundles.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(deployments.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(results.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(argocd.router, prefix=API_PREFIX, responses=unauthorized)  # Argo CD's notifications webhook
    app.include_router(logs.router, prefix=API_PREFIX, responses=unauthorized)
    app.include_router(docs.docs_router(app.openapi_url, app.title))
    app.include_router(web.router)  # the monitoring pages (HTML, session cookie)
    app.include_router(console.router)  # the deploy pages: upload, deploy with a preview, promote/rollback/retire
    app.include_router(logs.page_router)  # the deployment page's live tail
    from allora_gitops.api import console_admin

    app.include_router(console_admin.router)  # the tokens page and the admin pages, on the pages' session (api/web.py)
    app.include_router(chain.router, responses=unauthorized)  # GET /metrics: allora_chain_* (api/chain.py)
    return app


READINESS_WAIT_SECONDS = 1.0


async def database_state(request: Request) -> str:
    """``ok`` when a pooled connection answers; ``busy`` when every one is lent out but a fresh connection
    answers (the server is loaded, not broken: it stays ready); else DatabaseError (503 "database down")."""
    from starlette.concurrency import run_in_threadpool

    from allora_gitops.db.connection import DatabaseBusy, database_answers

    pool = await records_pool_ready(request)
    try:
        async with pool.lease(timeout=READINESS_WAIT_SECONDS) as conn:
            await run_in_threadpool(conn.execute, "SELECT 1")
        return "ok"
    except DatabaseBusy:
        if await run_in_threadpool(database_answers, pool.database_url):
            return "busy"
        raise DatabaseUnavailable("the database is down: it does not answer") from None  # answered without where it lives


async def _with_version(request: Request, body: dict) -> dict:
    """``body`` plus the server's version when the request carries a valid API token: which release runs
    tells an attacker which published flaws apply, and the probes that read these need no token."""
    from starlette.concurrency import run_in_threadpool

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return body
    try:
        pool = await records_pool_ready(request)
        async with pool.lease(timeout=READINESS_WAIT_SECONDS) as conn:
            principal = await run_in_threadpool(Accounts(conn).authenticate, token.strip())
    except AlloraGitopsError:  # liveness does not depend on the database: no version then
        return body
    return {**body, "version": __version__} if principal is not None else body


def create_app_from_environment() -> FastAPI:
    """The app for the settings in the environment (``load_api_settings()``): the factory each worker
    process of ``serve --workers N`` calls."""
    from allora_gitops.api.settings import load_api_settings

    return create_app(load_api_settings())
