"""Publish into a GitOps repository holding 2,000 deployments vs. into an empty one.

Targets (issue 6): one publish (local bare remote, embedded PostgreSQL, file store)
≤ 1.5 s wall excluding the archive build, and ≤ 1.1× (issue 11; 1.25× before) the same publish into an
empty repository. For contrast, the obvious alternative — a fresh shallow
clone with a checkout, write, commit, push — is timed on the big repository too.

Each timed publish is the real command (`python -m allora_gitops.cli.gitops publish
ARCHIVE --repo R --network testnet --branch main`) on a new version, so every run
uploads, registers, renders, commits and pushes; archives are built beforehand
(not timed). The repository cache is warmed by one untimed publish per repository,
as it is for anyone who has published before.

    python benchmarks/bench_publish.py [--deployments 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXAMPLE = ROOT / "examples" / "linear-forecaster"


def make_archive(work: Path, name: str, version: str) -> Path:
    from allora_gitops.bundle.archive import build_archive

    src = work / "src" / f"{name}-{version}"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    text = (src / "model.yaml").read_text()
    text = re.sub(r"^name: .*$", f'name: "{name}"', text, flags=re.M)
    text = re.sub(r"^version: .*$", f'version: "{version}"', text, flags=re.M)
    (src / "model.yaml").write_text(text)
    return build_archive(src, work / "dist").path


def fill_repository(bare: Path, count: int) -> float:
    """Commit ``count`` rendered deployments (testnet overlays) to main in one commit; return seconds."""
    from allora_gitops import constants as C
    from allora_gitops.bundle.manifest import load_manifest
    from allora_gitops.gitops.repo import GitDir, TreeChange, _commit_env, build_tree
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_deployment

    started = time.perf_counter()
    manifest = load_manifest(EXAMPLE / "model.yaml", "model.yaml").manifest
    files: dict[str, str] = {}
    for i in range(count):
        m = manifest.model_copy(update={"name": f"model-{i:04d}"})
        spec = DeploymentSpec.complete(m, sha256=f"{i:064x}", archive_size=1000, settings=DeploymentSettings(network="testnet"))
        files.update(render_deployment(spec))
    git = GitDir(bare)
    tip = git.rev_parse("refs/heads/main")
    tree = build_tree(git, tip, TreeChange(files=files))
    commit = git.run("commit-tree", tree, "-p", tip, env=_commit_env(), stdin=b"2000 deployments\n").out.strip()
    git.run("update-ref", "refs/heads/main", commit, tip)
    # A server keeps its objects packed; 18,000 loose ones would make the first push start an auto-gc
    # in the background, which would then run during the timed publishes.
    git.run("gc", "--quiet", "--prune=now")
    return time.perf_counter() - started


CPU: dict[str, list[float]] = {}


def publish(archive: Path, repo: Path, env: dict[str, str]) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "publish", str(archive), "--repo", str(repo), "--network", "testnet", "--branch", "main"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the command and its git children: what the wall time would be on an idle machine, roughly
    CPU.setdefault(repo.name, []).append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    if proc.returncode != 0 or "commit " not in proc.stdout:
        raise SystemExit(f"publish failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def naive_commit(repo: Path, work: Path, files: dict[str, str]) -> float:
    """The obvious alternative: shallow clone with checkout, write, add, commit, push."""
    started = time.perf_counter()
    clone = work / f"naive-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "main", repo.as_uri(), str(clone)], check=True)
    for rel, text in files.items():
        target = clone / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "-C", str(clone), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(clone), "commit", "-qm", "naive"], check=True, env=env)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(clone)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    os.chmod(work, 0o755)  # the embedded PostgreSQL runs as its own user when we are root
    home = work / "state"
    env = {**os.environ, "ALLORA_GITOPS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("ALLORA_DATABASE_URL", None)
    env.pop("ALLORA_STORE_URL", None)
    os.environ.update({"ALLORA_GITOPS_HOME": str(home)})
    try:
        from allora_gitops.db.embedded import embedded_database_url
        from allora_gitops.gitops.scaffold import init_repo
        from allora_gitops.gitops.settings import RepositorySettings

        embedded_database_url()  # start it once and hold it: the commands attach to the running server
        empty, big = work / "empty.git", work / "big.git"
        for repo in (empty, big):
            init_repo(repo, RepositorySettings(repo_url="https://git.example.com/p/d.git"), bare=True)
        fill = fill_repository(big, args.deployments)
        files = int(subprocess.run(["git", "--git-dir", str(big), "ls-tree", "-r", "--name-only", "main"], capture_output=True, text=True).stdout.count("\n"))
        print(f"repository with {args.deployments} deployments: {files} files (made in {fill:.1f} s)")

        t0 = time.perf_counter()
        archives = {
            repo: [make_archive(work, f"bench-{repo.stem}", f"1.0.{v}") for v in range(args.runs + 1)] for repo in (empty, big)
        }
        print(f"archives built in {time.perf_counter() - t0:.1f} s (not timed below)")

        cold = {repo: publish(archives[repo][0], repo, env) for repo in (empty, big)}  # warms each repository cache
        print(f"first publish (cold cache: clones the repository): empty {cold[empty]:.2f} s, big {cold[big]:.2f} s")
        CPU.clear()
        times: dict[Path, list[float]] = {empty: [], big: []}
        for v in range(1, args.runs + 1):  # interleaved, so drift hits both alike
            for repo in (empty, big):
                times[repo].append(publish(archives[repo][v], repo, env))
        med = {repo: statistics.median(t) for repo, t in times.items()}
        naive = [naive_commit(big, work, {f"deployments/naive/x{i}.yaml": f"i: {i}\n"}) for i in range(3)]
        started = time.perf_counter()
        listing = subprocess.run(
            [sys.executable, "-m", "allora_gitops.cli.gitops", "list", "--repo", str(big), "--no-db", "--json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        list_wall = time.perf_counter() - started
        listed = listing.stdout.count('"network"')

        print()
        print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch with it)")
        print(f"publish into an empty repository:       median {med[empty]:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[empty])})")
        print(f"publish into {args.deployments} deployments:          median {med[big]:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[big])})")
        print(f"ratio big / empty:                      {med[big] / med[empty]:.2f}×   (target ≤ 1.1×)")
        print(f"absolute (big):                         {med[big]:.3f} s   (target ≤ 1.5 s)")
        cpu = {repo: statistics.median(CPU[repo.name]) for repo in (empty, big)}
        print(f"CPU seconds (command + git), median:    empty {cpu[empty]:.3f} s, big {cpu[big]:.3f} s, ratio {cpu[big] / cpu[empty]:.2f}×")
        print(f"list --no-db over the big repository:   {list_wall:.2f} s for {listed} deployments")
        print(f"naive clone+checkout+commit+push (big): median {statistics.median(naive):.3f} s (git alone, no validation/records/render)")
    finally:
        try:
            from allora_gitops.db.embedded import detach_all

            detach_all()
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
