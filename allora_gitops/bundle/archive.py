"""Build and inspect bundle archives: reproducible ``.tar.gz`` files with a per-file sha256 manifest.

Build is the hot path (model weights are hundreds of MB), so it reads every
file once: the same buffer feeds the file's sha256 and the tar stream. The
stream is cut into fixed-size chunks that are deflated in parallel with
ISA-L at level 1 (weights barely compress; gzip -6 spends 20× the time for
0.2 % of size) and joined into one gzip member the way pigz does: every chunk
but the last ends with a sync flush, so the raw deflate streams concatenate.
Chunk boundaries depend only on the input, so the output is byte-identical
whatever the thread timing.

Layout: entries at the archive root, sorted by path, directories before
their content; owner 0/0 with empty names; one mtime (``SOURCE_DATE_EPOCH``
or a constant); modes 0755 for directories and executables, 0644 otherwise;
gzip header without name and with mtime 0. The last entry is
``.allora-manifest.json`` (per-file sha256 and size), written last so that
build needs no second pass.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from allora_gitops import constants as C
from allora_gitops.atomic import write_atomic
from allora_gitops.bundle.ignore import BundleTree, is_utf8_name, walk_bundle
from allora_gitops.bundle.manifest import BundleManifest, load_manifest, load_manifest_text
from allora_gitops.errors import ArchiveError, BundleError, ManifestError, Problem

MANIFEST_FORMAT = 1
CHUNK = 4 << 20  # deflate unit; fixed so that the output does not depend on the machine
READ_SIZE = 1 << 20
GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # deflate, no flags, mtime 0, OS unknown
COMPRESS_LEVEL = 1
DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ArchiveFile:
    path: str
    size: int
    sha256: str
    mode: int


@dataclass
class BuiltArchive:
    """A bundle archive on disk and what it holds."""

    path: Path
    sha256: str  # hex digest of the .tar.gz bytes
    size: int  # bytes of the .tar.gz
    manifest: BundleManifest
    file_count: int
    unpacked_size: int = 0
    files: list[ArchiveFile] = field(default_factory=list, repr=False)
    sha256_path: Optional[Path] = None  # the NAME-VERSION.tar.gz.sha256 beside it, when build wrote one

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def to_dict(self) -> dict:
        return {
            "archive": str(self.path),
            "name": self.manifest.name,
            "version": self.manifest.version,
            "python": self.manifest.python.version,
            "sha256": self.sha256,
            "size": self.size,
            "file_count": self.file_count,
            "unpacked_size": self.unpacked_size,
        }


@dataclass
class ArchiveInfo(BuiltArchive):
    """What ``inspect_archive`` found in an archive whose manifest checked out."""

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256, "mode": f"{f.mode:04o}"} for f in self.files]
        data["manifest_verified"] = True
        return data


def resolve_mtime(explicit: Optional[int] = None) -> int:
    if explicit is not None:
        return int(explicit)
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise BundleError(f"SOURCE_DATE_EPOCH must be an integer number of seconds, got {env!r}") from None
    return C.SOURCE_DATE_EPOCH_DEFAULT


# --- writing ------------------------------------------------------------------


def _deflate(chunk, last: bool) -> bytes:
    from isal import isal_zlib

    c = isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, -15)
    return c.compress(chunk) + c.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)


class _ParallelGzip:
    """A write-only gzip stream: one member, fixed-size chunks deflated on a thread pool, in order.

    ``sink`` receives the compressed bytes in order; the caller hashes and writes them.
    """

    def __init__(self, sink: Callable[[bytes], None], workers: int = 2):
        from isal import isal_zlib

        self._crc32 = isal_zlib.crc32
        self._sink = sink
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deflate")
        # one writer thread hashes and writes the compressed stream, in order, off the reading thread
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gzip-writer")
        self._pending: deque = deque()
        self._writes: deque = deque()
        self._max_pending = workers * 2
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._crc = 0
        self._length = 0
        self._emit(GZIP_HEADER)

    def write(self, data: bytes) -> None:
        """Queue ``data`` (not copied: callers hand over immutable bytes)."""
        self._crc = self._crc32(data, self._crc)
        self._length += len(data)
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered >= CHUNK:
            joined = b"".join(self._pieces)
            view = memoryview(joined)
            start = 0
            while len(joined) - start >= CHUNK:
                self._submit(view[start : start + CHUNK], last=False)
                start += CHUNK
            rest = joined[start:]
            self._pieces = [rest] if rest else []
            self._buffered = len(rest)

    def _emit(self, data: bytes) -> None:
        self._writes.append(self._writer.submit(self._sink, data))
        while self._writes and (len(self._writes) > self._max_pending or self._writes[0].done()):
            self._writes.popleft().result()  # raises the writer's error, if any

    def _submit(self, chunk, last: bool) -> None:
        self._pending.append(self._pool.submit(_deflate, chunk, last))
        while len(self._pending) > self._max_pending:
            self._emit(self._pending.popleft().result())

    def close(self) -> None:
        try:
            self._submit(b"".join(self._pieces), last=True)
            self._pieces = []
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._length & 0xFFFFFFFF))
            while self._writes:
                self._writes.popleft().result()
        finally:
            self.abort()

    def abort(self) -> None:
        for f in (*self._pending, *self._writes):
            f.cancel()
        self._pending.clear()
        self._writes.clear()
        self._pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)


def _tar_header(path: str, *, size: int, mode: int, is_dir: bool, mtime: int) -> bytes:
    info = tarfile.TarInfo(path + "/" if is_dir else path)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    rest = size % tarfile.BLOCKSIZE
    return b"\0" * (tarfile.BLOCKSIZE - rest) if rest else b""


def archive_manifest_bytes(name: str, version: str, files: list[ArchiveFile]) -> bytes:
    doc = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in files},
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def write_tar_gz(
    tree: BundleTree,
    out,
    *,
    name: str,
    version: str,
    mtime: int,
    progress: Optional[ProgressFn] = None,
) -> tuple[str, int, list[ArchiveFile]]:
    """Stream ``tree`` as a reproducible .tar.gz into the binary file ``out``.

    Returns the sha256 and size of the bytes written, and the files with their digests.
    """
    digest = hashlib.sha256()
    written = 0

    def sink(data: bytes) -> None:
        nonlocal written
        digest.update(data)
        out.write(data)
        written += len(data)

    gz = _ParallelGzip(sink)
    files: list[ArchiveFile] = []
    try:
        for entry in tree.entries:
            if entry.is_dir:
                gz.write(_tar_header(entry.path, size=0, mode=DIR_MODE, is_dir=True, mtime=mtime))
                continue
            mode = EXEC_MODE if entry.executable else FILE_MODE
            file_hash = hashlib.sha256()
            try:
                fh = open(entry.abs_path, "rb")
            except OSError as exc:
                raise BundleError(f"cannot read {entry.path}: {exc.strerror}") from None
            with fh:
                size = os.fstat(fh.fileno()).st_size
                gz.write(_tar_header(entry.path, size=size, mode=mode, is_dir=False, mtime=mtime))
                remaining = size
                while remaining > 0:
                    data = fh.read(min(READ_SIZE, remaining))
                    if not data:
                        break
                    n = len(data)
                    file_hash.update(data)
                    gz.write(data)
                    remaining -= n
                    if progress:
                        progress(n)
            if remaining:
                raise BundleError(f"{entry.path} shrank while it was being archived; build again")
            gz.write(_padding(size))
            files.append(ArchiveFile(entry.path, size, file_hash.hexdigest(), mode))
        manifest = archive_manifest_bytes(name, version, files)
        gz.write(_tar_header(C.ARCHIVE_MANIFEST, size=len(manifest), mode=FILE_MODE, is_dir=False, mtime=mtime))
        gz.write(manifest + _padding(len(manifest)))
        gz.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # end-of-archive
        gz.close()
    except BaseException:
        gz.abort()
        raise
    return digest.hexdigest(), written, files


def build_archive(
    bundle_dir: Path,
    out_dir: Optional[Path] = None,
    *,
    source_date_epoch: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    tree: Optional[BundleTree] = None,
) -> BuiltArchive:
    """Write ``out_dir/NAME-VERSION.tar.gz`` (+ ``.sha256``) from ``bundle_dir`` (default out dir: ``dist/``).

    Does not validate (``validate_bundle`` does); refuses what cannot be archived
    safely (links, devices). The archive is written to a temporary file in
    ``out_dir`` and renamed only when complete, so a failure leaves nothing behind.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a directory")
    manifest = load_manifest(bundle_dir / C.MANIFEST_FILE, str(bundle_dir / C.MANIFEST_FILE)).manifest
    out_dir = Path(out_dir) if out_dir is not None else bundle_dir / "dist"
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"the output directory {out_dir} is a file; name a directory with -o")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create the output directory {out_dir}: {exc.strerror}") from None

    if tree is None:
        tree = walk_bundle(bundle_dir, archive_excludes(bundle_dir, out_dir))
    problems = [Problem(f"symbolic link to {target!r}; archives hold no links", path, code="link") for path, target in tree.symlinks]
    problems += [Problem("not a regular file or directory", path, code="special") for path in tree.special]
    problems += [Problem("file name is not valid UTF-8; rename it", path, code="name") for path in tree.undecodable]
    if problems:
        raise BundleError("the bundle holds files that cannot be archived", problems)

    mtime = resolve_mtime(source_date_epoch)
    final = out_dir / C.archive_filename(manifest.name, manifest.version)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{final.name}.", suffix=".partial")
    except OSError as exc:
        raise BundleError(f"cannot write to {out_dir}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            sha256, size, files = write_tar_gz(tree, out, name=manifest.name, version=manifest.version, mtime=mtime, progress=progress)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot write {final}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sha_path = final.with_name(final.name + ".sha256")
    write_atomic(sha_path, f"{sha256}  {final.name}\n".encode())
    return BuiltArchive(
        path=final,
        sha256=sha256,
        size=size,
        manifest=manifest,
        file_count=len(files),
        unpacked_size=sum(f.size for f in files),
        files=files,
        sha256_path=sha_path,
    )


def archive_excludes(bundle_dir: Path, out_dir: Path) -> tuple[str, ...]:
    """Ignore rules that keep the output directory out of the archive, wherever it is inside the bundle."""
    try:
        rel = out_dir.resolve().relative_to(bundle_dir.resolve())
    except ValueError:
        return ()
    if str(rel) in ("", "."):
        return ("/*.tar.gz", "/*.tar.gz.sha256", "/.*.partial")
    return ("/" + rel.as_posix() + "/",)


# --- reading ------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes every byte read through it."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._raw.readinto(b)
        if n:
            self.digest.update(memoryview(b)[:n])
            self.count += n
        return n or 0


def normal_entry_name(name: str) -> str:
    """The file an entry name means once unpacked: ``./x``, ``a//b``, ``a/./b`` and ``d/`` are ``x``, ``a/b``, ``d``.

    ``..`` is left in place (refused separately, never resolved). Duplicates are checked on this form,
    as tar and the image would overwrite one entry with the other.
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts) or "."


def _member_problem(member: tarfile.TarInfo) -> Optional[str]:
    name = member.name
    p = PurePosixPath(name)
    if not is_utf8_name(name):
        return "name is not valid UTF-8"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in p.parts:
        return "path with '..'"
    if member.issym() or member.islnk():
        return f"link to {member.linkname!r}"
    if member.ischr() or member.isblk() or member.isfifo() or not (member.isfile() or member.isdir()):
        return "device or special file"
    return None


def inspect_archive(archive: Path) -> ArchiveInfo:
    """Read a bundle archive without extracting it: refuse unsafe entries, check every file against the manifest.

    Raises ArchiveError listing every problem found.
    """
    archive = Path(archive)
    display = str(archive)
    try:
        raw = open(archive, "rb")
    except FileNotFoundError:
        raise ArchiveError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise ArchiveError(f"{display} is a directory, not an archive") from None
    except OSError as exc:
        raise ArchiveError(f"{display}: cannot read ({exc.strerror})") from None

    problems: list[Problem] = []
    digests: dict[str, ArchiveFile] = {}
    seen: set[str] = set()
    manifest_doc: Optional[bytes] = None
    model_yaml: Optional[bytes] = None
    unpacked = 0
    # An archive may not come from `allora-bundle build` (or from this version of it): it is scanned like a
    # bundle directory, because render/publish upload it and bake it into an image.
    leaks: list[SecretFinding] = []
    from allora_gitops.bundle.secrets import (
        ALLOW_FILE, MAX_SCAN_BYTES, SecretFinding, is_env_file, not_allowed, parse_allow_list, scan_bytes, text_for_scan,
    )
    allow_text: Optional[bytes] = None

    def bad(message: str, where: Optional[str] = None) -> None:
        problems.append(Problem(message, f"{display}!{where}" if where else display, code="archive"))

    with raw:
        reader = _HashingReader(raw)
        stream = io.BufferedReader(reader, buffer_size=1 << 20)
        try:
            from isal import igzip  # ~3× zlib's inflate speed

            gz = igzip.IGzipFile(fileobj=stream, mode="rb")
            with tarfile.open(fileobj=gz, mode="r|", bufsize=READ_SIZE) as tar:
                for member in tar:
                    name = normal_entry_name(member.name)
                    issue = _member_problem(member)
                    if issue:
                        bad(f"unsafe entry ({issue}); refusing the archive", member.name)
                        continue
                    if name in seen:
                        bad(f"duplicate entry ({member.name!r} names the same file as an earlier entry)", name)
                        continue
                    seen.add(name)
                    if name == ".":
                        continue
                    if member.isdir():
                        continue
                    unpacked += member.size
                    if unpacked > C.MAX_BUNDLE_BYTES:
                        bad(f"unpacks to more than {C.MAX_BUNDLE_BYTES // (1 << 20)} MB; refusing the archive")
                        break
                    if is_env_file(name):
                        leaks.append(SecretFinding(name, None, None, "env"))
                    fh = tar.extractfile(member)
                    h = hashlib.sha256()
                    scan = name != C.ARCHIVE_MANIFEST and 0 < member.size <= MAX_SCAN_BYTES
                    keep = scan or name in (C.ARCHIVE_MANIFEST, C.MANIFEST_FILE, ALLOW_FILE)
                    kept = bytearray()
                    while True:
                        block = fh.read(READ_SIZE)
                        if not block:
                            break
                        h.update(block)
                        if keep:
                            kept += block
                    if name == C.ARCHIVE_MANIFEST:
                        manifest_doc = bytes(kept)
                        continue
                    scanned = text_for_scan(bytes(kept)) if scan else None
                    if scanned is not None:  # text: the same secret scan validate runs
                        leaks.extend(scan_bytes(name, scanned))
                    if name == C.MANIFEST_FILE:
                        model_yaml = bytes(kept)
                    if name == ALLOW_FILE:
                        allow_text = bytes(kept)
                    digests[name] = ArchiveFile(name, member.size, h.hexdigest(), member.mode & 0o7777)
            while gz.read(READ_SIZE):  # read to the gzip trailer (tar stops at its end marker): checks the CRC
                pass
            while stream.read(READ_SIZE):  # and hash whatever follows
                pass
        except (tarfile.TarError, EOFError, OSError, zlib.error, igzip.BadGzipFile) as exc:
            raise ArchiveError(f"{display} is not a valid .tar.gz ({exc})") from None

    if problems:
        raise ArchiveError(f"{display} is unsafe or corrupt", problems)
    if manifest_doc is None:
        raise ArchiveError(f"{display} has no {C.ARCHIVE_MANIFEST}; was it made by 'allora-bundle build'?")
    if model_yaml is None:
        raise ArchiveError(f"{display} has no {C.MANIFEST_FILE} at its root")

    try:
        doc = json.loads(manifest_doc)
        listed = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict):
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError):
        raise ArchiveError(f"{display}: {C.ARCHIVE_MANIFEST} is not a manifest this version understands") from None
    for path in sorted(set(listed) | set(digests)):
        want, got = listed.get(path), digests.get(path)
        if want is None:
            bad("file is not listed in the archive manifest", path)
        elif got is None:
            bad("listed in the archive manifest but missing", path)
        elif not isinstance(want, dict) or want.get("sha256") != got.sha256 or want.get("size") != got.size:
            bad("sha256 does not match the archive manifest (corrupted or altered)", path)
    if problems:
        raise ArchiveError(f"{display} does not match its manifest", problems)
    if allow_text is not None:
        from allora_gitops.bundle.text import BundleTextError, decode_text

        try:
            leaks = not_allowed(leaks, parse_allow_list(decode_text(allow_text, f"{display}!{ALLOW_FILE}")))
        except BundleTextError as exc:
            raise ArchiveError(f"{display} holds an unreadable {ALLOW_FILE}", exc.problems) from None
    if leaks:
        raise ArchiveError(
            f"{display} holds secrets; refusing the archive",
            [Problem(f.message(), f"{display}!{f.path}", f.line, f.col, code="secret") for f in leaks],
        )

    try:
        manifest = load_manifest_text(model_yaml, f"{display}!{C.MANIFEST_FILE}").manifest
    except ManifestError as exc:
        raise ArchiveError(f"{display} holds an invalid {C.MANIFEST_FILE}", exc.problems) from None
    files = [digests[p] for p in sorted(digests, key=lambda p: tuple(p.split("/")))]
    return ArchiveInfo(
        path=archive,
        sha256=reader.digest.hexdigest(),
        size=reader.count,
        manifest=manifest,
        file_count=len(files),
        unpacked_size=sum(f.size for f in files),
        files=files,
    )


def extract_archive(archive: Path, dest: Path) -> ArchiveInfo:
    """Check ``archive`` as :func:`inspect_archive` does, then unpack it into the empty directory ``dest``.

    What ``allora-bundle run ARCHIVE`` runs, so a built archive is tried exactly as it will ship.
    tarfile's ``data`` filter (PEP 706) refuses anything inspect would have let through by mistake.
    Raises ArchiveError.
    """
    info = inspect_archive(archive)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{archive}: cannot unpack ({exc})") from None
    return info

