"""`allora-gitops diff` of one review branch in a GitOps repository holding 2,000 deployments.

Target (issue 11): ≤ 2 s wall for the real command (`python -m allora_gitops.cli.gitops diff
--repo R --base main BRANCH`), where BRANCH changes one deployment and main has moved on since
(another model was published after the branch was made: the three-dot diff must ignore it).
For contrast, in the same run: `git diff --stat main...BRANCH` (git alone, text only) and the
same command on a repository with one deployment.

    python benchmarks/bench_diff.py [--deployments 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BRANCH = "deploy/model-0007/testnet/2.0.0"


def commit_deployment(bare: Path, branch: str, name: str, version: str, sha_seed: int) -> None:
    """Render ``name`` at ``version`` and commit it on ``branch`` (made from main when missing)."""
    from allora_gitops.bundle.manifest import load_manifest
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_deployment

    manifest = load_manifest(ROOT / "examples/linear-forecaster/model.yaml", "model.yaml").manifest
    m = manifest.model_copy(update={"name": name, "version": version})
    spec = DeploymentSpec.complete(m, sha256=f"{sha_seed:064x}", archive_size=1000, settings=DeploymentSettings(network="testnet", topic_id=7))
    persist(parse_remote(bare), TreeChange(files=render_deployment(spec)), branch=branch, message=f"{name} {version}\n")


def timed(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0, 1)) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    from bench_publish import fill_repository

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-diff-"))
    env = {**os.environ, "ALLORA_GITOPS_HOME": str(work / "state"), "PYTHONPATH": str(ROOT)}
    os.environ["ALLORA_GITOPS_HOME"] = str(work / "state")
    try:
        from allora_gitops.gitops.scaffold import init_repo
        from allora_gitops.gitops.settings import RepositorySettings

        small, big = work / "small.git", work / "big.git"
        for repo, count in ((small, 8), (big, args.deployments)):
            init_repo(repo, RepositorySettings(repo_url="https://git.example.com/p/d.git"), bare=True)
            fill_repository(repo, count)
            commit_deployment(repo, BRANCH, "model-0007", "2.0.0", 10**6)  # the review branch
            commit_deployment(repo, "main", "late-model", "1.0.0", 10**6 + 1)  # main moves on afterwards
        cmd = {repo: [sys.executable, "-m", "allora_gitops.cli.gitops", "diff", "--repo", str(repo), "--base", "main", BRANCH] for repo in (small, big)}
        _, out = timed(cmd[big], env)
        assert "late-model" not in out and "model-0007 on testnet: changed" in out, out[:2000]
        times: dict[Path, list[float]] = {small: [], big: []}
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            for repo in (small, big):
                times[repo].append(timed(cmd[repo], env)[0])
        git_only = [timed(["git", "--git-dir", str(big), "diff", "--stat", f"main...{BRANCH}"], env, ok=(0,))[0] for _ in range(args.runs)]
        med = {repo: statistics.median(t) for repo, t in times.items()}
        print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch with it)")
        print(f"diff, 8 deployments:                    median {med[small]:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[small])})")
        print(f"diff, {args.deployments} deployments:                 median {med[big]:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[big])})   (target ≤ 2 s)")
        print(f"ratio big / small:                      {med[big] / med[small]:.2f}×")
        print(f"git diff --stat main...branch (big):    median {statistics.median(git_only):.3f} s (text only, no rendering)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
