"""One entry for every command that takes "a bundle": a directory is validated and built, an archive is inspected."""

from __future__ import annotations

from pathlib import Path

from allora_gitops.bundle.archive import BuiltArchive, archive_excludes, build_archive, inspect_archive
from allora_gitops.errors import BundleError


def resolve_source(source: Path, work_dir: Path, warnings: list | None = None) -> BuiltArchive:
    """A built, verified archive for ``source``: a bundle directory (validated, then built into
    ``work_dir``) or a ``.tar.gz`` made by ``allora-bundle build`` (inspected in place).

    ``warnings``, when given, receives the validation warnings (``Problem`` s) of a directory.
    Raises BundleError (with every validation problem) or ArchiveError.
    """
    from allora_gitops.bundle.validate import require_valid

    source = Path(source)
    if source.is_dir():
        report = require_valid(source, extra_excludes=archive_excludes(source, Path(work_dir)))
        if warnings is not None:
            warnings.extend(report.warnings)
        return build_archive(source, Path(work_dir), tree=report.tree)
    if source.is_file():
        if not source.name.endswith((".tar.gz", ".tgz")):
            raise BundleError(f"{source} is neither a bundle directory nor a .tar.gz archive")
        return inspect_archive(source)
    raise BundleError(f"{source}: no such bundle directory or archive")
