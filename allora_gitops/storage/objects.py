"""Archive storage behind one interface: ``file://DIR`` (the default) and ``s3://bucket/prefix``.

Objects are keyed by content (``constants.archive_object_key``), so the promises are simple:

- ``put_file`` skips the transfer when the key already holds the same bytes (one HEAD on S3, where the
  sha256 travels as object metadata), and never leaves a visible object that is partial or whose bytes
  do not hash to the key's sha256: the file backend writes a temp file in the target directory,
  fsyncs, renames and fsyncs the directory; the S3 backend hashes while it uploads the parts and only
  completes the multipart upload when the hash matches, then checks size and ETag with one HEAD;
- ``get_file`` writes to a temp file beside ``dest`` and renames it only when its sha256 matches.

Errors are ``StorageError`` with one line that names the object, never a boto traceback or a credential.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from allora_gitops.constants import STORE_URL_ENV
from allora_gitops.errors import StorageError, UsageError

CHUNK = 4 * 1024 * 1024
SHA256_METADATA = "sha256"  # x-amz-meta-sha256


@dataclass(frozen=True)
class PutResult:
    url: str
    key: str
    sha256: str
    size: int
    uploaded: bool  # False: the store already held these bytes, nothing was transferred


class ObjectStore(ABC):
    """Content-addressed archive storage."""

    url: str  # the store itself, e.g. file:///home/u/.local/share/allora-gitops/objects or s3://bucket/prefix

    @abstractmethod
    def url_for(self, key: str) -> str: ...

    @abstractmethod
    def exists(self, key: str, sha256: str) -> bool:
        """True when ``key`` holds an object recorded with ``sha256``."""

    @abstractmethod
    def put_file(self, key: str, path: Path, sha256: str, *, progress: bool | None = None) -> PutResult: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when absent): undoes a ``put_file`` whose record could not be written."""

    @abstractmethod
    def get_file(self, key: str, dest: Path, sha256: str, *, progress: bool | None = None) -> Path: ...


def store_of(object_url: str | None, key: str) -> str | None:
    """The store URL an object was stored in: ``object_url`` (``ObjectStore.url_for(key)``) without ``/KEY``.

    ``None`` when ``object_url`` is not ``file://…/KEY`` or ``s3://…/KEY`` (e.g. no URL was recorded).
    Promote and rollback fetch a recorded archive from where publish stored it, not from whichever
    store this operator's defaults name today.
    """
    suffix = "/" + key
    if not object_url or not object_url.startswith(("file://", "s3://")) or not object_url.endswith(suffix):
        return None
    return object_url[: -len(suffix)] or None


def open_store(url: str | None = None) -> ObjectStore:
    """The store at ``url``; else ``$ALLORA_STORE_URL``; else ``file://<state dir>/objects``."""
    url = url or os.environ.get(STORE_URL_ENV, "").strip() or None
    if url is None:
        from allora_gitops.state import state_home

        return FileStore(state_home() / "objects")
    from allora_gitops.redact import display_url

    shown = display_url(url)  # every message below may quote the URL: never its credentials
    if url.startswith("file://"):
        raw = url[len("file://"):]
        if not raw:
            raise UsageError(f"store URL {shown!r} names no directory (file:///absolute/dir)")
        return FileStore(Path(raw).expanduser())
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if "@" in bucket:
            raise UsageError(
                f"store URL {shown!r} holds credentials; give them as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if not bucket:
            raise UsageError(f"store URL {shown!r} names no bucket (s3://bucket/prefix)")
        prefix, _, query = prefix.partition("?")
        return S3Store(bucket, prefix.strip("/"), checksum_calculation=_checksum_setting(query, shown))
    raise UsageError(f"store URL {shown!r}: expected file://DIR or s3://bucket/prefix")


CHECKSUM_CALCULATIONS = ("when_supported", "when_required")  # botocore's request_checksum_calculation values


def _checksum_setting(query: str, shown: str) -> str | None:
    """The store URL's ``?request_checksum_calculation=when_required`` (botocore's setting of that name)."""
    from urllib.parse import parse_qsl

    value = None
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key != "request_checksum_calculation":
            raise UsageError(f"store URL {shown!r}: unknown setting {key!r} (known: request_checksum_calculation)")
        if item not in CHECKSUM_CALCULATIONS:
            raise UsageError(
                f"store URL {shown!r}: request_checksum_calculation must be {' or '.join(CHECKSUM_CALCULATIONS)}, got {item!r}"
            )
        value = item
    return value


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object key {key!r}")
    return key


def _check_sha256(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise StorageError(f"not a sha256 hex digest: {sha256[:80]!r}")
    return sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Progress:
    """A rich progress bar on a terminal (stderr), nothing otherwise."""

    def __init__(self, label: str, total: int, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label, self.total = label, total
        self._bar = self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --- file:// ------------------------------------------------------------------------------------
class FileStore(ObjectStore):
    """Objects as files under ``root``, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def exists(self, key: str, sha256: str) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        try:
            return file_sha256(path) == _check_sha256(sha256)
        except OSError as exc:
            raise StorageError(f"cannot read {self.url_for(key)}: {_os_reason(exc)}") from None

    def put_file(self, key: str, path: Path, sha256: str, *, progress: bool | None = None) -> PutResult:
        _check_sha256(sha256)
        target = self._path(key)
        size = _source_size(path)
        if target.is_file() and target.stat().st_size == size and self.exists(key, sha256):
            return PutResult(self.url_for(key), key, sha256, size, uploaded=False)
        _atomic_copy(Path(path), target, sha256, f"store {Path(path).name}", progress,
                     on_error=lambda reason: f"cannot write {self.url_for(key)}: {reason}",
                     on_mismatch=lambda got: f"{path} does not match its sha256 (expected {sha256}, read {got}); nothing was stored")
        return PutResult(self.url_for(key), key, sha256, size, uploaded=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot remove {self.url_for(key)}: {_os_reason(exc)}") from None

    def get_file(self, key: str, dest: Path, sha256: str, *, progress: bool | None = None) -> Path:
        _check_sha256(sha256)
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"no object {self.url_for(key)}")
        _atomic_copy(source, Path(dest), sha256, f"fetch {source.name}", progress,
                     on_error=lambda reason: f"cannot copy {self.url_for(key)} to {dest}: {reason}",
                     on_mismatch=lambda got: f"object {self.url_for(key)} is corrupted: its sha256 is {got}, expected {sha256}")
        return Path(dest)


def _source_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {_os_reason(exc)}") from None


def _discard_temp(tmp_name: str | None) -> None:
    """Remove a temp file left by a failed write; failing to remove it must not hide the first error."""
    if tmp_name is not None:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass


def _atomic_copy(source: Path, target: Path, sha256: str, label: str, progress, *, on_error, on_mismatch) -> None:
    """Copy ``source`` to ``target`` through a temp file in the same directory, renamed only if it hashes to ``sha256``."""
    tmp_name = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src, _Progress(label, source.stat().st_size, progress) as bar:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != sha256:
            raise StorageError(on_mismatch(got))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        tmp_name = None
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(on_error(_os_reason(exc))) from None
    finally:
        _discard_temp(tmp_name)


# --- s3:// --------------------------------------------------------------------------------------
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
UPLOAD_CONCURRENCY = 10


class S3Store(ObjectStore):
    """Objects in ``bucket`` under ``prefix``, through boto3 (standard AWS env; AWS_ENDPOINT_URL for S3-compatible servers).

    ``checksum_calculation`` is botocore's ``request_checksum_calculation``: None follows the
    standard ``AWS_REQUEST_CHECKSUM_CALCULATION`` variable / config file (default
    ``when_supported``); ``when_required`` sends no CRC32 trailers (``aws-chunked``), for stores
    that answer 501 to them. Our own sha256 check of every upload holds either way.
    """

    # parts in flight per upload and their size (memory: about twice concurrency × part size); a server
    # that takes several uploads at once lowers them for a bounded footprint (S3's minimum part is 5 MiB)
    upload_concurrency = UPLOAD_CONCURRENCY
    part_size = PART_SIZE

    def __init__(self, bucket: str, prefix: str = "", client=None, *, checksum_calculation: str | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client
        self.checksum_calculation = checksum_calculation

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            try:
                self._client = boto3.session.Session().client(
                    "s3",
                    config=Config(
                        request_checksum_calculation=self.checksum_calculation,  # None: the standard variable decides
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=120,
                        max_pool_connections=UPLOAD_CONCURRENCY + 4,
                    ),
                )
            except Exception as exc:  # noqa: BLE001 - bad region/endpoint settings
                raise StorageError(f"cannot set up the S3 client for {self.url}: {type(exc).__name__}") from None
        return self._client

    @property
    def sends_checksums(self) -> bool:
        """Whether optional request checksums go out (CRC32 trailers on part uploads): not with ``when_required``."""
        return getattr(self.client.meta.config, "request_checksum_calculation", "when_supported") != "when_required"

    @property
    def endpoint(self) -> str:
        from allora_gitops.redact import display_url

        return display_url(self.client.meta.endpoint_url)

    def _object_key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, f"look up {self.url_for(key)}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"look up {self.url_for(key)}") from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"remove {self.url_for(key)}") from None

    def exists(self, key: str, sha256: str) -> bool:
        head = self._head(key)
        return head is not None and head.get("Metadata", {}).get(SHA256_METADATA) == _check_sha256(sha256)

    def put_file(self, key: str, path: Path, sha256: str, *, progress: bool | None = None) -> PutResult:
        _check_sha256(sha256)
        size = _source_size(path)
        head = self._head(key)
        if head is not None and head.get("Metadata", {}).get(SHA256_METADATA) == sha256 and head.get("ContentLength") == size:
            return PutResult(self.url_for(key), key, sha256, size, uploaded=False)
        try:
            if size < MULTIPART_THRESHOLD:
                checksum = self._put_single(key, Path(path), sha256, progress)
            else:
                checksum = self._put_multipart(key, Path(path), sha256, size, progress)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {_os_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - botocore errors become one line
            raise self._error(exc, f"upload to {self.url_for(key)}") from None
        self._verify(key, size, sha256, checksum)
        return PutResult(self.url_for(key), key, sha256, size, uploaded=True)

    def _put_single(self, key: str, path: Path, sha256: str, progress) -> str:
        body = path.read_bytes()
        got = hashlib.sha256(body).hexdigest()
        if got != sha256:
            raise StorageError(f"{path} does not match its sha256 (expected {sha256}, read {got}); nothing was uploaded")
        with _Progress(f"upload {path.name}", len(body), progress) as bar:
            self.client.put_object(
                Bucket=self.bucket, Key=self._object_key(key), Body=body,
                ChecksumSHA256=_b64(bytes.fromhex(sha256)),  # the server refuses bytes that do not match
                ContentType="application/gzip", Metadata={SHA256_METADATA: sha256},
            )
            bar.advance(len(body))
        return _b64(bytes.fromhex(sha256))

    def _put_multipart(self, key: str, path: Path, sha256: str, size: int, progress) -> str:
        """Parts go up in parallel, each with a CRC32 that the server checks (botocore computes it, as
        for ``upload_file``), while one reader hashes the whole file in order; the upload is completed
        only if that hash matches, so a wrong or changing file never becomes a visible object.

        Returns the composite checksum S3 reports for the object: CRC32 of the part CRC32s, "-N"; or ""
        when the store is set to ``when_required`` (no part checksums are sent, so none is reported).
        """
        import base64
        import zlib
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        object_key = self._object_key(key)
        # An explicit ChecksumAlgorithm makes botocore send a CRC32 trailer whatever the setting says.
        crc = {"ChecksumAlgorithm": "CRC32"} if self.sends_checksums else {}
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=object_key, ContentType="application/gzip", Metadata={SHA256_METADATA: sha256}, **crc,
        )["UploadId"]
        completed = False
        try:
            digest = hashlib.sha256()
            parts: dict[int, tuple[str, str]] = {}
            pending: dict = {}

            def send(number: int, data: bytes) -> tuple[int, str, str]:
                response = self.client.upload_part(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, PartNumber=number, Body=data, **crc,
                )
                part_crc = response.get("ChecksumCRC32") or _b64(zlib.crc32(data).to_bytes(4, "big"))
                return number, response["ETag"], part_crc

            with ThreadPoolExecutor(max_workers=self.upload_concurrency, thread_name_prefix="s3-part") as pool, \
                    open(path, "rb") as fh, _Progress(f"upload {path.name}", size, progress) as bar:

                def collect(done) -> None:
                    for future in done:
                        number, etag, part_digest = future.result()
                        bar.advance(pending.pop(future))
                        parts[number] = (etag, part_digest)

                number = 0
                while data := fh.read(self.part_size):
                    number += 1
                    digest.update(data)
                    while len(pending) >= self.upload_concurrency:  # bound memory: at most N parts in flight
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        collect(done)
                    pending[pool.submit(send, number, data)] = len(data)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
            got = digest.hexdigest()
            if got != sha256:
                raise StorageError(f"{path} does not match its sha256 (expected {sha256}, read {got}); nothing was uploaded")
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                MultipartUpload={"Parts": [
                    {"PartNumber": n, "ETag": parts[n][0], **({"ChecksumCRC32": parts[n][1]} if crc else {})}
                    for n in sorted(parts)
                ]},
            )
            completed = True
            if not crc:
                return ""
            composite = zlib.crc32(b"".join(base64.b64decode(parts[n][1]) for n in sorted(parts)))
            return f"{_b64(composite.to_bytes(4, 'big'))}-{len(parts)}"
        finally:
            if not completed:  # nothing becomes visible; the parts are freed
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass

    def _verify(self, key: str, size: int, sha256: str, checksum: str) -> None:
        """One HEAD after the upload: size, our sha256 metadata and the server's checksum of what it stored."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key), ChecksumMode="ENABLED")
        except ClientError as exc:
            raise self._error(exc, f"verify {self.url_for(key)}") from None
        problem = None
        stored_checksum = None if not checksum else head.get("ChecksumSHA256") if "-" not in checksum else head.get("ChecksumCRC32")
        if head.get("ContentLength") != size:
            problem = f"its size is {head.get('ContentLength')}, expected {size}"
        elif head.get("Metadata", {}).get(SHA256_METADATA) != sha256:
            problem = "its sha256 metadata is missing or different"
        elif stored_checksum is not None and stored_checksum != checksum:
            problem = f"the server's checksum is {stored_checksum}, expected {checksum}"
        if problem:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
            except Exception:  # noqa: BLE001
                pass
            raise StorageError(f"upload to {self.url_for(key)} did not verify ({problem}); the object was removed")

    def get_file(self, key: str, dest: Path, sha256: str, *, progress: bool | None = None) -> Path:
        _check_sha256(sha256)
        dest = Path(dest)
        head = self._head(key)
        if head is None:
            self._refuse_missing_bucket()
            raise StorageError(f"no object {self.url_for(key)}")
        tmp_name = None
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            os.close(fd)
            with _Progress(f"download {dest.name}", head.get("ContentLength", 0), progress) as bar:
                self.client.download_file(self.bucket, self._object_key(key), tmp_name, Callback=bar.advance)
            got = file_sha256(Path(tmp_name))
            if got != sha256:
                raise StorageError(f"object {self.url_for(key)} is corrupted: its sha256 is {got}, expected {sha256}")
            with open(tmp_name, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, dest)
            tmp_name = None
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {_os_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"download {self.url_for(key)}") from None
        finally:
            _discard_temp(tmp_name)
        return dest

    def _refuse_missing_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise self._error(exc, f"open {self.url}") from None

    def _error(self, exc: BaseException, action: str) -> StorageError:
        """One line, no traceback, no credential: what failed and what to check."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError as BotoConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"cannot {action}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
        if isinstance(exc, BotoConnectionError):
            return StorageError(f"cannot {action}: the S3 endpoint {self.endpoint} is unreachable")
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and exc.operation_name == "HeadBucket"):
                return StorageError(f"cannot {action}: bucket {self.bucket} does not exist at {self.endpoint}")
            if code in ("403", "Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
                return StorageError(f"cannot {action}: access denied by {self.endpoint} ({code}); check the AWS credentials and the bucket policy")
            return StorageError(f"cannot {action}: S3 error {code}")
        return StorageError(f"cannot {action}: {type(exc).__name__}")


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def _error_code(exc) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
