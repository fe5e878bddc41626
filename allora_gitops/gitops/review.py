"""``allora-gitops diff``: what a change does to the *rendered* objects, not to template text.

Both refs are read straight from git (nothing checked out), every overlay the
change touches is built with ``kubectl kustomize`` on each side, and the objects
are compared one by one in a normalised form (keys sorted, one YAML document per
object, ordered by kind/namespace/name), so a reordered patch or a reformatted
file shows no diff and a changed image shows exactly one line.
"""

from __future__ import annotations

import difflib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError
from allora_gitops.gitops.layout import (
    OverlayRef,
    collect_facts,
    load_yaml_documents,
    overlays_in,
    overlays_touched,
    summarise_change,
)
from allora_gitops.gitops.repo import GitDir, Remote, changed_paths, read_ref



@dataclass
class ObjectDiff:
    key: str  # kind/namespace/name
    status: str  # added | removed | changed
    diff: str


@dataclass
class OverlayDiff:
    name: str
    network: str
    status: str  # added | removed | changed | unchanged
    objects: list[ObjectDiff] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


@dataclass
class ReviewDiff:
    base: str
    head: str
    base_commit: str
    head_commit: str
    overlays: list[OverlayDiff] = field(default_factory=list)
    argocd: list[ObjectDiff] = field(default_factory=list)
    build_files: list[tuple[str, str]] = field(default_factory=list)
    other_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.build_files or self.argocd or any(o.objects for o in self.overlays))

    def summary_lines(self) -> list[str]:
        lines = [f"{self.base}...{self.head}: merge base {self.base_commit[:12]} → {self.head} ({self.head_commit[:12]})"]
        for o in self.overlays:
            counts = {s: sum(1 for d in o.objects if d.status == s) for s in ("added", "changed", "removed")}
            detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no object changes"
            lines.append(f"  {o.name} on {o.network}: {o.status} ({detail})")
            lines.extend(f"    {s}" for s in o.summary)
        if self.argocd:
            lines.append(f"  argocd/: {len(self.argocd)} object(s) changed")
        for status, path in self.build_files:
            lines.append(f"  {status} {path}")
        if self.other_files:
            lines.append(f"  {len(self.other_files)} other file(s) changed: " + ", ".join(p for _, p in self.other_files[:5]))
        if not self.differs:
            lines.append("  no change in the rendered manifests")
        return lines

    def text(self) -> str:
        out = ["# " + line for line in self.summary_lines()]
        for o in self.overlays:
            for d in o.objects:
                out.append(d.diff.rstrip("\n"))
        for d in self.argocd:
            out.append(d.diff.rstrip("\n"))
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "differs": self.differs,
            "overlays": [
                {
                    "name": o.name,
                    "network": o.network,
                    "status": o.status,
                    "summary": o.summary,
                    "objects": [{"object": d.key, "status": d.status, "diff": d.diff} for d in o.objects],
                }
                for o in self.overlays
            ],
            "argocd": [{"object": d.key, "status": d.status, "diff": d.diff} for d in self.argocd],
            "build_files": [{"status": s, "path": p} for s, p in self.build_files],
            "other_files": [{"status": s, "path": p} for s, p in self.other_files],
        }


# --- normalised objects ------------------------------------------------------------


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _sorted(node[k]) for k in sorted(node, key=str)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def dump_object(obj: Any) -> str:
    import io

    try:  # libyaml when PyYAML has it: diffs of many objects stay fast
        import yaml

        return yaml.dump(_sorted(obj), Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=False, width=4096, allow_unicode=True)
    except (ImportError, AttributeError):
        pass
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    buf = io.StringIO()
    yaml.dump(_sorted(obj), buf)
    return buf.getvalue()


def object_key(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "?"
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).split("/")[0] if "/" in str(obj.get("apiVersion", "")) else ""
    kind = f"{obj.get('kind', '?')}.{group}" if group else str(obj.get("kind", "?"))
    return f"{kind}/{meta.get('namespace') or '-'}/{meta.get('name', '?')}"


def objects_by_key(docs: list[Any]) -> dict[str, str]:
    return {object_key(d): dump_object(d) for d in docs if isinstance(d, dict)}


def diff_objects(old: dict[str, str], new: dict[str, str], base_label: str, head_label: str) -> list[ObjectDiff]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        status = "added" if a is None else "removed" if b is None else "changed"
        text = "".join(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"{base_label}: {key}" if a is not None else "/dev/null",
                tofile=f"{head_label}: {key}" if b is not None else "/dev/null",
            )
        )
        out.append(ObjectDiff(key, status, text))
    return out


# --- rendering one side --------------------------------------------------------------


def kustomize(directory: Path) -> list[Any]:
    """The objects ``kubectl kustomize directory`` builds (the one runner: ``verify.kustomize``)."""
    from allora_gitops.verify.kustomize import build_overlay

    result = build_overlay(directory)
    if result.error is not None:
        raise GitOpsError(f"kubectl kustomize failed: {result.error}")
    return result.objects


def materialise(git: GitDir, commit: str, prefix: str, dest: Path) -> bool:
    """Write the files under ``prefix`` at ``commit`` below ``dest``; False when there are none."""
    paths = git.list_files(commit, prefix)
    if not paths:
        return False
    for rel, text in git.read_many(commit, paths).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return True


def render_overlay(git: GitDir, commit: str, overlay: OverlayRef, work: Path) -> list[Any] | None:
    """The objects ``kubectl kustomize`` builds for ``overlay`` at ``commit``; None when it does not exist there."""
    root = work / commit
    if not (root / overlay.directory).is_dir():
        if not materialise(git, commit, C.deployment_dir(overlay.name), root):
            return None
    if not (root / overlay.directory).is_dir():
        return None
    return kustomize(root / overlay.directory)


# --- the diff ------------------------------------------------------------------------


def merge_base(git: GitDir, base_commit: str, head_commit: str) -> str:
    """Where ``head`` forked from ``base`` (``git merge-base``), else ``base_commit`` itself (unrelated histories)."""
    r = git.run("merge-base", base_commit, head_commit, check=False)
    return r.out.strip() or base_commit if r.status == 0 else base_commit


def diff_refs(remote: Remote, base: str, head: str) -> ReviewDiff:
    """What merging ``head`` into ``base`` changes: ``head`` against its merge base with ``base`` (``base...head``).

    Not against the tip of ``base``: what others merged since the branch was made is not this branch's change.
    """
    git, base_tip = read_ref(remote, base)
    git_head, head_commit = read_ref(remote, head)
    if git_head.path != git.path:  # cannot happen (same remote), but never mix object databases
        raise GitOpsError("base and head resolve to different repositories")
    base_commit = merge_base(git, base_tip, head_commit)
    result = ReviewDiff(base, head, base_commit, head_commit)
    if base_commit == head_commit:
        return result
    changes = changed_paths(git, f"{base_commit}^{{tree}}", f"{head_commit}^{{tree}}")
    changed = [p for _, p in changes]
    # Only the deployments the change touches are listed: a repository of thousands stays quick.
    names = sorted({p.split("/")[1] for p in changed if p.startswith(C.DEPLOYMENTS_DIR + "/") and p.count("/") >= 2})
    all_paths = {f for n in names for c in (base_commit, head_commit) for f in git.list_files(c, C.deployment_dir(n))}
    touched = overlays_touched(changed, all_paths)
    for status, path in changes:
        if path.startswith(C.BUILDS_DIR + "/"):
            result.build_files.append((status, path))
        elif not path.startswith((C.DEPLOYMENTS_DIR + "/", C.ARGOCD_DIR + "/")):
            result.other_files.append((status, path))

    with tempfile.TemporaryDirectory(prefix="allora-diff-") as tmp:
        work = Path(tmp)
        # materialise serially (one cat-file each), build in parallel (kubectl is the slow part)
        jobs = []
        for o in touched:
            for commit in (base_commit, head_commit):
                if not (work / commit / C.deployment_dir(o.name)).exists():
                    materialise(git, commit, C.deployment_dir(o.name), work / commit)
            jobs.append(o)
        with ThreadPoolExecutor(max_workers=4) as pool:
            rendered = list(
                pool.map(
                    lambda o: (render_overlay(git, base_commit, o, work), render_overlay(git, head_commit, o, work)),
                    jobs,
                )
            )
    for o, (old, new) in zip(jobs, rendered):
        status = "added" if old is None else "removed" if new is None else "changed"
        objects = diff_objects(objects_by_key(old or []), objects_by_key(new or []), base, head)
        if status == "changed" and not objects:
            status = "unchanged"
        summary = summarise_change(
            None if old is None else collect_facts(old), None if new is None else collect_facts(new)
        )
        result.overlays.append(OverlayDiff(o.name, o.network, status, objects, summary))

    argocd_changed = [p for p in changed if p.startswith(C.ARGOCD_DIR + "/") and p.endswith((".yaml", ".yml"))]
    if argocd_changed:
        old_docs, new_docs = [], []
        for p in argocd_changed:
            old_docs += load_yaml_documents(git.read_text(base_commit, p) or "")
            new_docs += load_yaml_documents(git.read_text(head_commit, p) or "")
        result.argocd = diff_objects(objects_by_key(old_docs), objects_by_key(new_docs), base, head)
    return result


def overlays_at(remote: Remote, ref: str) -> list[OverlayRef]:
    git, commit = read_ref(remote, ref)
    return overlays_in(git.list_files(commit, C.DEPLOYMENTS_DIR))
