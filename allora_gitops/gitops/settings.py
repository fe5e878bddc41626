"""``.allora-gitops.yaml``: what must be the same for every deployment of one GitOps repository.

The file is written by ``repo init``, changed by ``repo config``, and read by
``render``, ``publish``, ``promote`` and ``rollback`` from the base branch. A
flag that contradicts it is refused (``UsageError``, exit 2) before anything is
uploaded, recorded or pushed: a repository whose models land in two namespaces,
or whose images come from two registries, is not what anybody meant.

Every read of the file goes through :func:`parse_repository_settings` (one
YAML loader, positions in every error).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allora_gitops import __version__
from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError, Problem, UsageError

# A Kubernetes namespace is a DNS label (RFC 1123): at most 63 characters.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
HEADER = (
    "# Repository-wide settings of this GitOps repository (allora-gitops reads them from the base branch).\n"
    "# Change them with `allora-gitops repo config KEY VALUE`; publish, promote, rollback and render refuse\n"
    "# a flag that contradicts them. Without this file allora-gitops refuses to write to the repository.\n"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DnsEgress(_Section):
    """Where the pods may send DNS queries (UDP and TCP 53), besides nothing else inside the cluster."""

    cluster_dns_namespace: str = Field(C.CLUSTER_DNS_NAMESPACE, description="Namespace of the cluster DNS (CoreDNS / kube-dns) pods.")
    node_local_address: Optional[str] = Field(
        C.NODE_LOCAL_DNS_ADDRESS, description="NodeLocal DNSCache address (null: the cluster has none)."
    )

    @field_validator("cluster_dns_namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes namespace name")
        return v

    @field_validator("node_local_address")
    @classmethod
    def _ip(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None


class CiSettings(_Section):
    """How the repository's own CI workflows install allora-gitops (a pip requirement)."""

    install: Optional[str] = Field(
        None,
        description="A pip requirement: `allora-gitops[platform] @ https://…/x.whl`, `allora-gitops[platform] @ "
        "git+https://…@COMMIT`, or `allora-gitops[platform]==X` once a release is on the index CI uses "
        "(null: not known yet; the workflows stop at their install step and say to set it).",
    )

    @field_validator("install")
    @classmethod
    def _requirement(cls, v: Optional[str]) -> Optional[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        if v is None:
            return v

        try:
            req = Requirement(v)
        except InvalidRequirement as exc:
            # packaging's message goes on with the requirement and a caret line: one line is the contract
            raise ValueError(f"not a pip requirement: {str(exc).splitlines()[0]}") from None
        if req.name.lower().replace("_", "-") != "allora-gitops":
            raise ValueError(f"installs {req.name}, not allora-gitops")
        if "platform" not in req.extras:
            # the light distribution is the model developer's CLI only; the workflows run verify, build-image, sandbox prune
            raise ValueError("must install the platform extra: allora-gitops[platform] …")
        if any(ch in v for ch in "\"'`$\\\n\r"):
            raise ValueError("must not hold quotes, backslashes or `$` (it is written into a shell line)")
        return v


class ImageSettings(_Section):
    """``images:`` — how overlays reference the images they run."""

    require_digest: tuple[str, ...] = Field(
        ("mainnet",),
        description="Networks whose overlays `verify` requires pinned by digest (images[].digest) on the base branch; "
        "the others may run the tag until `pin-image` / `build-image --push --write-back` pins them.",
    )


class SandboxSettings(_Section):
    """``sandbox:`` — one-hour testnet runs (`allora-gitops sandbox`)."""

    wallet_secret: str = Field(
        "allora-sandbox-wallet", min_length=1, description="The platform's testnet wallet Secret every sandbox runs with, never a user's."
    )
    commit: Literal["review", "direct"] = Field("review", description="review: a sandbox/… branch to merge; direct: the base branch.")
    max_per_user: int = Field(2, ge=1, description="Running sandboxes per owner.")


class ResourceMaxima(_Section):
    """``resources:`` — the most one deployment may ask for (request and limit); a larger ask is refused at
    render, publish and in the API, before anything is stored or pushed."""

    max_cpu: str = Field(C.MAX_CPU, description="CPU cores per deployment, a Kubernetes quantity (16, 7500m).")
    max_memory: str = Field(C.MAX_MEMORY, description="Memory per deployment, a Kubernetes quantity (64Gi).")
    max_gpus: int = Field(C.MAX_GPUS, ge=0, le=1024, description="GPUs per deployment (runtime.gpus).")

    @field_validator("max_cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        from allora_gitops.render.spec import _quantity

        return _quantity(v, "CPU", allow_milli=True)

    @field_validator("max_memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        from allora_gitops.render.spec import _quantity

        return _quantity(v, "memory", allow_milli=False)


class SystemPackageSettings(_Section):
    """``system_packages:`` — which Debian packages a bundle's environment.system_packages may install."""

    allowed: tuple[str, ...] = Field(
        (), description="Debian package names publish accepts in a bundle's environment.system_packages (empty: none)."
    )

    @field_validator("allowed")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from allora_gitops.bundle.manifest import check_debian_package

        return tuple(dict.fromkeys(check_debian_package(name) for name in v))


class RemoteArtifactSettings(_Section):
    """``remote_artifacts:`` — how image builds fetch a bundle's artifacts.remote."""

    max_bytes: int = Field(C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES, gt=0, description="Largest remote artifact a build fetches, in bytes (each file).")
    allow_private_addresses: bool = Field(
        False, description="Let builds fetch from loopback, private and link-local addresses (an in-cluster object store); off: refused."
    )


class Toleration(_Section):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: Optional[str] = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: Optional[str] = None
    effect: Optional[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]] = None


class GpuSettings(_Section):
    """``gpu:`` — where models with runtime.gpus run and what they are built on."""

    base_image: Optional[str] = Field(
        None,
        description="CUDA-capable base image with Python for bundles with runtime.gpus, pinned (tag or digest); {python} stands "
        "for the bundle's Python version, e.g. registry.example.com/cuda-python:{python}-12.4 (null: GPU bundles are refused).",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of GPU pods, e.g. {nvidia.com/gpu.present: 'true'}.")
    tolerations: tuple[Toleration, ...] = Field(
        (Toleration(key=C.GPU_RESOURCE, operator="Exists", effect="NoSchedule"),),
        description="Tolerations of GPU pods (default: the nvidia.com/gpu:NoSchedule taint GPU node pools carry).",
    )

    @field_validator("base_image")
    @classmethod
    def _image(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            from allora_gitops.render.spec import check_base_image

            check_base_image(v.replace("{python}", C.DEFAULT_PYTHON))
        return v

    def base_image_for(self, python: str) -> Optional[str]:
        return self.base_image.replace("{python}", python) if self.base_image else None


class RepositorySettings(_Section):
    """``.allora-gitops.yaml``, layout version 1."""

    kind: Literal["AlloraGitopsRepository"] = Field(C.REPO_MARKER_KIND, description="Marks the repository as one allora-gitops writes to (fixed).")
    layout_version: Literal[1] = Field(C.REPO_LAYOUT_VERSION, description="The layout of deployments/, builds/ and argocd/ (fixed).")
    created_by: str = Field(f"allora-gitops {__version__}", description="The allora-gitops that ran `repo init` (fixed).")
    repo_url: str = Field(description="The URL Argo CD clones this repository from.")
    default_branch: str = Field(C.DEFAULT_BRANCH, description="The branch Argo CD deploys from; review branches merge into it.")
    namespace: str = Field(C.NAMESPACE, description="The Kubernetes namespace every model runs in.")
    networks: tuple[str, ...] = Field(C.NETWORKS, description="The networks deployments may target (testnet, mainnet).")
    image_registry: str = Field(C.DEFAULT_IMAGE_REGISTRY, description="Registry/prefix every model image is pushed to.")
    object_store: Optional[str] = Field(None, description="file://DIR or s3://bucket/prefix for bundle archives (null: each operator's default).")
    monitoring: bool = Field(True, description="Default of --monitoring/--no-monitoring: a PodMonitor and a PrometheusRule per deployment.")
    monitoring_namespace: str = Field(C.MONITORING_NAMESPACE, description="Where Prometheus (and Grafana's dashboard sidecar) run: admitted to the metrics port.")
    low_balance_threshold_uallo: Optional[int] = Field(None, ge=0, description="AlloraLowWalletBalance fires below this many uallo (null: 10^18 = 1 ALLO).")
    dns: DnsEgress = DnsEgress()
    images: ImageSettings = ImageSettings()
    sandbox: SandboxSettings = SandboxSettings()
    resources: ResourceMaxima = ResourceMaxima()
    system_packages: SystemPackageSettings = SystemPackageSettings()
    remote_artifacts: RemoteArtifactSettings = RemoteArtifactSettings()
    gpu: GpuSettings = GpuSettings()
    ci: CiSettings = Field(default_factory=lambda: CiSettings(install=default_ci_install()))
    docs_url: Optional[str] = Field(
        None,
        description="Where you host the allora-gitops documentation (mkdocs build of its docs/): every alert's runbook_url "
        "is {docs_url}/how-to/runbooks/#runbook-<alert> (null: the alerts carry no runbook_url).",
    )
    default_owner: Optional[str] = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$", max_length=63,
        description="The platform user a CLI publish records as the owner of a new name (null: the reserved platform owner).",
    )  # fmt: skip

    @field_validator("namespace", "monitoring_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)")
        return v

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in v if n not in C.NETWORKS]
        if unknown or not v:
            raise ValueError(f"unknown network {unknown[0]!r}; known networks: {', '.join(C.NETWORKS)}" if unknown else "at least one network")
        return tuple(dict.fromkeys(v))

    @field_validator("image_registry")
    @classmethod
    def _registry(cls, v: str) -> str:
        from allora_gitops.render.spec import check_image_registry

        return check_image_registry(v)

    @field_validator("object_store")
    @classmethod
    def _store(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.startswith(("file://", "s3://")):
            raise ValueError(f"{v!r} is not a file:// or s3:// URL")
        if v is not None and "@" in v.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials (the file is committed)")
        return v

    @field_validator("docs_url")
    @classmethod
    def _docs_url(cls, v: Optional[str]) -> Optional[str]:
        from urllib.parse import urlsplit

        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname or any(ch in v for ch in " \t\r\n\"'"):
            raise ValueError("not an http(s) URL of a documentation site")  # the value is not echoed: it may hold a password
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL: no credentials, query or fragment (it is committed and sent with alerts)")
        return v.rstrip("/")

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, v: str) -> str:
        from allora_gitops.redact import display_url

        if not v or any(ch in v for ch in " \t\r\n\"'") or ("://" in v and display_url(v) != v):
            raise ValueError("must be one URL without spaces, quotes or a password")
        return v

    def deployment_defaults(self) -> dict[str, Any]:
        """What every deployment of this repository takes from here (``DeploymentSettings`` fields)."""
        return {
            "namespace": self.namespace,
            "image_registry": self.image_registry,
            "cluster_dns_namespace": self.dns.cluster_dns_namespace,
            "node_local_dns": self.dns.node_local_address or "",
            "monitoring": self.monitoring,
            "monitoring_namespace": self.monitoring_namespace,
            "low_balance_threshold": self.low_balance_threshold_uallo,
            "max_cpu": self.resources.max_cpu,
            "max_memory": self.resources.max_memory,
            "max_gpus": self.resources.max_gpus,
            "system_packages_allowed": self.system_packages.allowed,
            "gpu_base_image": self.gpu.base_image,
            "gpu_node_selector": self.gpu.node_selector,
            "gpu_tolerations": tuple(t.model_dump(exclude_none=True) for t in self.gpu.tolerations),
            "artifact_max_bytes": self.remote_artifacts.max_bytes,
            "artifact_allow_private": self.remote_artifacts.allow_private_addresses,
            "docs_url": self.docs_url,
        }

    def to_yaml(self) -> str:
        """The file's text: a comment header, then the settings in declaration order."""
        import yaml

        body = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, default_flow_style=False, width=1000)
        return HEADER + body


def default_ci_install() -> Optional[str]:
    """Where this very allora-gitops came from, as a pip requirement CI can install (PEP 610 ``direct_url.json``).

    A VCS install with its commit, or a wheel/sdist URL that is not a local file, is reused as it is. Otherwise
    None: no release of allora-gitops is on a package index, so a pin ``==VERSION`` would name a distribution
    that exists nowhere; the workflows then stop at their install step saying to set ``ci.install``.
    """
    import json
    from importlib import metadata

    try:
        raw = metadata.distribution("allora-gitops").read_text("direct_url.json")
        info = json.loads(raw) if raw else None
    except (metadata.PackageNotFoundError, ValueError):
        info = None
    url = info.get("url", "") if isinstance(info, dict) else ""
    if isinstance(info, dict) and url.startswith(("https://", "http://")) and "@" not in url.split("//", 1)[1].split("/", 1)[0]:
        vcs = info.get("vcs_info")
        if isinstance(vcs, dict) and vcs.get("commit_id"):
            return f"allora-gitops[platform] @ {vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}"
        if "archive_info" in info:
            return f"allora-gitops[platform] @ {url}"
    return None


def parse_repository_settings(text: str | bytes, file: str = C.REPO_MARKER_FILE) -> RepositorySettings:
    """The one reader of ``.allora-gitops.yaml``: text → RepositorySettings.

    Raises GitOpsError with one ``file:line:col`` problem per mistake.
    """
    from allora_gitops.boundedyaml import YamlError, load_yaml
    from allora_gitops.bundle.manifest import _format_error, _to_plain

    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        data = load_yaml(text, file, positions=True)  # bounded: size, depth, alias expansion
    except YamlError as exc:
        raise GitOpsError(f"invalid repository settings in {file}", exc.problems) from None
    if not isinstance(data, dict):
        raise GitOpsError(f"invalid repository settings in {file}", [Problem("top level must be a mapping", file, 1, 1, code="schema")])
    try:
        return RepositorySettings.model_validate(_to_plain(data))
    except ValidationError as exc:
        problems = sorted((_format_error(e, data, file) for e in exc.errors(include_url=False)), key=lambda p: (p.line or 0, p.col or 0))
        raise GitOpsError(f"invalid repository settings in {file}", problems) from None


def settings_keys() -> list[str]:
    """Every key ``repo config`` knows, dotted (``dns.node_local_address``)."""
    keys = []
    for name, field in RepositorySettings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(f"{name}.{sub}" for sub in ann.model_fields)
        else:
            keys.append(name)
    return keys


FIXED_KEYS = ("kind", "layout_version", "created_by")


def get_setting(settings: RepositorySettings, key: str) -> Any:
    if key not in settings_keys():
        raise UsageError(f"unknown setting {key!r}; known settings: {', '.join(settings_keys())}")
    value: Any = settings.model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    return value


def set_setting(settings: RepositorySettings, key: str, raw: str) -> RepositorySettings:
    """A copy with ``key`` set from its command-line text (lists comma-separated, ``null`` clears); checked whole."""
    get_setting(settings, key)
    if key in FIXED_KEYS:
        raise UsageError(f"{key} is written by allora-gitops and cannot be set")
    value: Any = None if raw in ("null", "") else raw
    if key in ("networks", "images.require_digest", "system_packages.allowed"):
        value = [n.strip() for n in raw.split(",") if n.strip()]
    elif key in ("gpu.node_selector", "gpu.tolerations"):
        from allora_gitops.boundedyaml import YamlError, load_yaml

        try:  # a YAML/JSON flow value: {nvidia.com/gpu.present: "true"} or [{key: nvidia.com/gpu, operator: Exists}]
            value = load_yaml(raw, key) if raw else ({} if key == "gpu.node_selector" else [])
        except YamlError as exc:
            raise UsageError(f"{key}: not a YAML value ({exc.problems[0].message})") from None
    data = settings.model_dump(mode="json")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    try:
        return RepositorySettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise UsageError(f"{key}: {msg}") from None


def check_flags(settings: RepositorySettings, source: str, **flags: Optional[str]) -> None:
    """Refuse (UsageError, exit 2) a flag that contradicts the repository settings; ``None`` = not given.

    Known flags: ``namespace``, ``image_registry``, ``store``, ``repo_url``, ``monitoring_namespace``, ``network``.
    """
    pairs = {
        "namespace": ("--namespace", settings.namespace, "namespace"),
        "image_registry": ("--image-registry", settings.image_registry, "image_registry"),
        "store": ("--store", settings.object_store, "object_store"),
        "repo_url": ("--repo-url", settings.repo_url, "repo_url"),
        "monitoring_namespace": ("--monitoring-namespace", settings.monitoring_namespace, "monitoring_namespace"),
    }
    for name, value in flags.items():
        if value is None:
            continue
        if name == "network":
            if value not in settings.networks:
                raise UsageError(
                    f"--network {value} is not allowed by {source} (networks: {', '.join(settings.networks)}); "
                    f"add it with `allora-gitops repo config networks {','.join((*settings.networks, value))}`"
                )
            continue
        flag, expected, key = pairs[name]
        given = value.rstrip("/") if name == "image_registry" else value
        if expected is not None and given != expected:
            raise UsageError(
                f"{flag} {_shown(given)} contradicts {source} ({key}: {_shown(expected)}); "
                f"leave the flag out, or change the setting with `allora-gitops repo config {key} VALUE`"
            )


def _shown(value: str) -> str:
    from allora_gitops.redact import display_url

    return display_url(value) if "://" in value else value


def validate_settings(values: dict[str, Any]) -> RepositorySettings:
    """Settings from command-line values (``repo init``); a bad value is a UsageError naming its key."""
    try:
        return RepositorySettings.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        raise UsageError("; ".join(lines)) from None
