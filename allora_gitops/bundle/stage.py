"""The files an archive will hold, laid out in a scratch directory, so validate and ``run`` try what ships.

The selection is the archive's own (:func:`bundle.ignore.walk_bundle`, the tree ``build_archive`` writes):
a file excluded by ``.allorabundleignore`` or the defaults is absent here exactly as it is absent from the
archive and the image. Files are hard links (a 400 MB weight costs one inode entry, not a copy); where the
scratch directory is on another filesystem than the bundle, the next candidate directory is tried, and
only when no candidate can link are the files copied.

Hard links share their bytes with the bundle: code that rewrites an existing file at import rewrites the
user's file, as it would when run in place. New files it writes land in the scratch directory and go.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from allora_gitops.bundle.ignore import BundleTree

_CANNOT_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


class StagedBundle:
    """A scratch directory holding the shipped files of a bundle; removed by :meth:`cleanup` (or ``with``)."""

    def __init__(self, tree: BundleTree, scratch_dirs: Optional[list[Path]] = None):
        """Raises OSError when no scratch directory can hold the files."""
        self.source = Path(tree.root).resolve()
        self.linked = True  # False when the files had to be copied
        candidates = scratch_dirs if scratch_dirs is not None else _scratch_candidates()
        for parent in candidates:
            try:
                self._base = Path(tempfile.mkdtemp(prefix="allora-shipped-", dir=parent))
            except OSError:
                continue
            self.path = self._base / "bundle"
            try:
                self._lay_out(tree, link=True)
                return
            except OSError as exc:
                shutil.rmtree(self._base, ignore_errors=True)
                if exc.errno not in _CANNOT_LINK:
                    raise
        self._base = Path(tempfile.mkdtemp(prefix="allora-shipped-"))
        self.path = self._base / "bundle"
        self.linked = False
        try:
            self._lay_out(tree, link=False)
        except BaseException:
            shutil.rmtree(self._base, ignore_errors=True)
            raise

    def _lay_out(self, tree: BundleTree, link: bool) -> None:
        self.path.mkdir()
        for entry in tree.entries:  # sorted, directories before their content
            target = self.path / entry.path
            if entry.is_dir:
                target.mkdir()
            elif link:
                os.link(entry.abs_path, target)
            else:
                shutil.copy2(entry.abs_path, target)

    def original(self, path: str) -> str:
        """``path`` with the staged directory replaced by the bundle's own (for messages the user reads)."""
        staged = str(self.path)
        return path.replace(staged + os.sep, str(self.source) + os.sep) if staged in path else path

    def cleanup(self) -> None:
        shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> "StagedBundle":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _scratch_candidates() -> list[Path]:
    """The temporary directory, then this tool's state directory (often the filesystem home and bundles are on)."""
    from allora_gitops.errors import StateError
    from allora_gitops.state import ensure_state_dir, state_home

    found = [Path(tempfile.gettempdir())]
    try:
        found.append(ensure_state_dir(state_home() / "staging"))
    except StateError:
        pass
    return found


def stage_bundle(tree: BundleTree) -> StagedBundle:
    """Lay out what ``tree`` ships (see the module docstring). Raises OSError."""
    return StagedBundle(tree)

