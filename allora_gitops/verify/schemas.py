"""Schema validation of every object: core kinds strictly against Kubernetes' OpenAPI, custom kinds against the shipped CRDs.

Core kinds use kubernetes-validate's strict schemas (unknown fields are
errors) for ``KUBERNETES_VERSION``. Validators are built once per kind and
reused: kubernetes-validate's own ``validate()`` reloads a 1.3 MB definitions
file on every call, which would dominate a repository-wide run.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Optional

from allora_gitops import constants as C
from allora_gitops.verify.crds import crd_validator

MAX_ERRORS_PER_OBJECT = 5


@lru_cache(maxsize=1)
def _core_schema_dir(version: str) -> Any:
    from importlib import resources

    from packaging.version import Version

    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    available = sorted(
        (p.name[1:].split("-")[0] for p in root.iterdir() if p.name.startswith("v") and p.name.endswith("-local-strict")),
        key=Version,
    )
    usable = [v for v in available if Version(v) <= Version(version + ".999")]
    if not usable:
        raise LookupError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return root / f"v{usable[-1]}-local-strict"


@lru_cache(maxsize=1)
def _core_registry(version: str) -> Any:
    from referencing import Registry, Resource

    defs = json.loads((_core_schema_dir(version) / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@lru_cache(maxsize=None)
def core_validator(api_version: str, kind: str, version: str = C.KUBERNETES_VERSION) -> Optional[Any]:
    from jsonschema import Draft202012Validator
    from referencing import Resource

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _core_schema_dir(version) / f"{kind.lower()}-{api}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _core_registry(version)
    return Draft202012Validator(schema, registry=registry)


def validator_for(api_version: str, kind: str) -> Optional[Any]:
    return crd_validator(api_version, kind) or core_validator(api_version, kind)


def schema_errors(obj: dict) -> list[str]:
    """Human messages for every schema violation of ``obj`` (empty when valid)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["object has no apiVersion/kind"]
    validator = validator_for(api_version, kind)
    if validator is None:
        return [f"no schema for {kind} ({api_version}) in Kubernetes {C.KUBERNETES_VERSION} or the shipped CRDs"]
    messages = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(root)"
        messages.append(f"{where}: {_short(err.message)}")
        if len(messages) >= MAX_ERRORS_PER_OBJECT:
            break
    return messages


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
