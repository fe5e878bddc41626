"""Write a pushed image's digest back into the overlays that reference it (the Image Updater write-back).

An overlay's kustomization names its image by tag (``newName`` + ``newTag``); pinning adds
``digest: sha256:…`` to that ``images:`` entry, so ``kubectl kustomize`` renders
``image: REPO@sha256:…`` and Argo CD runs exactly the bytes that were built. The same commit
drops the checkov skip for image digests from the overlay's Deployment (it is no longer true).

Where the commit goes, per network:

- the deployment's review branch (``deploy/NAME/NETWORK/VERSION``) while it is open — it exists and
  its overlay references the image while the base branch's does not yet;
- otherwise a new review branch ``pin/NAME/NETWORK/VERSION`` from the base branch, when the base
  branch's overlay references the image (the image workflow runs after the merge).

The digest must exist in the registry (checked with ``skopeo``), be what ``REPO:TAG`` resolves to
now, and — when the image carries the ``allora.network/bundle-sha256`` label, as images built by
``build-image`` do — belong to the bundle the overlay runs, before anything is written; and
the change is applied with :func:`~allora_gitops.gitops.repo.persist`: a rejected push re-reads the
new tip and pins again, so concurrent write-backs to one branch all land.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError
from allora_gitops.gitops.repo import Persisted, RepoCache, Snapshot, TreeChange, parse_remote, persist

KUSTOMIZATION = "kustomization.yaml"
DEPLOYMENT_PATCH = "deployment-patch.yaml"


@dataclass(frozen=True)
class PinRequest:
    """Pin ``image`` (``REPO:TAG``, as the overlays reference it) of deployment ``name`` to ``digest``."""

    repo: str
    name: str
    image: str
    digest: str
    version: Optional[str] = None  # finds the open review branch deploy/NAME/NETWORK/VERSION; names the pin/ branch
    networks: tuple[str, ...] = ()  # default: every network whose overlay references the image
    branch: Optional[str] = None  # commit here instead of the review branch / pin branch
    base_branch: str = C.DEFAULT_BRANCH
    check_registry: bool = True


@dataclass
class PinnedOverlay:
    network: str
    branch: str
    commit: str
    created: bool  # False: the overlay was already pinned to this digest
    attempts: int = 1


@dataclass
class PinResult:
    name: str
    image: str
    digest: str
    overlays: list[PinnedOverlay] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "image": self.image, "digest": self.digest, "overlays": [asdict(o) for o in self.overlays]}


def pin_image(request: PinRequest, say: Callable[[str], None] = lambda _m: None) -> PinResult:
    """Check the digest against the registry, then commit it into every overlay that runs ``request.image``.

    Raises :class:`~allora_gitops.errors.UsageError` for a malformed image, digest or network
    (before the registry is asked); :class:`~allora_gitops.errors.ImageBuildError` when the
    registry does not hold ``REPO@digest`` (or cannot be reached), when ``REPO:TAG`` resolves to
    another digest, or when the image's bundle label names another bundle — nothing is written then — and
    :class:`GitOpsError` when no overlay references the image or a push keeps being rejected.
    """
    from allora_gitops.image.registry import require_tagged_digest

    repository = _check_request(request)
    remote = parse_remote(request.repo)
    cache = RepoCache(remote)
    heads = cache.remote_heads()
    if request.base_branch not in heads:
        raise GitOpsError(f"{remote.display} has no branch {request.base_branch!r}; initialise it with `allora-gitops repo init`")
    base = Snapshot(cache.git, cache.fetch(request.base_branch, heads[request.base_branch]))
    targets = {}
    for network in request.networks or C.NETWORKS:
        found = _target_branch(cache, heads, base, request, network)
        if found is not None:
            targets[network] = found
    if request.check_registry:
        bundles = {bundle_sha256(snapshot, request.name, network) for network, (_b, snapshot) in targets.items()} - {None}
        tag = request.image.rsplit(":", 1)[1]
        for sha256 in sorted(bundles) or [None]:  # one per bundle the overlays run (one, unless they disagree)
            require_tagged_digest(repository, tag, request.digest, sha256)
        say(f"{repository}@{request.digest} is in the registry and is what {request.image} names")
    result = PinResult(name=request.name, image=request.image, digest=request.digest)
    for network, (branch, _snapshot) in targets.items():
        persisted = persist(
            remote,
            _pin_change(request.name, network, request.image, request.digest),
            branch=branch,
            base_branch=request.base_branch,
            message=C.pin_commit_message(request.name, network, request.image, request.digest),
            cache=cache,
            on_step=say,
        )
        result.overlays.append(_pinned(network, persisted))
        say(f"{network}: {'pinned' if persisted.created else 'already pinned'} on {branch} ({persisted.commit[:12]})")
    if not result.overlays:
        where = ", ".join(request.networks or C.NETWORKS)
        raise GitOpsError(
            f"no overlay of {request.name} ({where}) references {request.image} on {request.base_branch} or an open review branch; "
            "publish it first"
        )
    return result


def pin_command(name: str, image: str, repo: str, network: str, version: Optional[str], branch: str) -> str:
    """The ``pin-image`` command line that pins ``image`` on ``branch`` (the digest is the pushed image's, shown as ``sha256:…``)."""
    where = f"--version {version}" if version and branch == C.review_branch(name, network, version) else f"--branch {branch}"
    return f"allora-gitops pin-image {name} --image {image} --digest sha256:… --repo {repo} --network {network} {where}"


def _check_request(request: PinRequest) -> str:
    """The image's repository, once the request's own values are well formed (each fault a usage error, exit 2)."""
    from allora_gitops.errors import AlloraGitopsError, UsageError
    from allora_gitops.image.builder import check_reference, split_tag
    from allora_gitops.image.registry import check_digest

    try:
        check_reference(request.image, "--image")
        check_digest(request.digest, "--digest")
    except AlloraGitopsError as exc:
        raise UsageError(exc.message) from None
    repository, tag = split_tag(request.image)
    if tag is None or "@" in request.image:
        raise UsageError(f"--image {request.image!r}: expected REPO:TAG, as the overlays reference it (the digest goes in --digest)")
    unknown = [n for n in request.networks if n not in C.NETWORKS]
    if unknown:
        raise UsageError(f"--network {unknown[0]!r}: expected one of {', '.join(C.NETWORKS)}")
    return repository


def _pinned(network: str, persisted: Persisted) -> PinnedOverlay:
    return PinnedOverlay(network, persisted.branch, persisted.commit, persisted.created, persisted.attempts)


def _target_branch(
    cache: RepoCache, heads: dict[str, str], base: Snapshot, request: PinRequest, network: str
) -> Optional[tuple[str, Snapshot]]:
    """The branch to pin ``network``'s overlay on and the commit whose overlay references the image; None when none does."""
    if request.branch:
        where = base if request.branch not in heads else Snapshot(cache.git, cache.fetch(request.branch, heads[request.branch]))
        return (request.branch, where) if _references(where, request.name, network, request.image) else None
    on_base = _references(base, request.name, network, request.image)
    if request.version:
        review = C.review_branch(request.name, network, request.version)
        if review in heads and not on_base:
            tip = Snapshot(cache.git, cache.fetch(review, heads[review]))
            if _references(tip, request.name, network, request.image):
                return review, tip
    if on_base:
        return C.pin_branch(request.name, network, request.version or request.image.rsplit(":", 1)[-1]), base
    return None


def bundle_sha256(snapshot: Snapshot, name: str, network: str) -> Optional[str]:
    """The bundle sha256 the overlay of ``name`` on ``network`` runs (its kustomization's commonAnnotations), if it says."""
    text = snapshot.read(f"{C.deployment_overlay_dir(name, network)}/{KUSTOMIZATION}")
    annotations = (_load(text).get("commonAnnotations") or {}) if text else {}
    value = annotations.get(C.ANNOTATION_BUNDLE_SHA256) if isinstance(annotations, dict) else None
    return str(value) if value else None


def _references(snapshot: Snapshot, name: str, network: str, image: str) -> bool:
    text = snapshot.read(f"{C.deployment_overlay_dir(name, network)}/{KUSTOMIZATION}")
    return text is not None and _image_entry(_load(text), name, image) is not None


def _pin_change(name: str, network: str, image: str, digest: str) -> Callable[[Snapshot], TreeChange]:
    """The change, computed on whatever tip the push lands on (re-run after a rejected push)."""
    overlay = C.deployment_overlay_dir(name, network)

    def change(snapshot: Snapshot) -> TreeChange:
        kustomization = snapshot.read(f"{overlay}/{KUSTOMIZATION}")
        if kustomization is None:
            raise GitOpsError(f"{overlay}/{KUSTOMIZATION} is gone from the branch; nothing to pin")
        files = {f"{overlay}/{KUSTOMIZATION}": pin_kustomization(kustomization, name, image, digest, f"{overlay}/{KUSTOMIZATION}")}
        patch = snapshot.read(f"{overlay}/{DEPLOYMENT_PATCH}")
        if patch is not None:
            files[f"{overlay}/{DEPLOYMENT_PATCH}"] = drop_digest_skip(patch)
        return TreeChange(files=files)

    return change


def carry_pins(snapshot: Snapshot, tree: dict[str, str], name: str) -> dict[str, str]:
    """``tree`` (a fresh render of deployment ``name``) with the digests ``snapshot`` already pins for its images.

    A re-render (``publish`` with other settings, ``promote``, ``rollback``) writes the overlay whole
    and would otherwise drop a pin made by ``pin-image`` — on the base branch that is an overlay
    ``verify`` refuses. An image tag is derived from the bundle sha256 and never reused, so a digest
    pinned for ``REPO:TAG`` in any overlay of ``name`` holds for the same ``REPO:TAG`` wherever it is
    rendered again. Overlays whose image no overlay pins are returned unchanged; ``tree`` is not modified.
    """
    known: dict[str, str] = {}
    for network in C.NETWORKS:
        text = snapshot.read(f"{C.deployment_overlay_dir(name, network)}/{KUSTOMIZATION}")
        for entry in (_load(text).get("images") or []) if text else []:
            if isinstance(entry, dict) and entry.get("name") == name and entry.get("digest"):
                known[f"{entry.get('newName') or name}:{entry.get('newTag')}"] = str(entry["digest"])
    if not known:
        return tree
    out = dict(tree)
    for network in C.NETWORKS:
        overlay = C.deployment_overlay_dir(name, network)
        text = tree.get(f"{overlay}/{KUSTOMIZATION}")
        entries = (_load(text).get("images") or []) if text else []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("name") != name or entry.get("digest"):
                continue
            image = f"{entry.get('newName') or name}:{entry.get('newTag')}"
            if image in known:
                out[f"{overlay}/{KUSTOMIZATION}"] = pin_kustomization(text, name, image, known[image], f"{overlay}/{KUSTOMIZATION}")
                if f"{overlay}/{DEPLOYMENT_PATCH}" in tree:
                    out[f"{overlay}/{DEPLOYMENT_PATCH}"] = drop_digest_skip(tree[f"{overlay}/{DEPLOYMENT_PATCH}"])
    return out


def pin_kustomization(text: str, name: str, image: str, digest: str, where: str = KUSTOMIZATION) -> str:
    """``text`` with ``digest:`` set on the ``images:`` entry of ``name`` that renders ``image``; comments kept.

    Raises :class:`GitOpsError` when no entry renders ``image`` (the overlay moved on to another version).
    """
    data = _load(text)
    entry = _image_entry(data, name, image)
    if entry is None:
        raise GitOpsError(f"{where}: no images entry renders {image}; the overlay references another image now")
    entry["digest"] = digest
    return _dump(data)


def drop_digest_skip(text: str) -> str:
    """The overlay's Deployment patch with the base's checkov skip for image digests removed (set to null).

    A strategic-merge patch deletes a map key given as ``null``, so the rendered Deployment of a
    pinned overlay carries no skip and checkov checks the digest like any other rule.
    """
    from allora_gitops.render.context import IMAGE_DIGEST_CHECK, checkov_skip_annotation

    data = _load(text)
    metadata = data.setdefault("metadata", {})
    annotations = metadata.get("annotations")
    if annotations is None:
        from ruamel.yaml.comments import CommentedMap

        annotations = metadata["annotations"] = CommentedMap()
    annotations[checkov_skip_annotation(IMAGE_DIGEST_CHECK)] = None
    return _dump(data)


def _image_entry(data, name: str, image: str):
    images = data.get("images") if isinstance(data, dict) else None
    for entry in images or []:
        if not isinstance(entry, dict) or entry.get("name") != name:
            continue
        if f"{entry.get('newName') or entry.get('name')}:{entry.get('newTag')}" == image:
            return entry
    return None


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda r, _d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def _load(text: str):
    from ruamel.yaml.error import YAMLError

    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise GitOpsError(f"cannot parse the overlay to pin it: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def _dump(data) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()
