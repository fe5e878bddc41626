"""Every name, path, label and format the project shares, in one place.

Commands and templates refer to these instead of spelling strings again, so a
change of layout or label is a change here.
"""

from __future__ import annotations

from allora_runtime import contract as _runtime

# --- the bundle -------------------------------------------------------------
MANIFEST_FILE = "model.yaml"
SCHEMA_VERSION = "0.1"
SUPPORTED_PYTHON = ("3.10", "3.11", "3.12", "3.13")
DEFAULT_PYTHON = "3.11"
MAX_NAME_LENGTH = 53  # leaves room for suffixes in Kubernetes object names (63)
MAX_VERSION_LENGTH = 64  # the records' limit (model_bundles_version_format)
MAX_BUNDLE_BYTES = 500 * 1024 * 1024
MAX_TOPIC_ID = 2**63 - 1  # the records database keeps topic ids as bigint (the chain's are uint64)
DEFAULT_MAX_SECONDS = _runtime.DEFAULT_MAX_SECONDS
FEE_TIERS = _runtime.FEE_TIERS
NETWORKS = ("testnet", "mainnet")
IGNORE_FILE = ".allorabundleignore"
# model.yaml environment.variables / environment.secrets: names the platform sets itself (the runtime's contract, the
# image's ENV) and the prefix it keeps for them; a bundle naming one is refused.
RESERVED_ENV_PREFIX = "ALLORA_"
RESERVED_ENV_NAMES = frozenset(
    {value for key, value in vars(_runtime).items() if key.startswith("ENV_") and isinstance(value, str)}
    | {"BUNDLE_ROOT", "HOME", "XDG_CACHE_HOME", "PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME"}
)
REMOTE_ARTIFACT_SCHEMES = ("https", "s3")
DEFAULT_REMOTE_ARTIFACT_MAX_BYTES = 20 * 1024**3  # each file; the repository's remote_artifacts.max_bytes overrides it
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
ARCHIVE_MANIFEST = ".allora-manifest.json"  # per-file sha256, written by build, checked by inspect
# The guide's default excludes, plus compiled Python anywhere. Gitignore syntax.
DEFAULT_EXCLUDES = (
    ".git/",
    ".gitignore",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".pytest_cache/",
    ".mypy_cache/",
    ".tox/",
    ".venv/",
    "venv/",
    ".env",
    "/dist/",
    ".DS_Store",
)
SOURCE_DATE_EPOCH_DEFAULT = 315532800  # 1980-01-01T00:00:00Z, the earliest a zip can say too

# --- the runtime (its contract is allora_runtime.contract; these name it for templates and commands) ---
ALLORA_SDK_VERSION = _runtime.SDK_VERSION
# The runtime's own third-party imports besides the SDK, pinned for images and local runs alike.
RUNTIME_PYYAML_REQUIREMENT = "PyYAML==6.0.4"
RUNTIME_PROMETHEUS_REQUIREMENT = "prometheus-client==0.26.0"
# What `allora-bundle run` adds to a bundle's requirements: dry-run never imports the SDK.
RUNTIME_DRY_RUN_REQUIREMENTS = (RUNTIME_PYYAML_REQUIREMENT, RUNTIME_PROMETHEUS_REQUIREMENT)
SAMPLE_NONCE = _runtime.SAMPLE_NONCE  # the nonce `bootstrap.pyz --check` and `allora-bundle run` use when given none
BUNDLE_ROOT_IN_IMAGE = _runtime.DEFAULT_BUNDLE_ROOT
BOOTSTRAP_IN_IMAGE = "/workspace/bootstrap.pyz"  # the allora_runtime package as one zipapp (allora_gitops/runtime.py)
RUNTIME_UID = 1000
METRICS_PORT = _runtime.DEFAULT_METRICS_PORT
HOME_IN_POD = "/tmp"  # the writable emptyDir: UID 1000 has no passwd entry, so HOME would be /
XDG_CACHE_HOME_IN_POD = "/tmp/.cache"
HEARTBEAT_FILE = _runtime.DEFAULT_HEARTBEAT_FILE  # /tmp is a writable emptyDir; the root filesystem is read-only
HEARTBEAT_MAX_AGE_SECONDS = int(_runtime.DEFAULT_HEARTBEAT_MAX_AGE)  # `bootstrap.pyz --healthcheck` fails past this
# The wallet Secret is mounted as files (not env vars, so it never shows in `env` or /proc/*/environ):
# the directory holds a `mnemonic` or a `private_key` file.
WALLET_DIR_IN_POD = _runtime.DEFAULT_WALLET_DIR
WALLET_DIR_ENV = _runtime.ENV_WALLET_DIR
WALLET_SECRET_KEYS = _runtime.WALLET_FILES
# Results reporting (render's --results-url): the env the runtime reads and the projected ServiceAccount token it sends.
RESULTS_URL_ENV = _runtime.ENV_RESULTS_URL
RESULTS_TOKEN_AUDIENCE = _runtime.RESULTS_TOKEN_AUDIENCE
RESULTS_TOKEN_EXPIRATION_SECONDS = _runtime.RESULTS_TOKEN_EXPIRATION_SECONDS
RESULTS_TOKEN_DIR_IN_POD = _runtime.RESULTS_TOKEN_DIR
RESULTS_TOKEN_PATH = _runtime.RESULTS_TOKEN_PATH
PLATFORM_API_POD_PORT = 8080  # the port `allora-gitops serve` listens on in the blueprint's platform/ (Service 80 → 8080)
# The image build context: Dockerfile + these two files beside it.
BUILD_CONTEXT_ARCHIVE = "bundle.tar.gz"
BUILD_CONTEXT_BOOTSTRAP = "bootstrap.pyz"
BUILD_SECRET_PIP_CERT = "pipcert"  # CA bundle for pip, optional
BUILD_SECRET_PIP_CONF = "pipconf"  # pip.conf with index credentials, optional
BUILD_CONTEXT_DOCKERFILE = "Dockerfile"
BUILD_CONTEXT_REQUIREMENTS = "requirements.txt"  # copied out of the archive (environment.pip_requirements)
BUILD_CONTEXT_CONSTRAINTS = "constraints.txt"  # copied out of the archive when environment.constraints is set
BUILD_CONTEXT_REMOTE_ARTIFACTS = "remote-artifacts"  # model.yaml artifacts.remote, one file per sha256
BUILD_METADATA_FILE = "build.yaml"  # beside the Dockerfile in builds/<name>/<version>/
# PID 1 of every model container: forwards signals to the runtime and reaps orphaned processes.
RUNTIME_INIT_REQUIREMENT = "dumb-init==1.2.5.post1"
# What the image installs beside the bundle's own requirements, pinned (the runtime needs them).
RUNTIME_REQUIREMENTS = (
    _runtime.SDK_REQUIREMENT, RUNTIME_PROMETHEUS_REQUIREMENT, RUNTIME_PYYAML_REQUIREMENT, RUNTIME_INIT_REQUIREMENT,
)
VENV_IN_IMAGE = "/opt/venv"
INIT_IN_IMAGE = f"{VENV_IN_IMAGE}/bin/dumb-init"

# --- state on the operator's machine -------------------------------------------
STATE_HOME_ENV = "ALLORA_GITOPS_HOME"  # everything kept locally (embedded PostgreSQL, file store, caches); else $XDG_DATA_HOME/allora-gitops
INSTALLER_ENV = "ALLORA_GITOPS_INSTALLER"  # "pip" builds `run` environments with pip even where uv is installed
UV_VERSION = "0.13.10"  # the uv the image's build stage installs its environment with (`uv` on PyPI)
DATABASE_URL_ENV = "ALLORA_DATABASE_URL"  # the records' PostgreSQL (postgresql://…); unset: the embedded server under the state directory
STORE_URL_ENV = "ALLORA_STORE_URL"  # the bundle archives' object store, file://DIR or s3://bucket/prefix; unset: a directory under the state directory
# how long `results prune` keeps submission results when --older-than is not given (e.g. 30d, 12h)
RESULTS_RETENTION_ENV = "ALLORA_RESULTS_RETENTION"
DEFAULT_RESULTS_RETENTION = "30d"

# --- the GitOps repository ---------------------------------------------------
DEPLOYMENTS_DIR = "deployments"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")  # the names kustomize looks for
BUILDS_DIR = "builds"
ARGOCD_DIR = "argocd"
MONITORING_DIR = "monitoring"  # the shared Grafana dashboard (ConfigMap for the monitoring namespace)
REPO_MARKER_FILE = ".allora-gitops.yaml"  # says "this repository was initialised by allora-gitops"
NAMESPACE = "allora-models"
MONITORING_NAMESPACE = "monitoring"
# AlloraLowWalletBalance fires below this balance (uallo; 1 ALLO = 10**18 uallo): 1 ALLO pays many submissions.
LOW_BALANCE_THRESHOLD_UALLO = 10**18

LABEL_PREFIX = "allora.network"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NETWORK = f"{LABEL_PREFIX}/network"
ANNOTATION_BUNDLE_SHA256 = f"{LABEL_PREFIX}/bundle-sha256"
ANNOTATION_BUNDLE_VERSION = f"{LABEL_PREFIX}/bundle-version"
MANAGED_BY = "allora-gitops"
ANNOTATION_BUNDLE_NAME = f"{LABEL_PREFIX}/bundle-name"
ANNOTATION_ARCHIVE_URL = f"{LABEL_PREFIX}/bundle-archive-url"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
PART_OF = "allora-models"
KUBERNETES_VERSION = "1.32"  # the API version `verify` validates core kinds against (kubernetes-validate --strict)
DEFAULT_IMAGE_REGISTRY = "localhost:5000/allora"
BASE_IMAGE_PLACEHOLDER_TAG = "set-by-overlay"  # the tag of the image in base/: every overlay replaces it
MAX_CPU = "16"  # per deployment, unless the repository's resources.max_cpu says otherwise
MAX_MEMORY = "64Gi"  # resources.max_memory
MAX_GPUS = 8  # resources.max_gpus
MANIFEST_MAX_CPU_CORES = 1024  # model.yaml runtime.cpu_cores: more than any node has
MANIFEST_MAX_MEMORY_MB = 16 << 20  # model.yaml runtime.memory_mb: 16 TiB
MANIFEST_MAX_GPUS = 16  # model.yaml runtime.gpus: more than one node holds is a mistake, not a plan
DEFAULT_CPU = "250m"  # when neither runtime.cpu_cores nor --cpu says
DEFAULT_MEMORY = "512Mi"  # when neither runtime.memory_mb nor --memory says
DEFAULT_SECRET_STORE_KIND = "ClusterSecretStore"
ARGOCD_NAMESPACE = "argocd"
CLUSTER_DNS_NAMESPACE = "kube-system"  # where CoreDNS / kube-dns runs
# NodeLocal DNSCache's documented link-local address (kubernetes.io: "Using NodeLocal DNSCache in Kubernetes Clusters").
NODE_LOCAL_DNS_ADDRESS = "169.254.20.10"
ARGOCD_PROJECT = "allora-models"
# Argo CD notifications → the platform (argocd/notifications-cm.yaml, POST /api/v1/argocd/events)
ARGOCD_NOTIFICATIONS_CM = "argocd-notifications-cm"
ARGOCD_NOTIFICATIONS_SECRET = "argocd-notifications-secret"
ARGOCD_WEBHOOK_SERVICE = "allora-platform"  # service.webhook.<this> in argocd-notifications-cm
ARGOCD_WEBHOOK_TOKEN_KEY = "allora-platform-webhook-token"  # the key of argocd-notifications-secret holding the token
ARGOCD_EVENTS_PATH = "/api/v1/argocd/events"
PLATFORM_SERVICE_URL = "http://allora-platform.allora-platform.svc"  # platform/service.yaml (port 80)
ARGOCD_TRIGGERS = ("on-allora-deployed", "on-allora-sync-failed", "on-allora-health-degraded")


def deployment_base_dir(name: str) -> str:
    return f"{DEPLOYMENTS_DIR}/{name}/base"


def deployment_overlay_dir(name: str, network: str) -> str:
    return f"{DEPLOYMENTS_DIR}/{name}/overlays/{network}"


def build_dir(name: str, version: str) -> str:
    return f"{BUILDS_DIR}/{name}/{version}"


def wallet_secret_name(name: str, network: str) -> str:
    """The Secret holding a deployment's wallet, unless --wallet-secret names another."""
    return f"{name}-{network}-wallet"


def image_tag(version: str, sha256: str) -> str:
    """``<version>-<first 12 hex of the bundle sha256>``: immutable per archive, readable, never ``latest``.

    Docker tags allow ``[A-Za-z0-9_.-]``; semver build metadata (``+build``) becomes ``_build``.
    """
    return f"{version.replace('+', '_')}-{sha256[:12]}"


def version_ref(version: str) -> str:
    """A version as a git ref component: semver build metadata's ``+`` (no valid branch character in the records'
    rule) becomes ``_``, which no semantic version holds, so two versions never share a branch. The rest of a
    semantic version is ref-safe except a ``.lock`` ending, which the manifest refuses (bundle/manifest.py)."""
    return version.replace("+", "_")


def review_branch(name: str, network: str, version: str) -> str:
    return f"deploy/{name}/{network}/{version_ref(version)}"


def archive_filename(name: str, version: str) -> str:
    return f"{name}-{version}.tar.gz"


def archive_object_key(name: str, version: str, sha256: str) -> str:
    return f"bundles/{name}/{version}/{sha256}.tar.gz"


# --- publishing: repository layout, branches, commits (publish, promote, rollback, retire) ---------
DEFAULT_BRANCH = "main"
CI_WORKFLOW_FILE = ".github/workflows/allora-gitops.yaml"
CI_IMAGES_WORKFLOW_FILE = ".github/workflows/images.yaml"  # build-image for changed builds/ directories
CI_SANDBOXES_WORKFLOW_FILE = ".github/workflows/sandboxes.yaml"  # scheduled `sandbox prune`
REPO_MARKER_KIND = "AlloraGitopsRepository"  # the `kind:` inside REPO_MARKER_FILE
REPO_LAYOUT_VERSION = 1
# Commits made by the tool: a fixed identity, so the same change always reads the same in `git log`.
COMMIT_AUTHOR_NAME = "allora-gitops"
COMMIT_AUTHOR_EMAIL = "allora-gitops@users.noreply.allora.network"
REPO_CACHE_DIR = "repos"  # under the state directory: one bare cache per remote
PUSH_ATTEMPTS = 12  # a rejected push is re-applied on the new tip at most this many times


def deployment_dir(name: str) -> str:
    return f"{DEPLOYMENTS_DIR}/{name}"


def promote_branch(name: str, network: str, version: str) -> str:
    return f"promote/{name}/{network}/{version_ref(version)}"


def rollback_branch(name: str, network: str, version: str) -> str:
    return f"rollback/{name}/{network}/{version_ref(version)}"


def retire_branch(name: str, network: str) -> str:
    return f"retire/{name}/{network}"


def publish_commit_message(name: str, version: str, network: str, sha256: str) -> str:
    return f"deploy({network}): {name} {version}\n\nbundle-sha256: {sha256}\n"


def promote_commit_message(name: str, version: str, from_network: str, to_network: str, sha256: str) -> str:
    return f"promote({to_network}): {name} {version} from {from_network}\n\nbundle-sha256: {sha256}\n"


def rollback_commit_message(name: str, version: str, network: str, sha256: str) -> str:
    return f"rollback({network}): {name} to {version}\n\nbundle-sha256: {sha256}\n"


def retire_commit_message(name: str, network: str) -> str:
    return f"retire({network}): {name}\n"


def init_commit_message() -> str:
    return "Initialise the GitOps repository (allora-gitops repo init)\n"


# --- image pinning and sandboxes (build-image --write-back, pin-image, sandbox) ---------------
SANDBOXES_DIR = "sandboxes"
SANDBOX_NETWORK = "testnet"  # sandboxes run on testnet only, with the platform's wallet
SANDBOX_MAX_SECONDS = 3600  # the guide's Dry-run Mode: at most one hour
ANNOTATION_SANDBOX_EXPIRES = f"{LABEL_PREFIX}/sandbox-expires-at"  # RFC 3339 UTC; `sandbox prune` removes it after
ANNOTATION_SANDBOX_OWNER = f"{LABEL_PREFIX}/sandbox-owner"
MAX_RUNTIME_ENV = _runtime.ENV_MAX_RUNTIME  # seconds after which the runtime exits 0 (sandboxes end cleanly)


def pin_branch(name: str, network: str, version: str) -> str:
    return f"pin/{name}/{network}/{version_ref(version)}"


def pin_commit_message(name: str, network: str, image: str, digest: str) -> str:
    return f"pin({network}): {name} image {image} to {digest}\n\nimage-digest: {digest}\n"


# The platform's own image (the project's Dockerfile: `allora-gitops serve`) and where the blueprint runs it.
PLATFORM_DIR = "platform"  # the blueprint's manifests of the platform API, an Argo CD Application of their own
PLATFORM_IMAGE_NAME = "allora-gitops"  # the images[].name platform/kustomization.yaml and its Deployment use
PLATFORM_UID = 10001  # the image's user, and the manifests' runAsUser


def platform_pin_branch(tag: str) -> str:
    return f"pin/platform/{version_ref(tag)}"


def platform_pin_commit_message(image: str, digest: str) -> str:
    return f"pin(platform): {image} to {digest}\n\nimage-digest: {digest}\n"


def sandbox_dir(name: str, sha256: str) -> str:
    return f"{SANDBOXES_DIR}/{name}-{sha256[:12]}"


def sandbox_branch(name: str, sha256: str) -> str:
    return f"sandbox/{name}-{sha256[:12]}"


def sandbox_commit_message(name: str, version: str, sha256: str, expires_at: str) -> str:
    return f"sandbox(testnet): {name} {version} until {expires_at}\n\nbundle-sha256: {sha256}\n"


def sandbox_prune_message(names: list[str]) -> str:
    return f"sandbox prune: remove {len(names)} expired sandbox(es)\n\n" + "".join(f"- {n}\n" for n in names)
