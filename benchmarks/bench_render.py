#!/usr/bin/env python3
"""Render 1,000 deployments (pure rendering: specs → trees, no disk, no kustomize), monitoring on.

Compares the project's one cached Jinja environment against the obvious
alternative, a fresh environment per deployment (templates re-parsed each
time), the same deployments with ``--no-monitoring`` (the cost of the PodMonitor
and PrometheusRule), and also times the parse-back check ``write_tree`` runs before writing.

usage: python benchmarks/bench_render.py [N]      (budget: N=1000 in <= 2 s)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from allora_gitops.bundle.manifest import load_manifest  # noqa: E402
from allora_gitops.render import DeploymentSettings, DeploymentSpec, check_tree, render_deployment  # noqa: E402
from allora_gitops.render import environment as env_module  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "linear-forecaster" / "model.yaml"


def make_specs(n: int, monitoring: bool = True) -> list[DeploymentSpec]:
    base = load_manifest(EXAMPLE).manifest
    specs = []
    for i in range(n):
        manifest = base.model_copy(update={"name": f"model-{i:04d}", "version": f"1.{i % 7}.{i}"})
        sha = f"{i:064x}"
        settings = DeploymentSettings(
            network="testnet" if i % 2 == 0 else "mainnet",
            topic_id=1 + i % 60,
            secret_store="vault" if i % 3 == 0 else None,
            archive_url=f"s3://bundles/{manifest.name}/{sha}.tar.gz",
            monitoring=monitoring,
        )
        specs.append(DeploymentSpec.complete(manifest, sha256=sha, archive_size=1000 + i, settings=settings))
    return specs


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    t0 = time.perf_counter()
    specs = make_specs(n)
    t_specs = time.perf_counter() - t0

    render_deployment(specs[0])  # warm: templates compiled once per process, like a CLI run
    t0, c0 = time.perf_counter(), time.process_time()
    trees = [render_deployment(s) for s in specs]
    t_render, c_render = time.perf_counter() - t0, time.process_time() - c0
    files = sum(len(t) for t in trees)

    # The same deployments without the PodMonitor and PrometheusRule (--no-monitoring).
    bare = make_specs(n, monitoring=False)
    t0, c0 = time.perf_counter(), time.process_time()
    for s in bare:
        render_deployment(s)
    t_bare, c_bare = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    for tree in trees:
        check_tree(tree)
    t_check, c_check = time.perf_counter() - t0, time.process_time() - c0

    # The obvious alternative: a new Jinja environment for every deployment.
    m = min(n, 200)
    c0 = time.process_time()
    for s in specs[:m]:
        env_module.environment.cache_clear()
        render_deployment(s)
    c_naive = (time.process_time() - c0) * n / m
    env_module.environment.cache_clear()

    print(f"deployments: {n}  files: {files}")
    print(f"specs (pydantic, complete+validate): {t_specs:.3f} s")
    print(f"render (one cached environment):    {t_render:.3f} s wall, {c_render:.3f} s CPU  ({t_render / n * 1000:.2f} ms each)  budget 2 s: {'OK' if t_render <= 2 else 'OVER'}")
    print(f"render without monitoring:           {t_bare:.3f} s wall, {c_bare:.3f} s CPU  (monitoring costs {c_render / c_bare:.2f}x CPU)")
    print(f"parse-back check (write_tree):       {t_check:.3f} s wall, {c_check:.3f} s CPU")
    print(f"fresh environment per deployment:    {c_naive:.3f} s CPU  (extrapolated from {m})")
    print(f"ratio fresh/cached (CPU): {c_naive / c_render:.1f}x")
    print("(wall time counts other processes on a shared machine; CPU time is this process's own work)")


if __name__ == "__main__":
    main()
