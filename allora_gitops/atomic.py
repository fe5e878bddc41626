"""Writing files so a reader (or a crash) never sees half of them: temp file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping


def _stage(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """``data`` in a temporary file beside ``path`` (same filesystem, so the rename is atomic), with ``mode``
    (mkstemp creates it 0600, so a secret's file is never readable by others, not even before the rename)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp_name, mode)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Path(tmp_name)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename; ``mode=0o600`` for a secret (a key, a token)."""
    tmp = _stage(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files_atomic(files: Mapping[Path, bytes]) -> None:
    """Write every file or none: all are staged (directories created) before the first rename.

    On failure the staged files and the directories this call created are removed, and the
    ``OSError`` raised names the target path (``.filename``), not a temporary one.
    """
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []
    try:
        for path, data in files.items():
            try:
                missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
                path.parent.mkdir(parents=True, exist_ok=True)
                created.extend(reversed(missing))
                staged.append((_stage(path, data), path))
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
