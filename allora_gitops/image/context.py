"""The image build context: Dockerfile, the bundle archive (sha256-checked), the runtime (bootstrap.pyz), and the
requirements copied out of the archive so the dependency layer is keyed on them alone.
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from allora_gitops import constants as C
from allora_gitops.errors import ImageBuildError



@dataclass(frozen=True)
class BuildContext:
    """A directory ready for ``buildah bud`` / ``docker build``."""

    root: Path
    dockerfile: Path
    archive_sha256: str
    python_version: str
    has_constraints: bool


def check_archive_digest(path: Path, expected: str, what: str) -> None:
    """Refuse an archive whose bytes are not the ones the build metadata names."""
    from allora_gitops.storage.objects import file_sha256

    actual = file_sha256(path)
    if actual != expected:
        raise ImageBuildError(
            f"the bundle archive from {what} has sha256 {actual}, but the build metadata says {expected}; "
            "refusing to build an image from an archive nobody reviewed"
        )


def _member(tar: tarfile.TarFile, name: str) -> Optional[tarfile.TarInfo]:
    for candidate in (name, f"./{name}"):
        try:
            return tar.getmember(candidate)
        except KeyError:
            continue
    return None


def _read_member(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    info = _member(tar, name)
    if info is None:
        raise ImageBuildError(f"{archive.name} has no {name}")
    if not info.isfile():
        raise ImageBuildError(f"{archive.name}: {name} is not a regular file")
    fh = tar.extractfile(info)
    assert fh is not None
    return fh.read()


def assemble_context(
    dest: Path,
    *,
    dockerfile: str,
    archive: Path,
    archive_sha256: str,
    archive_origin: str,
    artifact_policy=None,
    say=lambda _m: None,
) -> BuildContext:
    """Write the build context into ``dest`` (an empty or missing directory).

    ``archive`` is checked against ``archive_sha256`` before anything else is read from it. The bundle's
    artifacts.remote are fetched under ``artifact_policy`` (a ``FetchPolicy``; default: public addresses only)
    into ``remote-artifacts/<sha256>``.
    """
    from allora_gitops.bundle.manifest import load_manifest_text
    from allora_gitops.errors import ManifestError
    from allora_gitops.runtime import write_runtime_archive

    check_archive_digest(archive, archive_sha256, archive_origin)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            raw_manifest = _read_member(tar, C.MANIFEST_FILE, archive)
            try:
                manifest = load_manifest_text(raw_manifest, f"{archive.name}:{C.MANIFEST_FILE}").manifest
            except ManifestError as exc:
                raise ImageBuildError(f"{archive.name} carries an invalid {C.MANIFEST_FILE}", exc.problems) from None
            requirements = _read_member(tar, manifest.environment.pip_requirements, archive)
            constraints = (
                _read_member(tar, manifest.environment.constraints, archive) if manifest.environment.constraints else None
            )
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageBuildError(f"{archive.name} is not a readable .tar.gz: {exc}") from None

    (dest / C.BUILD_CONTEXT_DOCKERFILE).write_text(dockerfile, encoding="utf-8")
    shutil.copyfile(archive, dest / C.BUILD_CONTEXT_ARCHIVE)
    (dest / C.BUILD_CONTEXT_REQUIREMENTS).write_bytes(requirements)
    if constraints is not None:
        (dest / C.BUILD_CONTEXT_CONSTRAINTS).write_bytes(constraints)
    write_runtime_archive(dest / C.BUILD_CONTEXT_BOOTSTRAP)
    if manifest.remote_artifacts:
        from allora_gitops.storage.remote import FetchPolicy, RemoteArtifactError, fetch_artifacts, place_artifacts

        try:
            fetched = fetch_artifacts(manifest.remote_artifacts, artifact_policy or FetchPolicy(), say=say)
        except RemoteArtifactError as exc:
            raise ImageBuildError(exc.message) from None
        remote_dir = dest / C.BUILD_CONTEXT_REMOTE_ARTIFACTS
        place_artifacts({a.sha256: fetched[a.path] for a in manifest.remote_artifacts}, remote_dir)
        remote_dir.chmod(0o755)
        for path in remote_dir.iterdir():
            path.chmod(0o644)
    # Modes in the context are normalized so the COPY layers do not depend on the operator's umask.
    for path in dest.iterdir():
        if path.is_file():
            path.chmod(0o644)
    return BuildContext(
        root=dest,
        dockerfile=dest / C.BUILD_CONTEXT_DOCKERFILE,
        archive_sha256=archive_sha256,
        python_version=manifest.python.version,
        has_constraints=constraints is not None,
    )
