"""``/api/bundles``: upload an archive (inspected like ``allora-bundle inspect``, stored, recorded) and list them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from allora_gitops import constants as C
from allora_gitops.api.dependencies import Caller, authenticated, caller, get_settings
from allora_gitops.api.problems import ApiError
from allora_gitops.api.auth import Principal
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["bundles"])
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
UPLOAD_FIELD = "bundle"
# one S3 part of the minimum size in flight per stored upload: the server's memory stays bounded under concurrent uploads
STORE_UPLOAD_CONCURRENCY = 1
STORE_PART_SIZE = 5 << 20


class BundleOut(BaseModel):
    name: str
    version: str
    sha256: str
    size: int
    python_version: str
    archive_url: str
    published_by: Optional[str]
    created_at: str
    created: bool = False
    warnings: list[str] = []


def bundle_out(record, *, created: bool = False, warnings: Optional[list[str]] = None) -> BundleOut:
    return BundleOut(
        name=record.name, version=record.version, sha256=record.sha256, size=record.size,
        python_version=record.python_version, archive_url=record.archive_url, published_by=record.published_by,
        created_at=record.created_at.isoformat(), created=created, warnings=warnings or [],
    )  # fmt: skip


NAME_TAKEN = "the bundle name {name!r} is taken; choose another name in model.yaml"


def check_name_free(accounts, principal: Principal, name: str) -> None:
    """RecordConflict (409) when another user owns ``name``. Names are one namespace for every user, so a push
    must say the name is taken; it never says by whom, and every read of another user's name answers 404."""
    from allora_gitops.errors import RecordConflict

    owner = accounts.owner_of(name)
    if owner is not None and owner != principal.user_id and not principal.is_admin:
        raise RecordConflict(NAME_TAKEN.format(name=name))


def store_uploaded_bundle(path: Path, sha256: str, principal: Principal, settings: ApiSettings, pool):
    """Check, store and record an uploaded archive; a refusal leaves the store, the records and the name as they were.

    1. every rule the records enforce is checked first, without writing: the archive (``inspect_archive``, the
       checks of ``allora-bundle inspect``; model.yaml's name and version as the database holds them), the name
       free for this user, the version not already naming other bytes;
    2. the archive is stored (no database connection is held meanwhile);
    3. in one transaction the name is claimed and the record inserted; if that fails, the archive this call
       stored is removed again (unless a record of the same bytes uses it: a concurrent upload of them).

    Returns (BundleRecord, created). Raises ArchiveError/ManifestError (422), RecordConflict (409: the name is
    another user's, or this version names other bytes), DatabaseError/StorageError (503).
    """
    from allora_gitops.api.auth import Accounts
    from allora_gitops.bundle.archive import inspect_archive
    from allora_gitops.db.records import Records
    from allora_gitops.errors import RecordConflict
    from allora_gitops.storage.objects import open_store

    info = inspect_archive(path)
    if info.sha256 != sha256:  # the file changed under us between receiving and reading it
        raise RecordConflict("the upload changed while it was being read; send it again")
    name, version = info.name, info.version
    with pool.connection() as conn:
        check_name_free(Accounts(conn), principal, name)
        existing = Records(pool.database_url, conn=conn).get_bundle(name, version)
    if existing is not None:
        if existing.sha256 != sha256:
            raise RecordConflict(
                f"bundle {name} {version} is already registered with sha256 {existing.sha256}, "
                f"not {sha256}; a version names one archive forever: bump the version"
            )
        return existing, False
    store = open_store(settings.store_url)
    if hasattr(store, "upload_concurrency"):  # an S3 store
        store.upload_concurrency, store.part_size = STORE_UPLOAD_CONCURRENCY, STORE_PART_SIZE
    key = C.archive_object_key(name, version, sha256)
    put = store.put_file(key, path, sha256)
    try:
        with pool.connection() as conn, conn.transaction():
            accounts, records = Accounts(conn), Records(pool.database_url, conn=conn)
            accounts.claim_name(principal, name)
            record = records.register_bundle(
                name=name, version=version, sha256=sha256, size=info.size, archive_url=put.url,
                python_version=info.manifest.python.version, manifest=info.manifest, published_by=principal.name,
            )  # fmt: skip
    except BaseException:
        if put.uploaded:
            _remove_unrecorded(store, key, put.url, sha256, pool)
        raise
    return record, record.created


ARCHIVE_CHECKS_PER_PROCESS = 2
ARCHIVE_CHECK_NICENESS = 10  # Linux nice of those threads: a results post or a page preempts an archive check


def archive_checks(app):
    """The threads the uploads' archive checks (``store_uploaded_bundle``) run on: ``ARCHIVE_CHECKS_PER_PROCESS`` of
    their own (a ``ThreadPoolExecutor``), at a lower CPU priority. Each check unpacks and hashes up to 500 MB:
    more at once, or at the same priority, only slows every other request of the machine (the load benchmark's
    result posts took 3× longer at p95 beside 50 MB uploads); and the checks borrow pooled connections from
    these threads, never from the request thread pool, which stays free for the requests that hold connections
    (``RecordsPool.lease``)."""
    from concurrent.futures import ThreadPoolExecutor

    executor = getattr(app.state, "archive_checks", None)
    if executor is None:
        executor = app.state.archive_checks = ThreadPoolExecutor(
            ARCHIVE_CHECKS_PER_PROCESS, thread_name_prefix="archive-check", initializer=_lower_priority
        )  # fmt: skip
    return executor


def _lower_priority() -> None:
    """This thread's nice value raised by ``ARCHIVE_CHECK_NICENESS`` (Linux schedules threads one by one); best effort."""
    import contextlib
    import os
    import threading

    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + ARCHIVE_CHECK_NICENESS)


def _remove_unrecorded(store, key: str, url: str, sha256: str, pool) -> None:
    """Remove an archive this upload stored and could not record, unless a record uses it; when the records
    cannot be read the archive stays (a stray object is harmless, a record without its archive is not)."""
    import contextlib

    from allora_gitops.db.records import Records

    with contextlib.suppress(Exception):
        with pool.connection() as conn:
            used = any(b.archive_url == url for b in Records(pool.database_url, conn=conn).find_bundle_by_sha256(sha256))
        if not used:
            store.delete(key)


@router.post(
    "/bundles",
    summary="Upload a bundle archive (multipart field 'bundle')",
    status_code=201,
    response_model=BundleOut,
    responses={200: {"description": "These exact bytes were already stored: no new record"}, 408: {}, 409: {}, 413: {}, 422: {}, 429: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": [UPLOAD_FIELD],
                "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
            }}},
        }
    },  # fmt: skip
)
async def upload_bundle(request: Request, principal: Principal = Depends(authenticated), settings: ApiSettings = Depends(get_settings)):
    record, created = await receive_bundle(request, principal, settings)
    return JSONResponse(bundle_out(record, created=created).model_dump(), status_code=201 if created else 200)


async def receive_bundle(request: Request, principal: Principal, settings: ApiSettings, *, keep: tuple[str, ...] = (), check=None):
    """The upload pipeline of ``POST /api/bundles`` and the console's upload page: the caller's uploads counted
    (429 past ``uploads_per_user``), the multipart field ``bundle`` streamed to a spool under the caller's limit,
    ``check(fields)`` called with the text fields named in ``keep`` (the page's CSRF token) before anything is
    stored, then :func:`store_uploaded_bundle`; the spool is removed whatever happens.

    Returns (BundleRecord, created). Raises what ``receive_file``, ``check`` and ``store_uploaded_bundle`` raise."""
    import asyncio

    import anyio

    from allora_gitops.api.dependencies import records_pool_ready
    from allora_gitops.api.upload import receive_file

    limit = min(settings.max_upload_bytes, principal.max_upload_bytes or settings.max_upload_bytes)
    uploads: dict = request.app.state.uploads
    if uploads.get(principal.user_id, 0) >= settings.uploads_per_user:
        raise ApiError(
            429, f"{settings.uploads_per_user} uploads of yours are in progress on this server; wait for one to finish",
            headers={"Retry-After": "2", "Connection": "close"},
        )  # fmt: skip
    uploads[principal.user_id] = uploads.get(principal.user_id, 0) + 1  # one event loop: no await in between
    spool = tempfile.mkdtemp(prefix="allora-upload-", dir=settings.upload_dir)
    request.state.scrub = (spool + "/", spool)
    try:
        received = await receive_file(
            request, Path(spool), field=UPLOAD_FIELD, limit=limit, idle=settings.upload_idle_seconds, total=settings.upload_total_seconds,
            keep=keep,
        )  # fmt: skip
        if check is not None:
            check(received.fields)
        pool = await records_pool_ready(request)
        job = archive_checks(request.app).submit(store_uploaded_bundle, received.path, received.sha256, principal, settings, pool)
        with anyio.CancelScope(shield=True):  # the spool goes only once the check is done with it
            return await asyncio.wrap_future(job)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        left = uploads.get(principal.user_id, 1) - 1
        if left > 0:
            uploads[principal.user_id] = left
        else:
            uploads.pop(principal.user_id, None)


@router.get("/bundles", summary="The bundles the caller owns (every bundle for an admin), newest first", response_model=list[BundleOut])
def list_bundles(c: Caller = Depends(caller)):
    names = c.accounts.owned_names(c.principal)
    return [bundle_out(b) for b in c.records.list_bundles() if names is None or b.name in names]


@router.get("/bundles/{name}/{version}", summary="One bundle version", response_model=BundleOut, responses={404: {}})
def get_bundle(
    name: str = PathParam(..., pattern=NAME_PATTERN, max_length=C.MAX_NAME_LENGTH),
    version: str = PathParam(..., pattern=VERSION_PATTERN, max_length=64),
    c: Caller = Depends(caller),
):
    record = c.records.get_bundle(name, version) if c.accounts.may_see(c.principal, name) else None
    if record is None:
        raise ApiError(404, f"no bundle {name} {version}")
    return bundle_out(record)
