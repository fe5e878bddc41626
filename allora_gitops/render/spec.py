"""The one model every template receives: a deployment, complete and checked.

Loading follows parse → validate → complete: ``DeploymentSettings`` holds what
the user said (flags, or publish's request; anything may be left out),
``DeploymentSpec.complete`` fills the gaps from the bundle's model.yaml and the
platform defaults, and pydantic checks the result. Every problem is reported
at once as a ``SettingsError`` (a ``RenderError``); nothing is rendered from a half-valid spec.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from allora_gitops import constants as C
from allora_gitops.bundle.manifest import BundleManifest, refuse_rest_network
from allora_gitops.errors import Problem, SettingsError
from allora_gitops.redact import shown_value

# Kubernetes resource quantities (a subset: no negatives, no exponents), e.g. 500m, 0.5, 2, 512Mi, 1.5Gi.
_QUANTITY = re.compile(r"^(?P<num>\d+(\.\d+)?|\.\d+)(?P<unit>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# An image repository without tag/digest: registry[:port]/path, lowercase path components.
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(\.[a-z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The platform API's results endpoint as a cluster Service URL: http(s)://<service>.<namespace>.svc[.cluster.local][:port]/path
_SERVICE_URL = re.compile(
    r"^(?P<scheme>https?)://(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?(:(?P<port>[0-9]{1,5}))?(?P<path>/[A-Za-z0-9._~/-]*)?$"
)


def _quantity(value: str, what: str, allow_milli: bool) -> str:
    match = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
    example = "250m, 0.5 or 2" if allow_milli else "512Mi or 2Gi"
    unit = match["unit"] if match else None
    # CPU is counted in cores (decimal: m, k, M, G…); binary suffixes (Ki, Mi, Gi…) measure bytes.
    if not match or (unit == "m" and not allow_milli) or (allow_milli and unit and unit.endswith("i")):
        raise ValueError(f"{value!r} is not a Kubernetes {what} quantity like {example}")
    if Decimal(match["num"]) == 0:
        raise ValueError(f"{what} must be more than zero")
    from allora_gitops.render.quantity import MAX_QUANTITY, parse_quantity

    quantity = parse_quantity(value)
    if quantity.value >= MAX_QUANTITY:  # the API server would cap it; kept as written so the maxima refusal quotes it
        return value.strip()
    return quantity.canonical()  # what the API server stores, so Argo CD sees no difference


def check_image_registry(value: str) -> str:
    """``registry[:port]/path`` without tag or digest (trailing ``/`` dropped); ValueError otherwise."""
    value = value.rstrip("/")
    if not _REPOSITORY.match(value):
        raise ValueError(f"{value!r} is not an image registry/repository prefix like registry.example.com/team")
    return value


def check_base_image(v: str) -> str:
    """A pinned image reference (a tag other than latest, or a digest); ValueError otherwise."""
    if not _IMAGE.match(v) or v.endswith(":latest"):
        raise ValueError(f"{v!r} is not a pinned image reference like python:3.11-slim or repo@sha256:…")
    return v


# A Secret data key (k8s.io/apimachinery IsConfigMapKey): letters, digits, '-', '_', '.'.
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# A key in an external secret store: path segments, no spaces or quotes.
_REMOTE_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class SecretRef(BaseModel):
    """Where the container's environment variable ``name`` comes from: key ``key`` of Secret ``secret`` — or, with a
    secret store, property ``key`` of the store's entry ``secret``. Names only: the value is never read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    secret: str
    key: str


def parse_secret_mapping(name: str, target: str, *, remote: bool) -> SecretRef:
    """``NAME`` and ``SECRET/KEY`` (the text of ``--secret NAME=SECRET/KEY``) as a SecretRef; ValueError naming NAME.

    With a secret store (``remote``) SECRET is the store's key and may hold ``/`` (the last ``/`` starts KEY).
    Messages never quote SECRET or KEY: what was typed there may be a pasted value rather than a reference."""
    secret, slash, key = target.rpartition("/")
    if not slash or not secret or not key:
        raise ValueError(f"{name}: expected SECRET/KEY (a Secret's name and one of its keys)")
    if not _SECRET_KEY.match(key) or len(key) > 253:
        raise ValueError(f"{name}: the KEY of SECRET/KEY is not a Secret key (letters, digits, '-', '_' and '.')")
    if remote:
        if not _REMOTE_KEY.match(secret):
            raise ValueError(f"{name}: the SECRET of SECRET/KEY is not a secret-store key (path segments of letters, digits, '-', '_', '.')")
    elif len(secret) > 253 or not _DNS_SUBDOMAIN.match(secret):
        raise ValueError(f"{name}: the SECRET of SECRET/KEY is not a Kubernetes Secret name (lowercase letters, digits, '-' and '.')")
    return SecretRef(name=name, secret=secret, key=key)


def cpu_millicores(quantity: str) -> int:
    match = _QUANTITY.match(quantity)
    assert match, quantity
    value = Decimal(match["num"])
    unit = match["unit"] or ""
    if unit == "m":
        return max(1, int(value))
    scale = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9}.get(unit, 1)
    return max(1, int(value * scale * 1000))


def quantity_value(quantity: str) -> float | None:
    """A Kubernetes quantity as a plain number (``500m`` → 0.5 cores, ``512Mi`` → 536870912 bytes); None when
    it is not one. Suffixes as in k8s.io/apimachinery ``resource.Quantity`` (decimal ``m``…``E``, binary ``Ki``…``Ei``)."""
    match = _QUANTITY.match(quantity.strip()) if isinstance(quantity, str) else None
    if match is None:
        return None
    unit = match["unit"] or ""
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}.get(unit) or 1024 ** ("KMGTPE".index(unit[0]) + 1)
    return float(Decimal(match["num"])) * scale


def cpu_from_cores(cores: float) -> str:
    try:
        return f"{max(1, int(Decimal(str(cores)) * 1000))}m"
    except InvalidOperation:  # pragma: no cover - pydantic already checked it is a positive number
        return C.DEFAULT_CPU


def resources_over_maxima(spec: "DeploymentSpec") -> list[str]:
    """One line per resource ``spec`` asks more of than its maxima (the repository's ``resources:``)."""
    where = f"the repository's maximum (resources.max_{{}} in {C.REPO_MARKER_FILE})"
    out = []
    cap = quantity_value(spec.max_cpu)
    for field in ("cpu", "cpu_limit"):  # the limit defaults to twice the request: one line for one absurd ask
        if quantity_value(getattr(spec, field)) > cap:
            out.append(f"{field.replace('_', '-')}: {shown_value(getattr(spec, field))} cores is more than {spec.max_cpu}, {where.format('cpu')}")
            break
    if quantity_value(spec.memory) > quantity_value(spec.max_memory):
        out.append(f"memory: {shown_value(spec.memory)} is more than {spec.max_memory}, {where.format('memory')}")
    gpus = getattr(spec.manifest.runtime, "gpus", None) or 0  # runtime.gpus, where the manifest has it
    if gpus > spec.max_gpus:
        out.append(f"runtime.gpus: {gpus} is more than {spec.max_gpus}, {where.format('gpus')}")
    return out


def default_archive_url(name: str, version: str, sha256: str) -> str:
    """Where the archive lives when nobody said: its URL in the configured (else the local default) store.

    ``render`` uploads nothing; ``publish`` passes the URL its upload returned, which is the same.
    """
    from allora_gitops.storage.objects import open_store

    return open_store(None).url_for(C.archive_object_key(name, version, sha256))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentSettings(_Model):
    """What the operator asked for (flags, or an API request). ``None`` means "from the repository settings,
    else model.yaml, else the platform default". The one set of deployment options: every command that
    renders a deployment takes it (``cli/options.py`` declares the matching flags once)."""

    network: Optional[str] = None  # default: model.yaml's allora.network
    topic_id: Optional[int] = None
    fee_tier: Optional[str] = None
    polling_interval: Optional[int] = None
    cpu: Optional[str] = None
    cpu_limit: Optional[str] = None
    memory: Optional[str] = None
    image_registry: Optional[str] = None
    wallet_secret: Optional[str] = None
    secret_store: Optional[str] = None
    secret_store_kind: Optional[str] = None
    wallet_remote_key: Optional[str] = None
    base_image: Optional[str] = None
    archive_url: Optional[str] = None
    namespace: Optional[str] = None
    cluster_dns_namespace: Optional[str] = None  # from the repository settings (dns.*)
    node_local_dns: Optional[str] = None  # "" = the cluster has no NodeLocal DNSCache
    monitoring: Optional[bool] = None
    low_balance_threshold: Optional[int] = None
    monitoring_namespace: Optional[str] = None
    results_url: Optional[str] = None
    max_cpu: Optional[str] = None  # the repository's resources.* maxima (not flags: an admin's bound)
    max_memory: Optional[str] = None
    max_gpus: Optional[int] = None
    # NAME (an environment.secrets entry of model.yaml) → "SECRET/KEY": names only, never a value
    secrets: Optional[dict[str, str]] = None
    # from the repository settings (system_packages.*, gpu.*, remote_artifacts.*); None: not rendered into a repository
    system_packages_allowed: Optional[tuple[str, ...]] = None
    gpu_base_image: Optional[str] = None
    gpu_node_selector: Optional[dict[str, str]] = None
    gpu_tolerations: Optional[tuple[dict, ...]] = None
    artifact_max_bytes: Optional[int] = None
    artifact_allow_private: Optional[bool] = None
    docs_url: Optional[str] = None  # the repository's docs_url: where the alerts' runbook_url point

    def explicit(self) -> dict:
        """What was given, without the ``None`` gaps."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def over(self, defaults: dict) -> "DeploymentSettings":
        """These settings, with the gaps filled from ``defaults`` (e.g. what a network used last time)."""
        known = {k: v for k, v in defaults.items() if k in type(self).model_fields and v is not None}
        return DeploymentSettings(**{**known, **self.explicit()})


class DeploymentSpec(_Model):
    """Everything the templates need for one bundle version on one network."""

    manifest: BundleManifest
    sha256: str = Field(description="hex sha256 of the bundle archive (.tar.gz bytes)")
    archive_size: int = Field(ge=0)
    archive_url: str
    network: Literal["testnet", "mainnet"]
    topic_id: int = Field(gt=0, le=C.MAX_TOPIC_ID)
    fee_tier: Literal["ECO", "STANDARD", "PRIORITY"]
    polling_interval: int = Field(gt=0)
    cpu: str
    cpu_limit: str
    memory: str
    image_registry: str = C.DEFAULT_IMAGE_REGISTRY
    wallet_secret: str
    secret_store: Optional[str] = None
    secret_store_kind: Literal["SecretStore", "ClusterSecretStore"] = C.DEFAULT_SECRET_STORE_KIND
    wallet_remote_key: str
    base_image: str
    namespace: str = C.NAMESPACE
    cluster_dns_namespace: str = C.CLUSTER_DNS_NAMESPACE
    node_local_dns: Optional[str] = C.NODE_LOCAL_DNS_ADDRESS
    monitoring: bool = Field(True, description="render the PodMonitor and PrometheusRule (prometheus-operator)")
    low_balance_threshold: int = Field(C.LOW_BALANCE_THRESHOLD_UALLO, ge=0, description="AlloraLowWalletBalance below this many uallo")
    monitoring_namespace: str = Field(C.MONITORING_NAMESPACE, description="where Prometheus runs: the NetworkPolicy admits it to the metrics port")
    results_url: Optional[str] = Field(
        None, description="the platform API's results endpoint (a cluster Service URL); set: the pod reports its results there"
    )
    max_cpu: str = Field(C.MAX_CPU, description="the most CPU (request and limit) the repository allows one deployment")
    max_memory: str = Field(C.MAX_MEMORY, description="the most memory the repository allows one deployment")
    max_gpus: int = Field(C.MAX_GPUS, ge=0, description="the most GPUs the repository allows one deployment")
    secret_refs: tuple[SecretRef, ...] = Field((), description="environment.secrets of model.yaml, each mapped to a Secret key")
    gpu_node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of the pod when runtime.gpus is set")
    gpu_tolerations: tuple[dict, ...] = Field((), description="tolerations of the pod when runtime.gpus is set")
    artifact_max_bytes: int = Field(C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES, gt=0, description="largest artifacts.remote file a build fetches")
    artifact_allow_private: bool = Field(False, description="builds may fetch artifacts.remote from loopback/private/link-local addresses")
    docs_url: Optional[str] = Field(None, description="the documentation site the alerts' runbook_url point into (None: no runbook_url)")

    @field_validator("results_url")
    @classmethod
    def _results_url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            match = _SERVICE_URL.match(v)
            if match is None or not 0 < int(match["port"] or 1) <= 65535:
                raise ValueError(
                    f"{shown_value(v)} is not a cluster Service URL like"
                    " http://allora-platform.allora-platform.svc:8000/api/v1/results"
                    " (the pod's egress is opened to that namespace and port only)"
                )
        return v

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, v: object) -> object:
        return refuse_rest_network(v)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError("must be 64 lowercase hex digits")
        return v

    @field_validator("cpu", "cpu_limit", "max_cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        return _quantity(v, "CPU", allow_milli=True)

    @field_validator("memory", "max_memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        return _quantity(v, "memory", allow_milli=False)

    @field_validator("image_registry")
    @classmethod
    def _registry(cls, v: str) -> str:
        return check_image_registry(v)

    @field_validator("base_image")
    @classmethod
    def _base_image(cls, v: str) -> str:
        return check_base_image(v)

    @field_validator("node_local_dns")
    @classmethod
    def _ip(cls, v: Optional[str]) -> Optional[str]:
        import ipaddress

        if v is not None:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address") from None
        return v

    @field_validator("wallet_secret", "secret_store", "namespace", "cluster_dns_namespace", "monitoring_namespace")
    @classmethod
    def _k8s_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (len(v) > 253 or not _DNS_SUBDOMAIN.match(v)):
            raise ValueError(f"{v!r} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')")
        return v

    @field_validator("archive_url", "wallet_remote_key")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if not v or any(ch in v for ch in "\r\n\t\"'\\ ") or "@" in v.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError("must be one line without quotes, spaces or credentials")
        return v

    @model_validator(mode="after")
    def _limits(self) -> "DeploymentSpec":
        if cpu_millicores(self.cpu_limit) < cpu_millicores(self.cpu):
            raise ValueError(f"cpu-limit: {self.cpu_limit} is below the cpu request {self.cpu}")
        if len(C.image_tag(self.manifest.version, self.sha256)) > 128:
            raise ValueError("version: too long for an image tag (at most 114 characters)")
        return self

    # --- derived values the templates use ------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def python_version(self) -> str:
        return self.manifest.python.version

    @property
    def image_repository(self) -> str:
        return f"{self.image_registry}/{self.name}"

    @property
    def image_tag(self) -> str:
        return C.image_tag(self.version, self.sha256)

    @property
    def image(self) -> str:
        """The full image reference the overlay runs: ``<registry>/<name>:<version>-<sha256[:12]>``."""
        return f"{self.image_repository}:{self.image_tag}"

    @property
    def node_local_dns_cidr(self) -> str:
        """The NodeLocal DNSCache address as a one-address NetworkPolicy ``ipBlock`` (``/32``, ``/128`` for IPv6)."""
        import ipaddress

        return str(ipaddress.ip_network(self.node_local_dns))

    @property
    def instance(self) -> str:
        return f"{self.name}-{self.network}"

    @property
    def results_service(self) -> Optional[dict]:
        """``results_url`` as the NetworkPolicy needs it: ``{"namespace", "ports"}``.

        The ports are the URL's (the scheme's when none) and the platform pod's (``PLATFORM_API_POD_PORT``):
        depending on the CNI, a policy sees the Service port or, after DNAT, the pod's.
        """
        if self.results_url is None:
            return None
        match = _SERVICE_URL.match(self.results_url)
        assert match is not None  # checked by the validator
        port = int(match["port"] or (443 if match["scheme"] == "https" else 80))
        return {"namespace": match["namespace"], "ports": sorted({port, C.PLATFORM_API_POD_PORT})}

    @property
    def gpus(self) -> Optional[int]:
        return self.manifest.runtime.gpus

    @property
    def env_secret_name(self) -> str:
        """The Secret the ExternalSecret of environment.secrets creates (with a secret store)."""
        return f"{self.name}-{self.network}-env"

    @property
    def heartbeat_max_age(self) -> int:
        """Liveness must tolerate one slow prediction plus a poll: never less than the default."""
        return max(C.HEARTBEAT_MAX_AGE_SECONDS, int(self.manifest.runtime.max_seconds) * 2 + self.polling_interval)

    @classmethod
    def complete(cls, manifest: BundleManifest, *, sha256: str, archive_size: int, settings: DeploymentSettings) -> "DeploymentSpec":
        """Fill what ``settings`` left out from model.yaml and platform defaults, then check it all."""
        s = settings.model_copy(update={"network": settings.network or manifest.allora.network})
        # Names derived from the network are derived from a known one: a bad network is reported once, by its
        # own field, and never echoed into a secret name (a URL may carry credentials).
        named_for = s.network if s.network in C.NETWORKS else C.NETWORKS[0]
        allora = manifest.allora
        runtime = manifest.runtime
        cpu = s.cpu or (cpu_from_cores(runtime.cpu_cores) if runtime.cpu_cores else C.DEFAULT_CPU)
        memory = s.memory or (f"{runtime.memory_mb}Mi" if runtime.memory_mb else C.DEFAULT_MEMORY)
        cpu_limit = s.cpu_limit
        if cpu_limit is None:
            try:
                cpu_limit = f"{cpu_millicores(_quantity(cpu, 'CPU', True)) * 2}m"
            except ValueError:
                cpu_limit = C.DEFAULT_CPU  # the cpu problem itself is reported below, once
        topic_id = s.topic_id if s.topic_id is not None else allora.topic_id
        data = {
            "manifest": manifest,
            "sha256": sha256,
            "archive_size": archive_size,
            "archive_url": s.archive_url or default_archive_url(manifest.name, manifest.version, sha256),
            "network": s.network,
            "topic_id": topic_id,
            "fee_tier": s.fee_tier or allora.fee_tier,
            "polling_interval": s.polling_interval if s.polling_interval is not None else allora.polling_interval,
            "cpu": cpu,
            "cpu_limit": cpu_limit,
            "memory": memory,
            "image_registry": s.image_registry or C.DEFAULT_IMAGE_REGISTRY,
            "wallet_secret": s.wallet_secret or C.wallet_secret_name(manifest.name, named_for),
            "secret_store": s.secret_store,
            "secret_store_kind": s.secret_store_kind or C.DEFAULT_SECRET_STORE_KIND,
            "wallet_remote_key": s.wallet_remote_key or f"allora/{manifest.name}/{named_for}",
            "base_image": s.base_image or f"python:{manifest.python.version}-slim",
            "namespace": s.namespace or C.NAMESPACE,
            "cluster_dns_namespace": s.cluster_dns_namespace or C.CLUSTER_DNS_NAMESPACE,
            "node_local_dns": C.NODE_LOCAL_DNS_ADDRESS if s.node_local_dns is None else (s.node_local_dns or None),
            "monitoring": True if s.monitoring is None else s.monitoring,
            "low_balance_threshold": C.LOW_BALANCE_THRESHOLD_UALLO if s.low_balance_threshold is None else s.low_balance_threshold,
            "monitoring_namespace": s.monitoring_namespace or C.MONITORING_NAMESPACE,
            "results_url": s.results_url,
            "max_cpu": s.max_cpu or C.MAX_CPU,
            "max_memory": s.max_memory or C.MAX_MEMORY,
            "max_gpus": C.MAX_GPUS if s.max_gpus is None else s.max_gpus,
        }
        problems = []
        if topic_id is None:
            problems.append(Problem("topic-id: no topic id; pass --topic-id or set allora.topic_id in model.yaml", code="settings"))
        refs, ref_problems = _secret_refs(manifest, s.secrets or {}, remote=bool(s.secret_store))
        problems += ref_problems
        problems += _system_package_problems(manifest, s.system_packages_allowed)
        if runtime.gpus:
            gpu_image = s.gpu_base_image.replace("{python}", manifest.python.version) if s.gpu_base_image else None
            if not s.base_image and not gpu_image:
                problems.append(Problem(
                    f"base-image: runtime.gpus is {runtime.gpus} but no CUDA-capable base image is set; set gpu.base_image in "
                    ".allora-gitops.yaml (`allora-gitops repo config gpu.base_image IMAGE`) or pass --base-image", code="settings",
                ))
            data["base_image"] = s.base_image or gpu_image or data["base_image"]
            data["gpu_node_selector"] = s.gpu_node_selector or {}
            data["gpu_tolerations"] = tuple(s.gpu_tolerations) if s.gpu_tolerations is not None else _DEFAULT_GPU_TOLERATIONS
        data["secret_refs"] = refs
        data["docs_url"] = s.docs_url
        if s.artifact_max_bytes is not None:
            data["artifact_max_bytes"] = s.artifact_max_bytes
        data["artifact_allow_private"] = bool(s.artifact_allow_private)
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            errors = [e for e in exc.errors(include_url=False) if not (topic_id is None and e["loc"][:1] == ("topic_id",))]
            raise settings_error(problems + [_problem(e) for e in errors]) from None
        problems += [Problem(line, code="settings") for line in resources_over_maxima(spec)]
        if problems:
            raise settings_error(problems)
        return spec


_DEFAULT_GPU_TOLERATIONS = ({"key": C.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)


def _secret_refs(manifest: BundleManifest, mapping: dict[str, str], *, remote: bool) -> tuple[tuple[SecretRef, ...], list[Problem]]:
    """model.yaml's environment.secrets, each with the mapping the operator gave; a problem per missing or unknown one."""
    declared = list(manifest.environment.secrets)
    refs, problems = [], []
    for name in declared:
        if name not in mapping:
            problems.append(Problem(
                f"secret: model.yaml declares the secret {name} but it is not mapped; pass --secret {name}=SECRET/KEY "
                "(API: secrets: {" + f'"{name}": "SECRET/KEY"' + "})", code="settings",
            ))
            continue
        try:
            refs.append(parse_secret_mapping(name, mapping[name], remote=remote))
        except ValueError as exc:
            problems.append(Problem(f"secret: {exc}", code="settings"))
    for name in mapping:
        if name not in declared:
            known = ", ".join(declared) or "none"
            problems.append(Problem(f"secret: {shown_value(name)} is not declared in model.yaml's environment.secrets (declared: {known})", code="settings"))
    return tuple(refs), problems


def _system_package_problems(manifest: BundleManifest, allowed: Optional[tuple[str, ...]]) -> list[Problem]:
    """environment.system_packages outside the repository's allow-list (None: no repository, nothing to enforce)."""
    if allowed is None:
        return []
    refused = [p for p in manifest.environment.system_packages if p not in allowed]
    if not refused:
        return []
    listed = ",".join(dict.fromkeys((*allowed, *refused)))
    return [Problem(
        f"system-packages: {', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not in the repository's allow-list "
        f"(system_packages.allowed: {', '.join(allowed) or 'none'}); an admin allows them with "
        f"`allora-gitops repo config system_packages.allowed {listed}`", code="settings",
    )]


def settings_error(problems: list[Problem]) -> SettingsError:
    """One problem reads as one line (``error: memory: …``); several get a heading."""
    if len(problems) == 1:
        return SettingsError(problems[0].message)
    return SettingsError("invalid deployment settings", problems)


_FLAG = {"archive_size": "archive size", "sha256": "sha256"}


def _problem(err: dict) -> Problem:
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else ""
    label = _FLAG.get(field, field.replace("_", "-"))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = err.get("input")
    shown = ""
    if err["type"] in ("greater_than", "less_than_equal", "literal_error", "int_parsing", "int_type") and not isinstance(value, (dict, list)):
        shown = f" (got {shown_value(value)})"
    return Problem(f"{label}: {msg}{shown}" if label else msg, code="settings")
