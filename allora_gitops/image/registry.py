"""Ask an image registry what it holds, with ``skopeo`` (no daemon, the builder's own auth files).

Loopback registries (``localhost``, ``127.0.0.0/8``, ``[::1]``) are spoken to without TLS
verification, since a registry on this machine is the test's or a developer's own; every other
registry keeps TLS verification on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
from allora_gitops.errors import ImageBuildError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
INSPECT_TIMEOUT = 60  # seconds for one `skopeo inspect`


def registry_host(ref: str) -> str:
    """The registry host of a reference: ``127.0.0.1:5000/a/b:1`` → ``127.0.0.1:5000``; short names are Docker Hub."""
    first, slash, _ = ref.partition("@")[0].partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first
    return "docker.io"


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.y.z`` or ``[::1]``, with or without a port."""
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tls_verify_args(ref: str) -> list[str]:
    """``["--tls-verify=false"]`` for a loopback registry (buildah and skopeo spell it alike), else nothing."""
    return ["--tls-verify=false"] if is_loopback(registry_host(ref)) else []


def check_digest(digest: str, what: str = "digest") -> str:
    if not DIGEST_RE.match(digest or ""):
        raise ImageBuildError(f"{what} {digest!r}: expected sha256:<64 hex digits>")
    return digest


def manifest_digest(ref: str) -> str:
    """The digest (``sha256:…``) of the manifest ``ref`` names in its registry, computed from the bytes served.

    Raises :class:`ImageBuildError` (one line) when the registry cannot be reached, refuses the
    credentials, or holds no such manifest; and when a ``REPO@sha256:…`` reference is answered
    with bytes of another digest (a registry that lies is not one to pin to).
    """
    import shutil

    if shutil.which("skopeo") is None:
        raise ImageBuildError("skopeo is not installed (Debian/Ubuntu: apt-get install skopeo); it checks what the registry holds")
    args = ["skopeo", "inspect", "--raw", *tls_verify_args(ref), f"docker://{ref}"]
    try:
        proc = subprocess.run(args, capture_output=True, timeout=INSPECT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"cannot reach the registry of {ref}: no answer within {INSPECT_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise ImageBuildError(_inspect_failure(ref, proc.stderr.decode("utf-8", "replace")))
    digest = "sha256:" + hashlib.sha256(proc.stdout).hexdigest()
    _, at, wanted = ref.partition("@")
    if at and wanted != digest:
        raise ImageBuildError(f"the registry answered {ref} with a manifest of digest {digest}")
    return digest


def image_labels(ref: str) -> dict[str, str]:
    """The labels of the image ``ref`` names (its OCI config's ``config.Labels``); {} when it has none.

    Raises :class:`ImageBuildError` like :func:`manifest_digest` when the registry cannot answer.
    """
    import json

    proc = subprocess.run(
        ["skopeo", "inspect", "--config", *tls_verify_args(ref), f"docker://{ref}"],
        capture_output=True, timeout=INSPECT_TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ImageBuildError(_inspect_failure(ref, proc.stderr.decode("utf-8", "replace")))
    try:
        config = json.loads(proc.stdout)
    except ValueError:
        raise ImageBuildError(f"the registry answered {ref} with an image configuration that is not JSON") from None
    labels = ((config if isinstance(config, dict) else {}).get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def require_tagged_digest(repository: str, tag: str, digest: str, bundle_sha256: str | None = None) -> str:
    """Refuse ``digest`` unless it is what ``repository:tag`` names now and, when its image carries the bundle
    label, the label says ``bundle_sha256``: a pin must hold the bytes that were reviewed, not another push
    of the tag or another version's image of the same repository (docker/cli #4545, jib #2398).

    Returns the pinned reference. Raises :class:`ImageBuildError` (one line, both digests or both sha256s named).
    """
    from allora_gitops import constants as C

    pinned = require_manifest(repository, digest)
    tagged = manifest_digest(f"{repository}:{tag}")
    if tagged != digest:
        raise ImageBuildError(
            f"{repository}:{tag} resolves to {tagged}, not {digest}: the tag was pushed again or the digest is another "
            "image's; pin the digest the tag names, after checking it holds the reviewed build"
        )
    label = image_labels(pinned).get(C.ANNOTATION_BUNDLE_SHA256)
    if bundle_sha256 and label and label != bundle_sha256:
        raise ImageBuildError(
            f"{pinned} is labelled {C.ANNOTATION_BUNDLE_SHA256}={label}, but the overlay runs bundle sha256 {bundle_sha256}: "
            "it is another bundle's image"
        )
    return pinned


def require_manifest(repository: str, digest: str) -> str:
    """Refuse ``repository@digest`` unless the registry holds that manifest; returns the pinned reference."""
    check_digest(digest)
    ref = f"{repository}@{digest}"
    manifest_digest(ref)
    return ref


def _inspect_failure(ref: str, stderr: str) -> str:
    text = " ".join(stderr.split())
    low = text.lower()
    host = registry_host(ref)
    if "manifest unknown" in low or "not found" in low or "name_unknown" in low:
        return f"{ref} is not in the registry {host} (no such manifest)"
    if "connection refused" in low or "no such host" in low or "i/o timeout" in low or "network is unreachable" in low:
        return f"cannot reach the registry {host} for {ref}: {_reason(text)}"
    if "unauthorized" in low or "denied" in low or "authentication required" in low:
        return f"the registry {host} refused the credentials for {ref} (log in with `buildah login {host}`)"
    return f"cannot inspect {ref}: {_reason(text)}"


def _reason(text: str) -> str:
    """The last clause of a Go error chain (``…: dial tcp …: connect: connection refused`` → ``connection refused``)."""
    tail = text.rstrip('"').rsplit(": ", 1)[-1].strip()
    return tail[:200] or "unknown error"

