"""The platform's own image: the project's ``Dockerfile`` (``allora-gitops serve`` with the ``[platform]`` extra),
built like a model's image (buildah without a daemon, or docker), pushed, and pinned by digest in a GitOps
repository's ``platform/kustomization.yaml`` — the write-back models get from ``build-image --write-back``.

The build context is a checkout of allora-gitops (``Dockerfile``, ``.dockerignore``, ``pyproject.toml`` and the
package sources): an installed wheel holds no Dockerfile. The pin is a commit on a review branch
``pin/platform/<tag>`` from the base branch: ``images[name=allora-gitops]`` gets the pushed repository as
``newName``, the tag as ``newTag`` and ``digest: sha256:…`` (which kustomize renders as ``REPO@sha256:…``), and
the Deployment's checkov skip for image digests goes (it is no longer true).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError, UsageError
from allora_gitops.image.builder import BuildRequest, LogSink, select_builder, terminal_log

PIP_CERT_SECRET = "pipcert"  # the Dockerfile's build secrets, as a model image's
PIP_CONF_SECRET = "pipconf"
KUSTOMIZATION = f"{C.PLATFORM_DIR}/kustomization.yaml"
DEPLOYMENT = f"{C.PLATFORM_DIR}/deployment.yaml"
DIGEST_SKIP = "CKV_K8S_43"  # checkov: "Image should use digest"


@dataclass(frozen=True)
class PlatformImageRequest:
    """Build the platform image as ``image`` (``REPO:TAG``); optionally push it and pin it in a GitOps repository."""

    image: str
    context: Optional[Path] = None  # a checkout of allora-gitops; default: the one this package runs from
    builder: str = "auto"
    base_image: Optional[str] = None  # the Dockerfile's BASE_IMAGE (default: its own, python:3.11-slim-bookworm)
    pip_cert: Optional[Path] = None
    pip_conf: Optional[Path] = None
    push: bool = False
    write_back_repo: Optional[str] = None  # after the push: pin the digest here (a review branch)
    write_back_base: str = C.DEFAULT_BRANCH


@dataclass
class PlatformImageResult:
    image: str
    image_id: str
    seconds: float
    digest: Optional[str] = None  # of the pushed manifest
    pinned: Optional[dict] = None  # {"branch", "commit", "created"} of the write-back

    def to_dict(self) -> dict:
        return asdict(self)


def default_context() -> Path:
    """The checkout this package runs from; UsageError when it is an installed wheel (no Dockerfile beside it)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "Dockerfile").is_file() and (root / "pyproject.toml").is_file():
        return root
    raise UsageError("the platform image builds from a checkout of allora-gitops (its Dockerfile and pyproject.toml): pass --context DIR")


def build_platform_image(request: PlatformImageRequest, log: LogSink = terminal_log, say: Callable[[str], None] = lambda _m: None) -> PlatformImageResult:
    """Build (and push, and pin) the platform image. Raises UsageError for a malformed reference or option
    combination, ImageBuildError for a failed build or push (nothing pinned then), GitOpsError for the write-back."""
    from allora_gitops.errors import AlloraGitopsError
    from allora_gitops.image.builder import check_reference, split_tag

    try:
        check_reference(request.image, "--tag")
    except AlloraGitopsError as exc:  # a malformed flag: a usage error (exit 2), like pin-image's
        raise UsageError(exc.message) from None
    repository, tag = split_tag(request.image)
    if tag is None or "@" in request.image:
        raise UsageError(f"--tag {request.image!r}: expected REPO:TAG (the digest is what the build writes back)")
    if request.write_back_repo and not request.push:
        raise UsageError("--write-back pins the pushed digest: add --push")
    context = (request.context or default_context()).resolve()
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise UsageError(f"{context} has no Dockerfile: the platform image builds from a checkout of allora-gitops")
    secrets = {}
    for sid, path in ((PIP_CERT_SECRET, request.pip_cert), (PIP_CONF_SECRET, request.pip_conf)):
        if path is not None:
            if not Path(path).is_file():
                raise UsageError(f"--{sid.replace('pip', 'pip-')} {path}: no such file")
            secrets[sid] = Path(path).resolve()
    builder = select_builder(request.builder, log)
    started = time.monotonic()
    build_args = {"BASE_IMAGE": request.base_image} if request.base_image else {}
    image_id = builder.build(BuildRequest(context=context, dockerfile=dockerfile, tags=(request.image,), build_args=build_args, secrets=secrets))
    say(f"built {request.image} ({image_id[:12]})")
    result = PlatformImageResult(image=request.image, image_id=image_id, seconds=0.0)
    if request.push:
        digest = builder.push(request.image)
        if not digest:
            from allora_gitops.image.registry import manifest_digest

            digest = manifest_digest(request.image)
        result.digest = digest
        say(f"pushed {repository}@{digest}")
        if request.write_back_repo:
            result.pinned = pin_platform_image(request.write_back_repo, request.image, digest, base_branch=request.write_back_base, say=say)
    result.seconds = time.monotonic() - started
    return result


def pin_platform_image(repo: str, image: str, digest: str, *, base_branch: str = C.DEFAULT_BRANCH, check_registry: bool = True,
                       say: Callable[[str], None] = lambda _m: None) -> dict:  # fmt: skip
    """Commit ``image`` (``REPO:TAG``) pinned to ``digest`` into ``platform/`` on the review branch
    ``pin/platform/<tag>`` (from ``base_branch``); ``{"branch", "commit", "created"}``. The registry must hold
    ``REPO@digest`` first (ImageBuildError, nothing written); GitOpsError when the repository has no ``platform/``."""
    from allora_gitops.gitops.repo import parse_remote, persist
    from allora_gitops.image.builder import split_tag
    from allora_gitops.image.registry import check_digest, require_manifest

    repository, tag = split_tag(image)
    if tag is None:
        raise UsageError(f"{image!r}: expected REPO:TAG")
    check_digest(digest)
    if check_registry:
        require_manifest(repository, digest)
    persisted = persist(
        parse_remote(repo), platform_pin_change(repository, tag, digest), branch=C.platform_pin_branch(tag), base_branch=base_branch,
        message=C.platform_pin_commit_message(image, digest), on_step=say,
    )  # fmt: skip
    say(f"platform: {'pinned' if persisted.created else 'already pinned'} on {persisted.branch} ({persisted.commit[:12]})")
    return {"branch": persisted.branch, "commit": persisted.commit, "created": persisted.created}


def platform_pin_change(repository: str, tag: str, digest: str):
    """The change, computed on whatever tip the push lands on (re-run after a rejected push)."""
    from allora_gitops.gitops.repo import TreeChange

    def change(snapshot) -> TreeChange:
        kustomization = snapshot.read(KUSTOMIZATION)
        if kustomization is None:
            raise GitOpsError(f"{KUSTOMIZATION} is not in the repository (it comes with `allora-gitops repo init`); nothing to pin")
        files = {KUSTOMIZATION: pin_platform_kustomization(kustomization, repository, tag, digest)}
        deployment = snapshot.read(DEPLOYMENT)
        if deployment is not None:
            files[DEPLOYMENT] = drop_digest_skip(deployment)
        return TreeChange(files=files)

    return change


def pin_platform_kustomization(text: str, repository: str, tag: str, digest: str) -> str:
    """``text`` with the ``images:`` entry of the platform image set to ``repository:tag`` at ``digest`` (added
    when missing); comments kept."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    data = _load(text, KUSTOMIZATION)
    images = data.get("images")
    if images is None:
        images = data["images"] = CommentedSeq()
    entry = next((e for e in images if isinstance(e, dict) and e.get("name") == C.PLATFORM_IMAGE_NAME), None)
    if entry is None:
        entry = CommentedMap(name=C.PLATFORM_IMAGE_NAME)
        images.append(entry)
    entry["newName"] = repository
    entry["newTag"] = tag
    entry["digest"] = digest
    return _dump(data)


def drop_digest_skip(text: str) -> str:
    """``platform/deployment.yaml`` without its checkov skip for image digests (whatever its ``skipN`` key)."""
    data = _load(text, DEPLOYMENT)
    annotations = (data.get("metadata") or {}).get("annotations") or {}
    for key in [k for k, v in annotations.items() if str(k).startswith("checkov.io/skip") and str(v).startswith(f"{DIGEST_SKIP}=")]:
        del annotations[key]
    return _dump(data)


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(text: str, where: str):
    from ruamel.yaml.error import YAMLError

    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise GitOpsError(f"{where}: cannot parse it to pin the platform image: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GitOpsError(f"{where}: not a mapping; cannot pin the platform image")
    return data


def _dump(data) -> str:
    import io

    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()

