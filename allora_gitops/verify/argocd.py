"""What Argo CD would refuse to sync, found before merging.

Argo CD admits an Application's resources only when its AppProject allows them:
the destination namespace must match one of ``spec.destinations`` and each
kind must match ``namespaceResourceWhitelist`` (namespaced) or
``clusterResourceWhitelist`` (cluster-scoped); both match with shell-style
globs (Argo CD docs, "Projects": destinations and resource allow lists). The
ApplicationSet makes one Application per overlay directory, named from its
``template.metadata.name``: two overlays that yield the same name fight over
one Application.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from allora_gitops import constants as C
from allora_gitops.errors import Problem

# Kinds Kubernetes keeps outside namespaces (the ones a model repository could plausibly carry).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
        "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
        "APIService", "IngressClass", "RuntimeClass", "ClusterIssuer", "ClusterSecretStore", "Node",
    }
)  # fmt: skip


@dataclass
class ProjectRules:
    """The parts of an AppProject that decide admission, and the file it came from."""

    name: str
    file: str
    destinations: list[tuple[str, str]] = field(default_factory=list)  # (server, namespace) globs
    namespace_kinds: list[tuple[str, str]] | None = None  # (group, kind) globs; None = any kind allowed
    cluster_kinds: list[tuple[str, str]] = field(default_factory=list)  # (group, kind) globs; empty = none allowed


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _kinds(entries: Any) -> list[tuple[str, str]]:
    return [(str(e.get("group", "")), str(e.get("kind", ""))) for e in entries or [] if isinstance(e, dict)]


def load_project(root: Path) -> ProjectRules | None:
    """The AppProject of ``argocd/`` (the first one found), or None when the repository has none."""
    import yaml

    for path in sorted((root / C.ARGOCD_DIR).glob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue  # reported by the argocd/ file checks
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "AppProject":
                spec = doc.get("spec") or {}
                return ProjectRules(
                    name=str((doc.get("metadata") or {}).get("name", "?")),
                    file=path.relative_to(root).as_posix(),
                    destinations=[(str(d.get("server", "*")), str(d.get("namespace", ""))) for d in spec.get("destinations") or [] if isinstance(d, dict)],
                    namespace_kinds=_kinds(spec["namespaceResourceWhitelist"]) if "namespaceResourceWhitelist" in spec else None,
                    cluster_kinds=_kinds(spec.get("clusterResourceWhitelist")),
                )
    return None


def _allowed(rules: list[tuple[str, str]], group: str, kind: str) -> bool:
    return any(fnmatchcase(group, g) and fnmatchcase(kind, k) for g, k in rules)


def check_admission(objects: list[dict], where: str, project: ProjectRules) -> list[Problem]:
    """One finding per namespace outside the destinations and per kind the project does not allow."""
    findings = []
    namespaces: set[str] = set()
    refused: set[tuple[str, str, bool]] = set()
    for obj in objects:
        kind, group = str(obj.get("kind", "")), _group(str(obj.get("apiVersion", "")))
        cluster = kind in CLUSTER_SCOPED_KINDS
        if cluster:
            ok = _allowed(project.cluster_kinds, group, kind)
        else:
            namespaces.add(str((obj.get("metadata") or {}).get("namespace") or ""))
            ok = project.namespace_kinds is None or _allowed(project.namespace_kinds, group, kind)
        if not ok:
            refused.add((group, kind, cluster))
    allowed_ns = [ns for _server, ns in project.destinations]
    for ns in sorted(namespaces):
        if not any(fnmatchcase(ns, pattern) for pattern in allowed_ns):
            findings.append(
                Problem(
                    f"namespace {ns or '(none)'!s} is not a destination of AppProject {project.name} "
                    f"({project.file} allows: {', '.join(allowed_ns) or 'nothing'}); Argo CD refuses to sync it",
                    where,
                    code="argocd-destination",
                )
            )
    for group, kind, cluster in sorted(refused):
        which = "clusterResourceWhitelist" if cluster else "namespaceResourceWhitelist"
        findings.append(
            Problem(
                f"kind {kind}{'.' + group if group else ''} is not in the {which} of AppProject {project.name} "
                f"({project.file}); Argo CD refuses to sync it",
                where,
                code="argocd-kind",
            )
        )
    return findings


_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
# one level of `{{if eq EXPR "TEXT"}}A{{else}}B{{end}}` (how the sandboxes/* directories get their own names)
_IF_EQ = re.compile(r'\{\{\s*if eq (.+?) "([^"{}]*)"\s*\}\}(.*?)\{\{\s*else\s*\}\}(.*?)\{\{\s*end\s*\}\}', re.S)


def application_name(template: str, overlay: str) -> str | None:
    """The Application name the ApplicationSet git directory generator gives ``overlay`` (a repo-relative dir).

    Understands the path parameters (``.path.path``, ``.path.basename``, ``.path.basenameNormalized``,
    ``index .path.segments N``) and one level of ``if eq PARAM "TEXT"`` … ``else`` … ``end``; None for a
    template using anything else.
    """
    segments = overlay.split("/")
    values = {".path.path": overlay, ".path.basename": segments[-1], ".path.basenameNormalized": re.sub(r"[^a-z0-9-]", "-", segments[-1].lower())}
    unknown = False

    def value(expr: str) -> str | None:
        if expr.startswith("(") and expr.endswith(")"):
            expr = expr[1:-1].strip()
        if expr in values:
            return values[expr]
        idx = re.fullmatch(r"index \.path\.segments (\d+)", expr)
        if idx and int(idx.group(1)) < len(segments):
            return segments[int(idx.group(1))]
        return None

    def branch(m: re.Match) -> str:
        nonlocal unknown
        got = value(m.group(1).strip())
        if got is None:
            unknown = True
            return ""
        return m.group(3) if got == m.group(2) else m.group(4)

    def sub(m: re.Match) -> str:
        nonlocal unknown
        got = value(m.group(1))
        if got is None:
            unknown = True
            return ""
        return got

    name = _EXPR.sub(sub, _IF_EQ.sub(branch, template))
    return None if unknown else name


def load_application_name_templates(root: Path) -> list[tuple[str, str]]:
    """``(file, template.metadata.name)`` of every ApplicationSet in ``argocd/``."""
    import yaml

    out = []
    for path in sorted((root / C.ARGOCD_DIR).glob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "ApplicationSet":
                name = ((((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("name"))
                if isinstance(name, str):
                    out.append((path.relative_to(root).as_posix(), name))
    return out


def check_application_names(root: Path, overlays: list[str]) -> list[Problem]:
    """One finding per Application name that two or more overlays would get."""
    findings = []
    for file, template in load_application_name_templates(root):
        by_name: dict[str, list[str]] = {}
        for overlay in overlays:
            name = application_name(template, overlay)
            if name is not None:
                by_name.setdefault(name, []).append(overlay)
        for name, dirs in sorted(by_name.items()):
            if len(dirs) > 1:
                findings.append(
                    Problem(
                        f"Application name {name} is generated for {len(dirs)} overlays ({', '.join(dirs)}); "
                        "Argo CD keeps one Application per name: rename one deployment",
                        file,
                        code="argocd-app-name",
                    )
                )
    return findings
