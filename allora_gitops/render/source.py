"""From SOURCE (a bundle directory or a built archive) to a complete DeploymentSpec.

The bundle is resolved like every other command resolves it
(``bundle.source.resolve_source``: a directory is validated and built
reproducibly into ``work_dir``, an archive is inspected), so the digest in the
rendered files is the digest of the archive ``publish`` would store.
"""

from __future__ import annotations

from pathlib import Path

from allora_gitops.render.spec import DeploymentSettings, DeploymentSpec


def spec_from_source(source: Path, settings: DeploymentSettings, work_dir: Path) -> DeploymentSpec:
    from allora_gitops.bundle.source import resolve_source

    built = resolve_source(source, work_dir)
    return DeploymentSpec.complete(built.manifest, sha256=built.sha256, archive_size=built.size, settings=settings)
