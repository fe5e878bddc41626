"""``kubectl kustomize`` for many overlays at once: a small pool of processes, one per overlay.

One overlay per process keeps a broken overlay's error its own (a generated
kustomization over many overlays would fail as a whole, and objects of the same
name in two overlays would collide).
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from allora_gitops.verify.tools import find_tool

TIMEOUT_SECONDS = 120


@dataclass
class KustomizeResult:
    overlay: Path
    objects: list[dict]
    error: str | None = None


def kubectl() -> str:
    return find_tool("kubectl", "verify needs `kubectl kustomize`")


def build_overlay(overlay: Path, kubectl_path: str | None = None) -> KustomizeResult:
    import yaml

    try:
        proc = subprocess.run(
            [kubectl_path or kubectl(), "kustomize", str(overlay)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return KustomizeResult(overlay, [], f"kubectl kustomize timed out after {TIMEOUT_SECONDS} s")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.strip().splitlines() if ln.strip()]
        message = lines[-1] if lines else f"kubectl kustomize exited with {proc.returncode}"
        return KustomizeResult(overlay, [], message.removeprefix("error: "))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(proc.stdout, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:  # pragma: no cover - kustomize emits valid YAML
        return KustomizeResult(overlay, [], f"kustomize output does not parse: {exc}")
    return KustomizeResult(overlay, [d for d in docs if isinstance(d, dict)])


def build_overlays(overlays: list[Path], jobs: int | None = None) -> list[KustomizeResult]:
    """Build every overlay, ``jobs`` at a time (default: the CPU count), results in input order."""
    if not overlays:
        return []
    path = kubectl()
    workers = max(1, min(jobs or os.cpu_count() or 2, len(overlays)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda o: build_overlay(o, path), overlays))
