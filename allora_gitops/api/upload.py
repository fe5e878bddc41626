"""Receiving a ``multipart/form-data`` upload: streamed to disk while hashed, cut off past the limit.

The body is fed chunk by chunk to python-multipart's push parser; the bytes of the one file field
go straight to a file and into sha256, so memory stays at one network chunk whatever the size.
A declared ``Content-Length`` over the limit is refused before a byte is read; a body without one
(chunked) is refused as soon as it passes the limit. A client that stops sending (between chunks or inside a
part's headers) is cut off after ``idle`` seconds, a slow one after ``total`` seconds (408): no connection is
held meanwhile (the route authenticated on one it gave back), only this coroutine.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Optional

from starlette.requests import Request

from allora_gitops.api.problems import ApiError

FORM_OVERHEAD = 64 << 10  # headers and boundaries around the file, and small fields
FIELD_LIMIT = 4096  # a kept text field (the console's CSRF token): bytes beyond it are dropped
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    sha256: str
    size: int
    filename: str  # the client's file name, reduced to a safe base name
    fields: dict[str, str] = dataclass_field(default_factory=dict)  # the small text fields asked for (``keep``)


def safe_filename(raw: Optional[str], default: str = "bundle.tar.gz") -> str:
    """The base name of what the client called its file, reduced to ``[A-Za-z0-9._-]``; ``default`` if nothing useful is left."""
    base = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    return base[:200] if base.endswith((".tar.gz", ".tgz")) else default


# Refusing mid-body: the connection is closed with the answer, so the rest of the body is not even received.
CLOSE = {"Connection": "close"}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the upload is larger than the limit of {limit >> 20} MB; nothing was stored", headers=CLOSE)


async def body_chunks(request: Request, *, idle: float, total: float):
    """The request body's chunks as they arrive; ApiError 408 when none comes for ``idle`` seconds or the whole
    body takes longer than ``total``, 400 when the client goes away."""
    deadline = time.monotonic() + total
    while True:
        wait = min(idle, deadline - time.monotonic())
        if wait <= 0:
            raise ApiError(408, f"the upload took longer than {total:g} s; nothing was stored", title="Request Timeout", headers=CLOSE)
        try:
            message = await asyncio.wait_for(request.receive(), wait)
        except asyncio.TimeoutError:
            if time.monotonic() >= deadline:
                raise ApiError(408, f"the upload took longer than {total:g} s; nothing was stored", title="Request Timeout", headers=CLOSE) from None
            raise ApiError(408, f"the upload sent nothing for {idle:g} s; nothing was stored", title="Request Timeout", headers=CLOSE) from None
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away before the upload ended; nothing was stored", headers=CLOSE)
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def receive_file(
    request: Request, directory: Path, *, field: str, limit: int, idle: float = 30.0, total: float = 1800.0,
    keep: tuple[str, ...] = (),
) -> ReceivedFile:
    """Stream the form field ``field`` of ``request`` into ``directory``; (path, sha256, size, filename, fields).
    The text fields named in ``keep`` (a form's CSRF token) are kept in ``fields``, each cut at ``FIELD_LIMIT``
    bytes and decoded as UTF-8; every other field is skipped.

    Raises ApiError: 415 (not multipart), 413 (over ``limit`` bytes, declared or streamed), 408 (no byte for
    ``idle`` seconds, or longer than ``total``), 422 (no such field, or a malformed body).
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(415, f"send the bundle as multipart/form-data with a file field {field!r} (curl -F \"{field}=@FILE\")", headers=CLOSE)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise _too_large(limit)

    state: dict = {"headers": {}, "field": b"", "value": b"", "out": None, "found": None, "text": None}
    texts: dict[str, bytearray] = {}
    digest = hashlib.sha256()
    written = 0

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        state["text"] = texts.setdefault(name, bytearray()) if name in keep and name != field else None
        if name == field and state["found"] is None:
            filename = safe_filename(disposition.get(b"filename", b"").decode("utf-8", "replace"))
            path = Path(directory) / filename
            state["found"] = (path, filename)
            state["out"] = open(path, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal written
        out = state["out"]
        if out is None:
            text = state["text"]
            if text is not None and len(text) < FIELD_LIMIT:
                text += data[start:end][: FIELD_LIMIT - len(text)]
            return
        chunk = data[start:end]
        written += len(chunk)
        if written > limit:
            raise _too_large(limit)
        digest.update(chunk)
        out.write(chunk)

    def on_part_end() -> None:
        state["text"] = None
        if state["out"] is not None:
            state["out"].close()
            state["out"] = None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )  # fmt: skip
    received = 0
    try:
        async for chunk in body_chunks(request, idle=idle, total=total):
            received += len(chunk)
            if received > limit + FORM_OVERHEAD:
                raise _too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise ApiError(422, "the multipart body is malformed", headers=CLOSE) from None
    finally:
        if state["out"] is not None:
            state["out"].close()
    if state["found"] is None:
        raise ApiError(422, f"no file field {field!r} in the form (curl -F \"{field}=@FILE\")")
    path, filename = state["found"]
    fields = {k: bytes(v).decode("utf-8", "replace") for k, v in texts.items()}
    return ReceivedFile(path=path, sha256=digest.hexdigest(), size=written, filename=filename, fields=fields)
