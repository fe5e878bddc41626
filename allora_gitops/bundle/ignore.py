"""Which files of a bundle directory ship: the guide's default excludes plus ``.allorabundleignore``.

One walk serves validate (size, secrets, links) and build (the archive), so
both always agree on what "the bundle" is. Excluded directories are pruned,
not descended into: a 4000-file ``.venv`` costs one ``stat``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from allora_gitops import constants as C
from allora_gitops.bundle.text import decode_text


@dataclass(frozen=True)
class BundleEntry:
    """One directory or regular file that ships, by its archive path (``/``-separated, no ``./``)."""

    path: str
    abs_path: Path
    is_dir: bool
    size: int = 0
    executable: bool = False


@dataclass
class BundleTree:
    """What a walk of the bundle found: entries that ship, and the things that cannot ship."""

    root: Path
    entries: list[BundleEntry] = field(default_factory=list)  # sorted, directories before their content
    symlinks: list[tuple[str, str]] = field(default_factory=list)  # (path, target as written)
    special: list[str] = field(default_factory=list)  # fifos, sockets, devices
    undecodable: list[str] = field(default_factory=list)  # names that are not UTF-8 (surrogate-escaped); not descended into

    @property
    def files(self) -> list[BundleEntry]:
        return [e for e in self.entries if not e.is_dir]

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def ships(self, path: str) -> bool:
        return path in self._paths

    @cached_property
    def _paths(self) -> frozenset[str]:  # ships() is asked once per imported module: a set, not a scan
        return frozenset(e.path for e in self.entries)


class IgnoreRules:
    """Gitignore-style rules: the defaults, then the bundle's ``.allorabundleignore``, then ``extra``.

    Raises BundleTextError when the ignore file is in an encoding git would not read the same way.
    """

    def __init__(self, root: Path, extra: tuple[str, ...] = ()):
        import pathspec

        lines = list(C.DEFAULT_EXCLUDES) + ["/" + C.IGNORE_FILE]
        ignore_file = root / C.IGNORE_FILE
        if ignore_file.is_file():  # decoded as git reads .gitignore (a UTF-8 BOM is skipped); BundleTextError otherwise
            lines += decode_text(ignore_file.read_bytes(), C.IGNORE_FILE).splitlines()
        lines += list(extra)
        self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def excluded(self, path: str, is_dir: bool) -> bool:
        return self._spec.match_file(path + "/" if is_dir else path)


def _sort_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def walk_bundle(root: Path, extra_excludes: tuple[str, ...] = ()) -> BundleTree:
    """List what ships from ``root``, sorted by path components (stable across machines and filesystems)."""
    root = Path(root)
    rules = IgnoreRules(root, extra_excludes)
    tree = BundleTree(root=root)

    def visit(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda d: d.name)
        for child in children:
            rel = prefix + child.name
            if not is_utf8_name(child.name):
                tree.undecodable.append(rel)
                continue
            st = child.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if not rules.excluded(rel, False):
                    tree.symlinks.append((rel, os.readlink(child.path)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if rules.excluded(rel, True):
                    continue
                tree.entries.append(BundleEntry(rel, Path(child.path), True))
                visit(Path(child.path), rel + "/")
            elif stat.S_ISREG(st.st_mode):
                if rules.excluded(rel, False):
                    continue
                tree.entries.append(
                    BundleEntry(rel, Path(child.path), False, st.st_size, bool(st.st_mode & 0o111))
                )
            elif not rules.excluded(rel, False):
                tree.special.append(rel)

    visit(root, "")
    tree.entries.sort(key=lambda e: _sort_key(e.path))
    return tree


def is_utf8_name(name: str) -> bool:
    """Was this (os.fsdecode'd) name valid UTF-8 on disk? Other names break Dockerfile COPY, tar and terminals."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def symlink_escapes(root: Path, link: str, target: str) -> bool:
    """Does the link at ``root/link`` resolve outside ``root``?"""
    if os.path.isabs(target):
        resolved = os.path.normpath(target)
    else:
        resolved = os.path.normpath(os.path.join(os.path.dirname(os.path.join(str(root), link)), target))
    real_root = os.path.normpath(str(root))
    return not (resolved == real_root or resolved.startswith(real_root + os.sep))
