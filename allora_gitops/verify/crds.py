"""The CRD schemas ``verify`` validates custom resources against, shipped in the package.

Each served version of each CustomResourceDefinition in the team's ``shared/crds``
(Argo CD Application, ApplicationSet, AppProject; external-secrets
ExternalSecret; prometheus-operator PodMonitor, ServiceMonitor, PrometheusRule) is stored as its ``openAPIV3Schema`` alone, as gzip-compressed
JSON (``crds/<group>_<version>_<Kind>.json.gz``, about 5% of the YAML size).
Regenerate after updating the upstream CRDs with::

    python -m allora_gitops.verify.crds PATH/TO/crds-dir

Validation is *strict*: an object schema that lists ``properties`` and does
not say otherwise gets ``additionalProperties: false``, so a typo in a field
name is a finding instead of a field the API server silently prunes.
"""

from __future__ import annotations

import gzip
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

CRD_DIR = Path(__file__).resolve().parent / "crds"


def schema_file(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    return CRD_DIR / f"{group}_{version}_{kind}.json.gz"


def regenerate(source: Path, out_dir: Path = CRD_DIR) -> list[Path]:
    """Extract every served version's openAPIV3Schema from the CRD YAML files in ``source``."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.yaml")):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                target = schema_file(f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                target = out_dir / target.name
                data = json.dumps(version["schema"]["openAPIV3Schema"], sort_keys=True, separators=(",", ":"))
                # mtime=0: the same CRDs give the same bytes, so regenerating shows no diff.
                target.write_bytes(gzip.compress(data.encode("utf-8"), compresslevel=9, mtime=0))
                written.append(target)
    return written


def strict(schema: Any) -> Any:
    """A copy of ``schema`` where objects with known properties reject unknown ones."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str) -> Optional[Any]:
    """A jsonschema validator for a custom resource, or None when the project ships no schema for it."""
    from jsonschema import Draft7Validator

    path = schema_file(api_version, kind)
    if not path.is_file():
        return None
    schema = strict(json.loads(gzip.decompress(path.read_bytes())))
    # The CRD schema says only `metadata: {type: object}`; the API server checks metadata itself.
    return Draft7Validator(schema)


def known_kinds() -> list[tuple[str, str]]:
    kinds = []
    for path in sorted(CRD_DIR.glob("*.json.gz")):
        group, version, kind = path.name[: -len(".json.gz")].split("_")
        kinds.append((f"{group}/{version}", kind))
    return kinds


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    if len(sys.argv) != 2:
        sys.exit("usage: python -m allora_gitops.verify.crds CRD_YAML_DIR")
    for p in regenerate(Path(sys.argv[1])):
        print(p)
