"""The GitOps repository's layout, read back: which deployments exist, and what each one runs.

Paths come from :mod:`allora_gitops.constants`; this module only *reads*. The
facts of a deployment (version, sha256, image, topic, resources) are found by
walking YAML documents for the keys our templates write — annotations,
container env, ``images:`` of a kustomization, resources — so the same walker
serves raw overlay files (``list``, fast) and objects rendered by
``kubectl kustomize`` (``diff``, exact).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from allora_gitops import constants as C

OVERLAY_RE = re.compile(rf"^{C.DEPLOYMENTS_DIR}/([^/]+)/overlays/([^/]+)/(.+)$")
BUILD_RE = re.compile(rf"^{C.BUILDS_DIR}/([^/]+)/([^/]+)/(.+)$")
BUILD_METADATA_FILE = C.BUILD_METADATA_FILE
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Container env / ConfigMap keys the templates use, mapped to a fact name.
ENV_FACTS = {
    "ALLORA_TOPIC_ID": "topic_id",
    "ALLORA_FEE_TIER": "fee_tier",
    "ALLORA_POLLING_INTERVAL": "polling_interval",
    "ALLORA_NETWORK": "network_setting",
}
_LITERAL = re.compile(r"^(ALLORA_[A-Z_]+)=(.*)$")


@dataclass
class DeploymentFacts:
    """What one deployment (a name on a network) runs, as far as the files tell."""

    name: str = ""
    network: str = ""
    version: str | None = None
    sha256: str | None = None
    image: str | None = None
    topic_id: str | None = None
    fee_tier: str | None = None
    polling_interval: str | None = None
    network_setting: str | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("files")
        return d


SUMMARY_FIELDS = (
    ("version", "version"),
    ("image", "image"),
    ("topic_id", "topic"),
    ("fee_tier", "fee tier"),
    ("polling_interval", "polling interval"),
    ("cpu_request", "cpu request"),
    ("cpu_limit", "cpu limit"),
    ("memory_request", "memory request"),
    ("memory_limit", "memory limit"),
    ("sha256", "bundle sha256"),
)


def summarise_change(old: DeploymentFacts | None, new: DeploymentFacts | None) -> list[str]:
    """Lines like ``image: a:1 → a:2`` for every fact that differs (the reviewer's first look)."""
    if old is None and new is None:
        return []
    if old is None:
        return ["new deployment"] + [f"{label}: {getattr(new, attr)}" for attr, label in SUMMARY_FIELDS if getattr(new, attr)]
    if new is None:
        return ["removed deployment" + (f" (was {old.version})" if old.version else "")]
    lines = []
    for attr, label in SUMMARY_FIELDS:
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            lines.append(f"{label}: {a or '-'} → {b or '-'}")
    return lines


def load_yaml_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML text; unparseable or over-bound text yields nothing (verify reports it).

    Facts are read from many small files (``list`` over thousands of deployments): libyaml's C loader,
    bounded against alias bombs, via :func:`allora_gitops.boundedyaml.load_yaml_all`.
    """
    from allora_gitops.boundedyaml import YamlError, load_yaml_all

    try:
        return [d for d in load_yaml_all(text, "<repository file>") if d is not None]
    except YamlError:
        return []


def collect_facts(docs: Iterable[Any], facts: DeploymentFacts | None = None) -> DeploymentFacts:
    facts = facts or DeploymentFacts()
    for doc in docs:
        _walk(doc, facts)
    return facts


def _set(facts: DeploymentFacts, attr: str, value: Any) -> None:
    if value is not None and value != "":
        setattr(facts, attr, str(value))


def _walk(node: Any, facts: DeploymentFacts) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == C.ANNOTATION_BUNDLE_VERSION:
                _set(facts, "version", value)
            elif key == C.LABEL_VERSION and facts.version is None:
                _set(facts, "version", value)
            elif key == C.ANNOTATION_BUNDLE_SHA256:
                _set(facts, "sha256", value)
            elif isinstance(key, str) and key in ENV_FACTS and not isinstance(value, (dict, list)):
                _set(facts, ENV_FACTS[key], value)  # ConfigMap data
        name = node.get("name")
        if isinstance(name, str) and name in ENV_FACTS and "value" in node:
            _set(facts, ENV_FACTS[name], node["value"])
        if isinstance(node.get("image"), str) and "name" in node:  # a container
            _set(facts, "image", node["image"])
        images = node.get("images")
        if isinstance(images, list):  # a kustomization's image transformer
            for entry in images:
                if isinstance(entry, dict):
                    ref = entry.get("newName") or entry.get("name") or ""
                    if entry.get("newTag"):
                        ref += f":{entry['newTag']}"
                    if entry.get("digest"):
                        ref += f"@{entry['digest']}"
                    _set(facts, "image", ref)
        resources = node.get("resources")
        if isinstance(resources, dict) and ({"requests", "limits"} & resources.keys()):
            for kind, suffix in (("requests", "request"), ("limits", "limit")):
                part = resources.get(kind) or {}
                if isinstance(part, dict):
                    _set(facts, f"cpu_{suffix}", part.get("cpu"))
                    _set(facts, f"memory_{suffix}", part.get("memory"))
        for value in node.values():
            _walk(value, facts)
    elif isinstance(node, list):
        for item in node:
            _walk(item, facts)
    elif isinstance(node, str):
        m = _LITERAL.match(node)
        if m and m.group(1) in ENV_FACTS:
            _set(facts, ENV_FACTS[m.group(1)], m.group(2))


@dataclass(frozen=True)
class OverlayRef:
    name: str
    network: str

    @property
    def directory(self) -> str:
        return C.deployment_overlay_dir(self.name, self.network)


def overlays_in(paths: Iterable[str]) -> list[OverlayRef]:
    """The overlays (name, network) present in a list of repository paths, sorted."""
    found = set()
    for p in paths:
        m = OVERLAY_RE.match(p)
        if m:
            found.add(OverlayRef(m.group(1), m.group(2)))
    return sorted(found, key=lambda o: (o.name, o.network))


def overlays_touched(paths: Iterable[str], all_paths: Iterable[str]) -> list[OverlayRef]:
    """Overlays whose rendering may change when ``paths`` change: their own files, or their deployment's base."""
    every = overlays_in(all_paths)
    touched = set()
    for p in paths:
        parts = p.split("/")
        if len(parts) >= 3 and parts[0] == C.DEPLOYMENTS_DIR:
            name = parts[1]
            if parts[2] == "overlays" and len(parts) >= 4:
                touched.add(OverlayRef(name, parts[3]))
            else:  # base or anything shared by the deployment's overlays
                touched.update(o for o in every if o.name == name)
    return sorted(touched, key=lambda o: (o.name, o.network))


def read_deployments(snapshot: Any, name: str | None = None, *, full: bool | None = None) -> list[DeploymentFacts]:
    """Facts of every overlay in a commit (``snapshot``: a :class:`~allora_gitops.gitops.repo.Snapshot`).

    ``full`` (default: when one ``name`` is asked for) reads every YAML file of each overlay and the
    build metadata; otherwise only each overlay's kustomization (version, sha256 and image are
    there), which keeps ``list`` over thousands of deployments quick.
    """
    full = name is not None if full is None else full
    prefix = C.deployment_dir(name) if name else C.DEPLOYMENTS_DIR
    entries = snapshot.entries(prefix)
    by_overlay: dict[OverlayRef, list[str]] = {}
    for p in entries:
        m = OVERLAY_RE.match(p)
        if not m:
            continue
        wanted = m.group(3) in KUSTOMIZATION_FILES if not full else (m.group(3).endswith((".yaml", ".yml")) or m.group(3) == "Kustomization")
        if wanted:
            by_overlay.setdefault(OverlayRef(m.group(1), m.group(2)), []).append(p)
    texts = snapshot.read_blobs({p: entries[p] for ps in by_overlay.values() for p in sorted(ps)})
    result = []
    for ref in sorted(by_overlay, key=lambda o: (o.name, o.network)):
        facts = DeploymentFacts(name=ref.name, network=ref.network, files=by_overlay[ref])
        for p in by_overlay[ref]:
            collect_facts(load_yaml_documents(texts.get(p, "")), facts)
        result.append(facts)
    # build metadata fills what the overlay does not say (sha256, image)
    builds = [C.build_dir(f.name, f.version) + "/" + BUILD_METADATA_FILE for f in result if f.version and (full or not (f.sha256 and f.image))]
    build_texts = snapshot.read_many(builds)
    for f in result:
        if not f.version:
            continue
        docs = load_yaml_documents(build_texts.get(C.build_dir(f.name, f.version) + "/" + BUILD_METADATA_FILE, ""))
        meta = docs[0] if docs and isinstance(docs[0], dict) else {}
        archive = meta.get("archive") if isinstance(meta.get("archive"), dict) else {}
        if not f.sha256 and archive.get("sha256"):
            f.sha256 = str(archive["sha256"])
        if not f.image and meta.get("image"):
            f.image = str(meta["image"])
    return result
