"""model.yaml v0.1 as pydantic models, loaded with source positions.

Loading is parse (ruamel, round-trip, so every node knows its line) → validate
(pydantic, ``extra="forbid"``) → every error as ``file:line:col: message``,
all of them at once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from allora_gitops import constants as C
from allora_gitops.errors import ManifestError, Problem
from allora_gitops.redact import shown_value

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# semver.org 2.0.0, the official pattern
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# POSIX portable environment variable names (IEEE Std 1003.1, 8.1): letters, digits, '_', not starting with a digit.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Debian Policy 5.6.1: lowercase letters, digits, '+', '-', '.'; at least two characters; starts alphanumeric.
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ARTIFACT_PATH = re.compile(r"^[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*$")  # goes into Dockerfile COPY lines as is
# Query parameters that carry a credential (presigned URLs, API keys): never in model.yaml, which ships and is reviewed.
_CREDENTIAL_PARAM = re.compile(r"(signature|credential|token|secret|passw|key|sig|auth)", re.IGNORECASE)


def _relative_path(value: str, what: str) -> str:
    p = Path(value)
    if not value or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{what} must be a relative path inside the bundle, got {value!r}")
    return value



def refuse_rest_network(value: object) -> object:
    """A pydantic before-validator for a network field: a REST URL is refused with the reason
    (``allora_runtime.settings.REST_UNSUPPORTED``), anything else goes on to the field's own check."""
    from allora_runtime.settings import rest_network_problem

    problem = rest_network_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_env_name(name: str) -> str:
    """An environment variable name the bundle may set: portable, and not one the platform sets itself."""
    if not ENV_NAME.match(name):
        if not shown_value(name).startswith(("'", '"')):  # a secret's value pasted where its name belongs: never echoed
            raise ValueError("this looks like a secret's value (not shown), not an environment variable name; "
                             "name the variable here, the value stays in a Kubernetes Secret")
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits and '_', not starting with a digit)")
    if name.startswith(C.RESERVED_ENV_PREFIX):
        raise ValueError(f"names starting with {C.RESERVED_ENV_PREFIX} are set by the platform; choose another name")
    if name in C.RESERVED_ENV_NAMES:
        raise ValueError(f"{name} is set by the platform (the runtime and the image need it); choose another name")
    return name


def _env_value(value: Any) -> Any:
    """A variable's value as the container gets it: text; a whole number may be written bare (``WINDOW: 24``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("write the value as a quoted string (environment variables are text)")
    if "\0" in value:
        raise ValueError("a value cannot hold a NUL character")
    return value


def check_debian_package(name: str) -> str:
    if not DEBIAN_PACKAGE.match(name):
        raise ValueError(
            f"{shown_value(name)} is not a Debian package name (Debian Policy 5.6.1: lowercase letters, digits, '+', '-' and '.', "
            "at least two characters, starting with a letter or digit; no version or release)"
        )
    return name


def check_remote_url(url: str) -> str:
    """``https://`` or ``s3://`` with no credentials in it (the value is never echoed when it might hold one)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a URL") from None
    if "@" in parts.netloc:
        raise ValueError("carries credentials; give them to the build as secrets or in the environment, never in model.yaml")
    if any(_CREDENTIAL_PARAM.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise ValueError("carries a credential in its query string (a signed URL or a key); "
                         "give credentials to the build as secrets or in the environment, never in model.yaml")
    if parts.scheme not in C.REMOTE_ARTIFACT_SCHEMES or not parts.hostname or any(ch.isspace() for ch in url):
        raise ValueError(f"{shown_value(url)} is not an https:// or s3:// URL")
    return url


# WithJsonSchema: the patterns validate enforces, so `allora-bundle schema` lets an editor flag them as typed
EnvName = Annotated[str, AfterValidator(check_env_name), WithJsonSchema({"type": "string", "pattern": ENV_NAME.pattern})]
EnvValue = Annotated[str, BeforeValidator(_env_value), WithJsonSchema({"type": ["string", "integer"]})]
DebianPackage = Annotated[str, AfterValidator(check_debian_package), WithJsonSchema({"type": "string", "pattern": DEBIAN_PACKAGE.pattern})]


class PythonSpec(_Section):
    version: str = Field(description="Python minor version of the runtime image: 3.10, 3.11, 3.12 or 3.13.")

    @field_validator("version")
    @classmethod
    def _supported(cls, v: str) -> str:
        if v not in C.SUPPORTED_PYTHON:
            raise ValueError(f"Python {v} is not supported; use one of {', '.join(C.SUPPORTED_PYTHON)}")
        return v


class Entrypoint(_Section):
    kind: Literal["python_function"] = Field(description="Only python_function is supported in v0.1.")
    module: str = Field(description="Importable module path from the bundle root, e.g. src.my_model.runner.")
    function: str = Field(default="run", description="Name of the prediction function in the module.")
    workdir: str = Field(default=".", description="Working directory, relative to the bundle root.")
    artifacts_dir: str = Field(default="artifacts", description="Directory of model files, relative to the bundle root.")

    @field_validator("module")
    @classmethod
    def _module(cls, v: str) -> str:
        if not DOTTED_NAME.match(v):
            dotted = re.sub(r"/(__init__)?\.py$|\.py$", "", v.strip("./").replace("\\", "/")).replace("/", ".")
            hint = f"; did you mean {dotted}?" if DOTTED_NAME.match(dotted) else ""
            raise ValueError(f"{v!r} is not a dotted Python module path like src.my_model.runner{hint}")
        return v

    @field_validator("function")
    @classmethod
    def _function(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} is not a Python identifier")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str) -> str:
        return _relative_path(v, "workdir")

    @field_validator("artifacts_dir")
    @classmethod
    def _artifacts_dir(cls, v: str) -> str:
        return _relative_path(v, "artifacts_dir")


class Environment(_Section):
    pip_requirements: str = Field(default="requirements.txt", description="pip requirements file, relative to the bundle root.")
    constraints: Optional[str] = Field(default=None, description="Optional pip constraints file, relative to the bundle root.")
    extra_index_urls: list[str] = Field(default_factory=list, description="Extra package index URLs (https).")
    variables: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="Plain settings for the model's code, set as environment variables in its container ({NAME: value}). "
        "Names the platform sets (ALLORA_*, BUNDLE_ROOT, HOME, PATH …) are refused, and so is a value that looks like a "
        "secret: declare those under secrets.",
        json_schema_extra={"propertyNames": {"pattern": ENV_NAME.pattern}},
    )
    secrets: list[EnvName] = Field(
        default_factory=list,
        description="Names of environment variables the model reads from Kubernetes Secrets. The operator maps each at "
        "deploy time (--secret NAME=SECRET/KEY, or secrets in the API request); values never enter the bundle.",
    )
    system_packages: list[DebianPackage] = Field(
        default_factory=list,
        description="Debian packages installed in the runtime image (apt-get --no-install-recommends), e.g. libgomp1. "
        "The GitOps repository's system_packages.allowed list says which ones publish accepts.",
    )

    @field_validator("pip_requirements", "constraints")
    @classmethod
    def _paths(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else _relative_path(v, "file")

    @field_validator("extra_index_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for i, url in enumerate(v):
            netloc = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0]
            if "@" in netloc:  # never echo the URL: it holds a credential
                raise ValueError(f"entry {i} carries credentials; pass index credentials as build secrets, not in model.yaml")
            if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
                raise ValueError(f"{url!r} is not an http(s) index URL")
        return v


class AlloraSettings(_Section):
    topic_id: Optional[int] = Field(default=None, gt=0, le=C.MAX_TOPIC_ID, description="Allora topic to submit predictions to.")
    polling_interval: int = Field(default=120, gt=0, description="Seconds between polls for a new submission window.")
    fee_tier: Literal["ECO", "STANDARD", "PRIORITY"] = Field(default="STANDARD")
    network: Literal["testnet", "mainnet"] = Field(default="testnet")

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, v: object) -> object:
        return refuse_rest_network(v)


class RemoteArtifact(_Section):
    """A model file too large for the archive: fetched at image build (and by ``run``), checked against ``sha256``."""

    path: str = Field(description="Where the file lands, relative to the bundle root and under the artifacts directory, e.g. artifacts/weights.bin.")
    url: str = Field(description="https:// or s3:// URL; credentials come from the environment or build secrets, never from here.")
    sha256: str = Field(description="Lowercase hex sha256 of the file; a download that does not match is refused.",
                        json_schema_extra={"pattern": "^[0-9a-f]{64}$"})

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        v = Path(_relative_path(v, "path")).as_posix()
        if not _ARTIFACT_PATH.match(v):
            raise ValueError(f"{shown_value(v)} may hold letters, digits, '.', '_', '-', '+' and '/' only")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_remote_url(v)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError("must be 64 lowercase hex digits (the sha256 of the file)")
        return v


class Artifacts(_Section):
    root: str = Field(default="artifacts", description="Root directory of model files, relative to the bundle root.")
    remote: list[RemoteArtifact] = Field(
        default_factory=list,
        description="Files not in the archive: fetched at image build and by `allora-bundle run`, verified against sha256 and "
        "cached by digest (weights over the archive's 500 MB limit).",
    )

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        return _relative_path(v, "artifacts.root")


class Runtime(_Section):
    # strict: numbers only, as the JSON schema says: lax mode would take `gpus: true` as one GPU and `"2"` as 2
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_seconds: float = Field(default=C.DEFAULT_MAX_SECONDS, gt=0, le=3600, description="Timeout of one prediction call.")
    # Bounds no machine exceeds (a typo's 10^30 cores stops at validate); the repository's resources.max_*
    # (default 16 cores, 64Gi) bound what a deployment may ask for at render, publish and in the API.
    memory_mb: Optional[int] = Field(default=None, gt=0, le=C.MANIFEST_MAX_MEMORY_MB, description="Memory the model needs (request and limit).")
    cpu_cores: Optional[float] = Field(default=None, gt=0, le=C.MANIFEST_MAX_CPU_CORES, description="CPU cores the model needs (request).")
    gpus: Optional[int] = Field(
        default=None, gt=0, le=C.MANIFEST_MAX_GPUS,
        description="NVIDIA GPUs the model needs (an nvidia.com/gpu limit); the GitOps repository's gpu settings give the "
        "CUDA-capable base image and the node selector / tolerations of GPU nodes.",
    )


class BundleManifest(_Section):
    """model.yaml v0.1."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Allora model bundle (model.yaml v0.1)",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_version: Literal["0.1"]
    name: str = Field(description="Lowercase DNS-1123 label, at most 53 characters.")
    version: str = Field(description="Semantic version, e.g. 1.0.0.")
    python: PythonSpec
    entrypoint: Entrypoint
    environment: Environment = Field(default_factory=Environment)
    allora: AlloraSettings = Field(default_factory=AlloraSettings)
    artifacts: Optional[Artifacts] = None
    runtime: Runtime = Field(default_factory=Runtime)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_bundle_name(v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_bundle_version(v)

    @property
    def artifacts_path(self) -> str:
        return self.artifacts.root if self.artifacts else self.entrypoint.artifacts_dir

    @property
    def remote_artifacts(self) -> list[RemoteArtifact]:
        return list(self.artifacts.remote) if self.artifacts else []

    @property
    def module_file_candidates(self) -> list[str]:
        """Where the entrypoint module may live, relative to the bundle root (module, then package)."""
        base = self.entrypoint.module.replace(".", "/")
        return [f"{base}.py", f"{base}/__init__.py"]

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_yaml(cls, path: Path, display: Optional[str] = None) -> "BundleManifest":
        return load_manifest(path, display).manifest

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()


def check_bundle_version(v: str) -> str:
    """A semantic version of at most 64 characters (the records' limit) that can name a git branch (a review
    branch is ``deploy/<name>/<network>/<version>``: git refuses a component ending in ``.lock``)."""
    if len(v) > C.MAX_VERSION_LENGTH:
        raise ValueError(f"the version is {len(v)} characters long; at most {C.MAX_VERSION_LENGTH} are allowed")
    if not SEMVER.match(v):
        raise ValueError(f"{v!r} is not a semantic version like 1.0.0")
    if v.endswith(".lock"):
        raise ValueError(f"{v!r} cannot name a git branch (a ref component may not end in .lock); choose another pre-release label")
    return v


def check_bundle_name(v: str) -> str:
    if len(v) > C.MAX_NAME_LENGTH:
        raise ValueError(f"name {v!r} is {len(v)} characters long; at most {C.MAX_NAME_LENGTH} are allowed")
    if not DNS1123_LABEL.match(v):
        raise ValueError(
            f"name {v!r} must be a lowercase DNS-1123 label: a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return v


@dataclass
class LoadedManifest:
    """A manifest with where each of its values stands in the file."""

    manifest: BundleManifest
    file: str
    data: Any = field(repr=False, default=None)

    def position(self, *loc: Union[str, int]) -> tuple[Optional[int], Optional[int]]:
        return position_of(self.data, loc)

    def problem(self, message: str, *loc: Union[str, int], severity: str = "error", code: str = "") -> Problem:
        line, col = self.position(*loc)
        return Problem(message, self.file, line, col, severity, code)


def position_of(data: Any, loc: tuple) -> tuple[Optional[int], Optional[int]]:
    """1-based (line, col) of the node at ``loc``; the nearest existing parent if it is missing."""
    node = data
    best: tuple[Optional[int], Optional[int]] = (1, 1)
    if hasattr(node, "lc"):
        best = (node.lc.line + 1, node.lc.col + 1)
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and key in node:
                if lc is not None:
                    line, col = lc.value(key) if not isinstance(node[key], (dict, list)) else lc.key(key)
                    best = (line + 1, col + 1)
                node = node[key]
                continue
            if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                if lc is not None:
                    line, col = lc.item(key)
                    best = (line + 1, col + 1)
                node = node[key]
                continue
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        break
    return best


def _key_position(data: Any, loc: tuple) -> tuple[Optional[int], Optional[int]]:
    """Position of the *key* at the end of ``loc`` (for unknown keys), else of its parent."""
    parent = data
    for key in loc[:-1]:
        if isinstance(parent, (dict, list)):
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                return position_of(data, loc[:-1])
    lc = getattr(parent, "lc", None)
    if isinstance(parent, dict) and loc and loc[-1] in parent and lc is not None:
        line, col = lc.key(loc[-1])
        return line + 1, col + 1
    return position_of(data, loc)


_TYPE_HINTS = {
    ("python", "version"): 'write the version quoted, e.g. version: "3.11" (unquoted 3.10 reads as the number 3.1)',
    ("version",): 'write the version quoted, e.g. version: "1.0.0"',
    ("schema_version",): 'write schema_version: "0.1" (quoted)',
}


def _shown_key(part: Any) -> str:
    """One step of a key path as a message may show it: a mapping key shaped like a key or a mnemonic (a value
    pasted where a name belongs) is withheld, as :func:`shown_value` withholds values."""
    text = str(part)
    if isinstance(part, str) and not shown_value(part).startswith(("'", '"')):
        return "<a name that looks like a secret, not shown>"
    return text


def _format_error(err: dict, data: Any, file: str) -> Problem:
    loc = tuple(p for p in err["loc"] if p != "[key]")  # pydantic's marker for a mapping key's own error
    dotted = ".".join(_shown_key(p) for p in loc) or "(root)"
    kind = err["type"]
    if kind == "extra_forbidden":
        line, col = _key_position(data, loc)
        close = difflib.get_close_matches(str(loc[-1]), _keys_at(loc[:-1]), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else "typo?"
        return Problem(f"unknown key '{dotted}' ({hint} unknown keys are not allowed)", file, line, col, code="schema")
    line, col = position_of(data, loc)
    if kind == "missing":
        return Problem(f"'{dotted}' is required", file, line, col, code="schema")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    hint = _TYPE_HINTS.get(loc)
    if hint and kind in ("string_type", "literal_error"):
        msg = f"{msg}; {hint}"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or kind.startswith("value_error") else f" (got {shown_value(value)})"
    return Problem(f"{dotted}: {msg}{shown}", file, line, col, code="schema")


def _keys_at(loc: tuple) -> list[str]:
    """The valid keys of the model.yaml section at ``loc`` (for "did you mean"); empty when unknown."""
    import typing

    model: Any = BundleManifest
    for part in loc:
        if isinstance(part, int):
            continue
        field_info = getattr(model, "model_fields", {}).get(part)
        if field_info is None:
            return []
        model = field_info.annotation
        for _ in range(3):  # Optional[X], list[X], Union[...]: the first model inside
            args = [a for a in typing.get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(model, type) and issubclass(model, BaseModel):
                break
            model = args[0] if args else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return list(model.model_fields)


def _to_plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain Python values (pydantic checks types strictly on these)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def parse_yaml_with_positions(text: str, file: str) -> Any:
    """model.yaml text as ruamel round-trip data (``.lc`` positions), bounded by :mod:`allora_gitops.boundedyaml`.

    Raises ManifestError with one ``file:line:col`` problem for a syntax error or a file over the bounds.
    """
    from allora_gitops.boundedyaml import YamlError, load_yaml

    try:
        return load_yaml(text, file, positions=True)
    except YamlError as exc:
        raise ManifestError(problems=exc.problems) from None


def load_manifest(path: Path, display: Optional[str] = None) -> LoadedManifest:
    """Load and check model.yaml. Raises ManifestError listing every problem found."""
    file = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(problems=[Problem(f"{C.MANIFEST_FILE} not found", file, code="missing")]) from None
    except OSError as exc:
        raise ManifestError(problems=[Problem(f"cannot read: {exc.strerror}", file, code="io")]) from None
    return load_manifest_text(raw, file)


def load_manifest_text(raw: bytes | str, file: str) -> LoadedManifest:
    if isinstance(raw, bytes):
        from allora_gitops.bundle.text import BundleTextError, decode_text

        try:
            text = decode_text(raw, file, code="yaml")
        except BundleTextError as exc:
            raise ManifestError(problems=exc.problems) from None
    else:
        text = raw
    data = parse_yaml_with_positions(text, file)
    if data is None:
        raise ManifestError(problems=[Problem("file is empty; run 'allora-bundle init' for a template", file, 1, 1, code="schema")])
    if not isinstance(data, dict):
        raise ManifestError(problems=[Problem("top level must be a mapping of keys to values", file, 1, 1, code="schema")])
    try:
        manifest = BundleManifest.model_validate(_to_plain(data))
    except ValidationError as exc:
        problems = [_format_error(e, data, file) for e in exc.errors(include_url=False)]
        problems.sort(key=lambda p: (p.line or 0, p.col or 0))
        raise ManifestError(problems=problems) from None
    loaded = LoadedManifest(manifest=manifest, file=file, data=data)
    problems = list(_cross_problems(loaded))
    if problems:
        raise ManifestError(problems=sorted(problems, key=lambda p: (p.line or 0, p.col or 0)))
    return loaded


def _duplicates(items: list[str]) -> list[int]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        if item in seen:
            out.append(i)
        seen.add(item)
    return out


def _cross_problems(loaded: LoadedManifest):
    """What one key cannot say about itself: duplicates, a secret-looking value, a remote file outside the artifacts."""
    from allora_gitops.bundle.secrets import scan_bytes

    m = loaded.manifest
    env = m.environment
    written = (loaded.data.get("environment") or {}).get("variables") or {}
    for name, value in env.variables.items():
        if isinstance(written.get(name), int) and type(written.get(name)) is not int:  # ruamel's ScalarInt: not as typed
            yield loaded.problem(
                f"environment.variables.{name}: this number is not written as a plain whole number (a leading zero, "
                "0x/0o/0b or '_'), so YAML changes it (01234 → 1234); quote it to keep it as written",
                "environment", "variables", name, code="schema",
            )
        # The scan of the line as written (the name gives a digest its context: MODEL_SHA256 is not a key).
        if scan_bytes(loaded.file, f"{name}: {value}".encode()):  # never the value in the message
            yield loaded.problem(
                f"environment.variables.{name}: the value looks like a secret (a key or a mnemonic); "
                f"declare {name} under environment.secrets and map it at deploy time (--secret {name}=SECRET/KEY)",
                "environment", "variables", name, code="secret",
            )
        if name in env.secrets:
            yield loaded.problem(
                f"environment.variables.{name}: {name} is also declared under environment.secrets; keep one",
                "environment", "variables", name, code="schema",
            )
    for key, items in (("secrets", env.secrets), ("system_packages", env.system_packages)):
        for i in _duplicates(list(items)):
            yield loaded.problem(f"environment.{key}[{i}]: {items[i]} is listed twice", "environment", key, i, code="schema")
    root = m.artifacts_path.strip("/").rstrip("/")
    paths = [Path(a.path).as_posix() for a in m.remote_artifacts]
    for i, path in enumerate(paths):
        if root in (".", "") or not path.startswith(root + "/"):
            yield loaded.problem(
                f"artifacts.remote[{i}].path: {path!r} is not under the artifacts directory {root}/", "artifacts", "remote", i, "path", code="schema"
            )
    for i in _duplicates(paths):
        yield loaded.problem(f"artifacts.remote[{i}].path: {paths[i]} is listed twice", "artifacts", "remote", i, "path", code="schema")


def manifest_json_schema() -> dict[str, Any]:
    return BundleManifest.model_json_schema()
