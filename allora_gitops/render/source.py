"""From SOURCE (a bundle directory or a built archive) to a complete DeploymentSpec.

Uses ``allora_gitops.bundle.source.resolve_source`` (validation + reproducible
build) when the bundle tools are installed; until then a minimal fallback
reads the manifest and hashes the archive bytes, so rendering can be tested
on its own.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from allora_gitops import constants as C
from allora_gitops.bundle.manifest import BundleManifest, load_manifest, load_manifest_text
from allora_gitops.errors import BundleError, Problem
from allora_gitops.render.spec import DeploymentSettings, DeploymentSpec


@dataclass(frozen=True)
class ResolvedBundle:
    manifest: BundleManifest
    sha256: str
    size: int
    path: Path


def resolve(source: Path, work_dir: Path) -> ResolvedBundle:
    try:
        from allora_gitops.bundle.source import resolve_source
    except ImportError:
        return _fallback_resolve(source, work_dir)
    built = resolve_source(source, work_dir)
    return ResolvedBundle(built.manifest, built.sha256, built.size, built.path)


def _fallback_resolve(source: Path, work_dir: Path) -> ResolvedBundle:  # pragma: no cover - replaced by issue 2
    if source.is_dir():
        manifest = load_manifest(source / C.MANIFEST_FILE, str(source / C.MANIFEST_FILE)).manifest
        archive = work_dir / C.archive_filename(manifest.name, manifest.version)
        _fallback_build(source, archive)
    elif source.is_file():
        archive = source
        try:
            with tarfile.open(source, "r:gz") as tar:
                member = tar.extractfile(C.MANIFEST_FILE)
                raw = member.read() if member else None
        except (tarfile.TarError, KeyError, OSError):
            raw = None
        if raw is None:
            raise BundleError(problems=[Problem(f"not a bundle archive (no {C.MANIFEST_FILE} at its root)", str(source))])
        manifest = load_manifest_text(raw, f"{source}:{C.MANIFEST_FILE}").manifest
    else:
        raise BundleError(problems=[Problem("no such bundle directory or archive", str(source), code="missing")])
    data = archive.read_bytes()
    return ResolvedBundle(manifest, hashlib.sha256(data).hexdigest(), len(data), archive)


def _fallback_build(src: Path, out: Path) -> None:  # pragma: no cover - replaced by issue 2
    import gzip
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = tarfile.TarInfo(path.relative_to(src).as_posix())
            info.size, info.mtime, info.mode = path.stat().st_size, C.SOURCE_DATE_EPOCH_DEFAULT, 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def spec_from_source(source: Path, settings: DeploymentSettings, work_dir: Path) -> DeploymentSpec:
    bundle = resolve(source, work_dir)
    return DeploymentSpec.complete(bundle.manifest, sha256=bundle.sha256, archive_size=bundle.size, settings=settings)
