"""``/api/bundles``: upload an archive (inspected like ``allora-bundle inspect``, stored, recorded) and list them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from allora_gitops import constants as C
from allora_gitops.api.app import ApiError, Caller, caller
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


def store_uploaded_bundle(path: Path, sha256: str, principal: Principal, settings: ApiSettings, records, accounts):
    """Inspect (the checks of ``allora-bundle inspect``), claim the name, store and record an uploaded archive.

    Returns (BundleRecord, created). Raises ArchiveError (unsafe, altered, secrets: nothing stored),
    RecordConflict (the name is another user's, or this version names other bytes).
    """
    from allora_gitops.bundle.archive import inspect_archive
    from allora_gitops.errors import RecordConflict
    from allora_gitops.storage.objects import open_store

    info = inspect_archive(path)
    if info.sha256 != sha256:  # the file changed under us between receiving and reading it
        raise RecordConflict("the upload changed while it was being read; send it again")
    name, version = info.name, info.version
    accounts.claim_name(principal, name)
    existing = records.get_bundle(name, version)
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
    put = store.put_file(C.archive_object_key(name, version, sha256), path, sha256)
    record = records.register_bundle(
        name=name, version=version, sha256=sha256, size=info.size, archive_url=put.url,
        python_version=info.manifest.python.version, manifest=info.manifest, published_by=principal.name,
    )  # fmt: skip
    return record, record.created


@router.post(
    "/bundles",
    summary="Upload a bundle archive (multipart field 'bundle')",
    status_code=201,
    response_model=BundleOut,
    responses={200: {"description": "These exact bytes were already stored: no new record"}, 409: {}, 413: {}, 422: {}},
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
async def upload_bundle(request: Request, c: Caller = Depends(caller)):
    from allora_gitops.api.upload import receive_file

    limit = min(c.settings.max_upload_bytes, c.principal.max_upload_bytes or c.settings.max_upload_bytes)
    spool = tempfile.mkdtemp(prefix="allora-upload-", dir=c.settings.upload_dir)
    request.state.scrub = (spool + "/", spool)
    try:
        received = await receive_file(request, Path(spool), field=UPLOAD_FIELD, limit=limit)
        record, created = await run_in_threadpool(
            store_uploaded_bundle, received.path, received.sha256, c.principal, c.settings, c.records, c.accounts
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return JSONResponse(bundle_out(record, created=created).model_dump(), status_code=201 if created else 200)


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
