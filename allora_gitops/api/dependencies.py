"""What the routers share per request: the server's settings, the records pool and a pooled session, the caller
from an API token (``Authorization: Bearer``), and ``Caller`` that bundles them. The application module includes
the routers; the routers take these from here, so nothing imports back into ``api/app.py``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allora_gitops.api.auth import Accounts, Principal
from allora_gitops.api.problems import ApiError
from allora_gitops.api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


_POOL_LOCK = threading.Lock()


def records_pool(request: Request):
    """The process's pool (``RecordsPool``), made at the first request, after the schema was checked against this
    code's migrations once (``serve`` checks it at start too): an applied migration stays applied. Blocking the
    first time: async code awaits :func:`records_pool_ready`."""
    app = request.app
    if app.state.pool is None:
        from allora_gitops.db import open_records
        from allora_gitops.db.connection import RecordsPool

        with _POOL_LOCK:
            if app.state.pool is None:
                settings: ApiSettings = app.state.settings
                checked = open_records(settings.database_url)
                checked.close()
                app.state.pool = RecordsPool(checked.database_url, max_size=settings.db_pool_size, timeout=settings.db_pool_timeout_seconds)
    return app.state.pool


async def records_pool_ready(request: Request):
    """:func:`records_pool` from async code: the first call (the schema check) runs on a worker thread."""
    from starlette.concurrency import run_in_threadpool

    pool = request.app.state.pool
    return pool if pool is not None else await run_in_threadpool(records_pool, request)


def records_connection(request: Request, timeout: Optional[float] = None):
    """A context manager lending one pooled connection to the calling thread (``DatabaseBusy`` after ``timeout`` s:
    a 503), for work that starts and ends on that thread; a dependency that hands a connection on uses
    ``RecordsPool.lease`` instead (see :func:`open_session`)."""
    return records_pool(request).connection(timeout=timeout)


async def open_session(request: Request) -> AsyncIterator[tuple[Any, Accounts]]:
    """(records, accounts) on one pooled connection for the request, given back after the response.

    The connection is leased in the event loop (``RecordsPool.lease``): a request waits for it without holding a
    worker thread, and holds it only once it can run; the dependencies and the route that use it run on worker
    threads. Routes that wait on a client or a remote take :func:`authenticated` instead and borrow a connection
    only to write."""
    from allora_gitops.db.records import Records

    pool = await records_pool_ready(request)
    async with pool.lease() as conn:
        yield Records(pool.database_url, conn=conn), Accounts(conn)


# declares the scheme in the OpenAPI document (securitySchemes, and `security` on every route that needs it);
# the refusal itself stays ours, one problem object for every way a token can be wrong
bearer = HTTPBearer(auto_error=False, scheme_name="token", description="An API token (`allora-bundle login` saves one; an admin creates them with `allora-gitops token create`)")


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "a valid API token is required: send 'Authorization: Bearer TOKEN'; this one is missing, unknown, revoked or expired "
        "(ask your platform's admin for a new token, then run `allora-bundle login --platform URL`)",
        headers={"WWW-Authenticate": 'Bearer realm="allora-gitops"'},
    )


def current_principal(
    credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer), session=Depends(open_session)
) -> Principal:
    """The caller, from ``Authorization: Bearer TOKEN``; 401 (the same answer) for missing, unknown, revoked or expired."""
    principal = session[1].authenticate(credentials.credentials.strip()) if credentials is not None else None
    if principal is None:
        raise _unauthorized()
    return principal


async def authenticated(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> Principal:
    """The caller, like :func:`current_principal`, on a connection given back before the route runs: for a route
    that then waits on its client (an upload's body) while holding nothing of the database."""
    from starlette.concurrency import run_in_threadpool

    if credentials is None:
        raise _unauthorized()
    pool = await records_pool_ready(request)
    async with pool.lease() as conn:
        principal = await run_in_threadpool(Accounts(conn).authenticate, credentials.credentials.strip())
    if principal is None:
        raise _unauthorized()
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
