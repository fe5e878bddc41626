"""``build-image``: from a bundle (SOURCE) or a GitOps repo's ``builds/<name>/<version>/`` to a tagged image.

Everything that can be wrong with the inputs is found before the builder starts
(no builder, unreadable secrets, archive not matching its digest, unknown base
image), so a bad input never leaves a half-built or wrongly tagged image behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from allora_gitops import constants as C
from allora_gitops.errors import ImageBuildError, UsageError
from allora_gitops.image.builder import (
    BuildRequest,
    LogSink,
    check_reference,
    qualify_reference,
    select_builder,
    terminal_log,
)
from allora_gitops.image.context import assemble_context

OCI_ARCHIVE_PREFIX = "oci-archive:"


@dataclass(frozen=True)
class ImageBuildRequest:
    """What the operator asked for (flags of ``build-image``)."""

    target: Path  # bundle dir / .tar.gz, or builds/<name>/<version>/
    builder: str = "auto"
    base_image: Optional[str] = None
    tags: tuple[str, ...] = ()
    push: bool = False
    output: Optional[str] = None  # oci-archive:PATH
    pip_cert: Optional[Path] = None
    pip_conf: Optional[Path] = None
    store_url: Optional[str] = None
    database_url: Optional[str] = None
    image_registry: Optional[str] = None  # SOURCE only: registry prefix of the image (like render's flag)
    record: bool = True
    write_back_repo: Optional[str] = None  # after --push: pin the digest in this GitOps repository's overlays
    write_back_base: str = C.DEFAULT_BRANCH
    write_back_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildPlan:
    """What is being built, whichever way it came in."""

    name: str
    version: str
    python_version: str
    sha256: str
    image: str  # the reference the overlay uses
    base_image: str
    dockerfile: str
    origin: str  # where the archive came from, for messages
    artifact_max_bytes: int = C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES  # artifacts.remote: the repository's remote_artifacts settings
    artifact_allow_private: bool = False


@dataclass
class ImageBuildResult:
    name: str
    version: str
    sha256: str
    image: str
    tags: list[str]
    image_id: str
    base_image: str
    seconds: float
    pushed_digest: Optional[str] = None
    output: Optional[Path] = None
    recorded: list[str] = field(default_factory=list)  # deployment ids whose row now names the image
    pinned: list[dict] = field(default_factory=list)  # overlays the digest was written back to (network, branch, commit)

    @property
    def reference(self) -> str:
        """What the records keep: the tag, pinned to the pushed digest when there is one."""
        return f"{self.image}@{self.pushed_digest}" if self.pushed_digest else self.image

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "image": self.image,
            "reference": self.reference,
            "tags": self.tags,
            "image_id": self.image_id,
            "base_image": self.base_image,
            "pushed_digest": self.pushed_digest,
            "output": str(self.output) if self.output else None,
            "recorded_deployments": self.recorded,
            "pinned_overlays": self.pinned,
            "seconds": round(self.seconds, 1),
        }


def is_build_dir(path: Path) -> bool:
    return path.is_dir() and (path / C.BUILD_METADATA_FILE).is_file()


def parse_output(spec: Optional[str]) -> Optional[Path]:
    if spec is None:
        return None
    if not spec.startswith(OCI_ARCHIVE_PREFIX) or len(spec) == len(OCI_ARCHIVE_PREFIX):
        raise UsageError(f"--output {spec!r}: expected oci-archive:PATH")
    path = Path(spec[len(OCI_ARCHIVE_PREFIX):]).expanduser()
    if not path.parent.is_dir():
        raise UsageError(f"--output: directory {path.parent} does not exist")
    return path.resolve()


def _secret_files(request: ImageBuildRequest) -> dict[str, Path]:
    secrets = {}
    for sid, path, flag in (
        (C.BUILD_SECRET_PIP_CERT, request.pip_cert, "--pip-cert"),
        (C.BUILD_SECRET_PIP_CONF, request.pip_conf, "--pip-conf"),
    ):
        if path is None:
            continue
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
        secrets[sid] = path.resolve()
    return secrets


# --- planning: from a build directory ------------------------------------------------


def fetch_archive(url: str, dest: Path, sha256: str, *, name: str, version: str, store_url: Optional[str]) -> Path:
    """Fetch the archive build.yaml names into ``dest``, checked against ``sha256``.

    The object key is the content-addressed one publish stores under; the store is
    ``--store`` when given, else the URL minus that key (``file://…`` or ``s3://bucket/prefix``).
    A plain path or ``file://`` URL outside any store is copied and checked the same way.
    """
    from allora_gitops.storage.objects import open_store

    key = C.archive_object_key(name, version, sha256)
    if store_url is None and url.endswith("/" + key):
        store_url = url[: -len(key) - 1] or None
    if store_url is not None:
        store = open_store(store_url)
        return store.get_file(key, dest, sha256)
    source = Path(url[len("file://"):] if url.startswith("file://") else url)
    if "://" in url and not url.startswith("file://"):
        raise ImageBuildError(
            f"cannot fetch {url}: it is not under the key {key} of a store; pass --store URL to say where the archive lives"
        )
    if not source.is_file():
        raise ImageBuildError(f"the bundle archive {url} does not exist")
    shutil.copyfile(source, dest)
    return dest


def plan_from_build_dir(build_dir: Path, work: Path, store_url: Optional[str]) -> tuple[BuildPlan, Path]:
    from allora_gitops.image.metadata import load_build_metadata

    meta = load_build_metadata(build_dir / C.BUILD_METADATA_FILE)
    dockerfile_path = build_dir / C.BUILD_CONTEXT_DOCKERFILE
    try:
        dockerfile = dockerfile_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageBuildError(f"{dockerfile_path} not found: a build directory holds Dockerfile and {C.BUILD_METADATA_FILE}") from None
    check_reference(meta.image, f"{C.BUILD_METADATA_FILE}: image")
    archive = fetch_archive(
        meta.archive.url,
        work / C.BUILD_CONTEXT_ARCHIVE,
        meta.archive.sha256,
        name=meta.name,
        version=meta.version,
        store_url=store_url,
    )
    plan = BuildPlan(
        name=meta.name,
        version=meta.version,
        python_version=meta.python_version,
        sha256=meta.archive.sha256,
        image=meta.image,
        base_image=meta.default_base_image,
        dockerfile=dockerfile,
        origin=meta.archive.url,
        artifact_max_bytes=meta.remote_artifacts.max_bytes,
        artifact_allow_private=meta.remote_artifacts.allow_private_addresses,
    )
    return plan, archive


# --- planning: from a bundle directory or archive ---------------------------------------


def plan_from_source(source: Path, work: Path, image_registry: Optional[str], base_image: Optional[str]) -> tuple[BuildPlan, Path]:
    """Build (or inspect) the bundle, then render its ``builds/`` files exactly as ``render`` would."""
    from allora_gitops.bundle.source import resolve_source
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build

    bundle = resolve_source(source, work)
    manifest = bundle.manifest
    # builds/ depends on the bundle, the registry and the base image only: network and topic are placeholders.
    settings = DeploymentSettings(
        network=manifest.allora.network,
        topic_id=manifest.allora.topic_id or 1,
        image_registry=image_registry,
        base_image=base_image,
        archive_url=bundle.path.resolve().as_uri(),
    )
    spec = DeploymentSpec.complete(manifest, sha256=bundle.sha256, archive_size=bundle.size, settings=settings)
    tree = render_build(spec)
    dockerfile = tree[f"{C.build_dir(spec.name, spec.version)}/{C.BUILD_CONTEXT_DOCKERFILE}"]
    plan = BuildPlan(
        name=spec.name,
        version=spec.version,
        python_version=spec.python_version,
        sha256=bundle.sha256,
        image=spec.image,
        base_image=spec.base_image,
        dockerfile=dockerfile,
        origin=str(source),
        artifact_max_bytes=spec.artifact_max_bytes,
        artifact_allow_private=spec.artifact_allow_private,
    )
    return plan, bundle.path


# --- the whole command ----------------------------------------------------------------------


def build_image(request: ImageBuildRequest, log: LogSink = terminal_log) -> ImageBuildResult:
    """Check every input, assemble the context, build, tag, then push / export / record as asked."""
    started = time.perf_counter()
    output = parse_output(request.output)
    if request.write_back_repo and not request.push:
        raise UsageError("--write-back needs --push: only a pushed image has a digest to pin")
    secrets = _secret_files(request)
    for tag in request.tags:
        check_reference(tag, "--tag")
    if request.base_image is not None:
        check_reference(request.base_image, "--base-image")
    target = request.target
    if not target.exists():
        raise UsageError(f"{target}: no such bundle directory, archive or build directory")
    builder = select_builder(request.builder, log)

    from allora_gitops.storage.remote import FetchPolicy

    with tempfile.TemporaryDirectory(prefix="allora-image-") as tmp:
        work = Path(tmp)
        if is_build_dir(target):
            plan, archive = plan_from_build_dir(target, work, request.store_url)
        else:
            plan, archive = plan_from_source(target, work, request.image_registry, request.base_image)
        context = assemble_context(
            work / "context",
            dockerfile=plan.dockerfile,
            archive=archive,
            archive_sha256=plan.sha256,
            archive_origin=plan.origin,
            artifact_policy=FetchPolicy(max_bytes=plan.artifact_max_bytes, allow_private=plan.artifact_allow_private),
            say=log,
        )
        base = request.base_image or plan.base_image
        check_reference(base, "base image")
        base_ref = qualify_reference(base) if builder.name == "buildah" else base
        _ensure_base_image(builder, base_ref, base)
        tags = list(dict.fromkeys([plan.image, *request.tags]))
        log(f"building {plan.image} ({plan.name} {plan.version}, bundle sha256 {plan.sha256[:12]}) on {base_ref} with {builder.name}")
        image_id = builder.build(
            BuildRequest(
                context=context.root,
                dockerfile=context.dockerfile,
                tags=tuple(tags),
                build_args={"BASE_IMAGE": base_ref, "PYTHON_VERSION": plan.python_version},
                secrets=secrets,
            )
        )

    result = ImageBuildResult(
        name=plan.name,
        version=plan.version,
        sha256=plan.sha256,
        image=plan.image,
        tags=tags,
        image_id=image_id,
        base_image=base_ref,
        seconds=0.0,
    )
    if output is not None:
        builder.export_oci_archive(plan.image, output)
        result.output = output
    if request.push:
        for tag in tags:
            digest = builder.push(tag)
            if tag == plan.image:
                result.pushed_digest = digest
    if request.record:
        result.recorded = record_image(plan, result.reference, request.database_url, log)
    if request.write_back_repo:
        result.pinned = write_back(plan, result, request, log)
    result.seconds = time.perf_counter() - started
    return result


def _ensure_base_image(builder, ref: str, shown: str) -> None:
    if builder.image_id(ref) is not None:
        return
    try:
        builder.pull(ref)
    except ImageBuildError as exc:
        raise ImageBuildError(
            f"base image {shown} is not in the local image storage and cannot be pulled ({exc.message.removeprefix(f'cannot pull {ref}: ')}); "
            "pass --base-image with an image this machine has or can pull"
        ) from None


def _records_database(database_url: Optional[str]) -> Optional[str]:
    """The database to record in: the given/env URL, or the embedded one if it was ever created. None: nowhere."""
    import os

    if database_url or os.environ.get(C.DATABASE_URL_ENV, "").strip():
        return database_url or os.environ[C.DATABASE_URL_ENV].strip()
    from allora_gitops.state import state_home

    if (state_home() / "postgres" / "data").is_dir():
        return None  # open_records(None) attaches to the embedded server
    return ""


def record_image(plan: BuildPlan, reference: str, database_url: Optional[str], log: LogSink) -> list[str]:
    """Name the image on every live deployment row of this exact bundle (name, version, sha256)."""
    from allora_gitops.db import open_records
    from allora_gitops.db.records import ACTIVE_STATUSES

    url = _records_database(database_url)
    if url == "":
        log("no records database here (never published from this machine); the image reference was not recorded")
        return []
    recorded = []
    with open_records(url) as records:
        for row in records.list_deployments(name=plan.name):
            if row.version == plan.version and row.bundle_sha256 == plan.sha256 and row.status in ACTIVE_STATUSES:
                records.set_deployment_status(row.id, row.status, container_image=reference)
                recorded.append(row.id)
    if recorded:
        log(f"recorded {reference} on {len(recorded)} deployment(s) of {plan.name} {plan.version}")
    else:
        log(f"no live deployment of {plan.name} {plan.version} (sha256 {plan.sha256[:12]}) to record the image on")
    return recorded


def write_back(plan: BuildPlan, result: ImageBuildResult, request: ImageBuildRequest, log: LogSink) -> list[dict]:
    """Pin the pushed digest in the overlays that run ``plan.image`` (see :mod:`allora_gitops.gitops.pin`)."""
    from allora_gitops.gitops.pin import PinRequest, pin_image

    if not result.pushed_digest:
        raise ImageBuildError(f"the builder reported no digest for {plan.image}; nothing to write back")
    pinned = pin_image(
        PinRequest(
            repo=request.write_back_repo or "",
            name=plan.name,
            image=plan.image,
            digest=result.pushed_digest,
            version=plan.version,
            networks=request.write_back_networks,
            base_branch=request.write_back_base,
        ),
        say=log,
    )
    return [{"network": o.network, "branch": o.branch, "commit": o.commit, "created": o.created} for o in pinned.overlays]
