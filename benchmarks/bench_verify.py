#!/usr/bin/env python3
"""``verify`` of a GitOps repository with 200 overlays (100 models x testnet/mainnet, 100 Dockerfiles).

Times the whole ``verify`` (batched kustomize in a pool of CPU-count workers,
schemas, policy, hadolint), then the kustomize phase alone against the obvious
alternative: one ``kubectl kustomize`` process per overlay, in the same pool.

usage: python benchmarks/bench_verify.py [MODELS]     (budget: 200 overlays in <= 30 s on 2 cores)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from allora_gitops.bundle.manifest import load_manifest  # noqa: E402
from allora_gitops.render import (  # noqa: E402
    ArgoCDSettings,
    DeploymentSettings,
    DeploymentSpec,
    render_argocd,
    render_deployment,
    write_tree,
)
from allora_gitops.verify import verify_repo  # noqa: E402
from allora_gitops.verify.kustomize import build_overlays  # noqa: E402
from allora_gitops.verify.repo import find_overlays  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "linear-forecaster" / "model.yaml"


def make_repo(root: Path, models: int) -> None:
    base = load_manifest(EXAMPLE).manifest
    write_tree(render_argocd(ArgoCDSettings(repo_url="https://git.example.com/gitops.git")), root)
    for i in range(models):
        manifest = base.model_copy(update={"name": f"model-{i:03d}"})
        sha = f"{i:064x}"
        for network in ("testnet", "mainnet"):
            settings = DeploymentSettings(network=network, secret_store="vault" if network == "testnet" else None, archive_url=f"s3://b/{sha}.tar.gz")
            write_tree(render_deployment(DeploymentSpec.complete(manifest, sha256=sha, archive_size=1, settings=settings)), root)


def clock() -> tuple[float, float]:
    """(wall, CPU of this process and its finished children)."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def main() -> None:
    models = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        root = Path(tmp)
        make_repo(root, models)
        w0, c0 = clock()
        report = verify_repo(root)
        w1, c1 = clock()
        assert report.ok, report.findings[:3]
        overlays = find_overlays(root)
        batched = build_overlays(overlays)
        w2, c2 = clock()
        single = build_overlays(overlays, batch_max=1)
        w3, c3 = clock()
        assert all(r.error is None for r in batched + single)
    print(f"overlays: {len(report.overlays)}  Dockerfiles: {len(report.dockerfiles)}  CPUs: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}")
    print(f"verify (whole):                    {w1 - w0:6.2f} s wall {c1 - c0:6.2f} s CPU   budget 30 s: {'OK' if w1 - w0 <= 30 else 'OVER'}")
    print(f"kustomize, batched (default):      {w2 - w1:6.2f} s wall {c2 - c1:6.2f} s CPU")
    print(f"kustomize, one process per overlay:{w3 - w2:6.2f} s wall {c3 - c2:6.2f} s CPU")
    print(f"ratio per-overlay/batched: {(w3 - w2) / (w2 - w1):.1f}x wall, {(c3 - c2) / (c2 - c1):.1f}x CPU")


if __name__ == "__main__":
    main()
