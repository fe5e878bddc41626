"""Records follow the repository: deployment states derived from what git knows.

- ``committed`` → ``merged`` once its commit is reachable from the base branch (or, after a squash
  merge, once the base branch runs exactly that version and sha256);
- ``committed`` → ``abandoned`` once its review branch is gone without being merged;
- ``retiring`` → ``retired`` once the retire commit is on the base branch (or the overlay is gone
  from it); ``retiring`` → ``merged`` when the retire branch was deleted unmerged: it still runs.

``synced`` stays for cluster feedback (Argo CD), which git cannot tell. Run lazily by ``list`` and
``status``, or on demand by ``allora-gitops sync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allora_gitops.gitops.layout import read_deployments
from allora_gitops.gitops.repo import GitDir, Remote, RepoCache, Snapshot, read_ref

FOLLOWED = ("committed", "retiring")  # the states git can move on


@dataclass(frozen=True)
class StateChange:
    deployment_id: str
    name: str
    network: str
    version: str
    old: str
    new: str
    reason: str


def branch_heads(remote: Remote, git: GitDir) -> dict[str, str]:
    """``{branch: commit}`` of every branch of ``remote`` (read in place for a local repository)."""
    if remote.local_path is not None:
        out = git.run("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads", check=False).out
        return {ref: sha for ref, _, sha in (line.partition(" ") for line in out.splitlines()) if sha}
    return RepoCache(remote).remote_heads()


def is_ancestor(git: GitDir, commit: str | None, tip: str) -> bool:
    """Whether ``commit`` is reachable from ``tip`` (False when this object database does not have it)."""
    return bool(commit) and git.run("merge-base", "--is-ancestor", str(commit), tip, check=False).status == 0


def reconcile(records: Any, remote: Remote, base_branch: str, *, name: str | None = None) -> list[StateChange]:
    """Move this repository's ``committed``/``retiring`` rows to what git says; returns what changed."""
    rows = [d for d in records.list_deployments(name=name) if d.status in FOLLOWED and d.repo_url == remote.display]
    if not rows:
        return []
    git, tip = read_ref(remote, base_branch)
    heads = branch_heads(remote, git)
    running = {(f.name, f.network): f for f in read_deployments(Snapshot(git, tip), name=name, full=False)}
    changes = []
    for d in rows:
        facts = running.get((d.name, d.network))
        runs_it = facts is not None and facts.version == d.version and (not facts.sha256 or facts.sha256 == d.bundle_sha256)
        new, reason = d.status, ""
        if d.status == "committed":
            if is_ancestor(git, d.commit_sha, tip):
                new, reason = "merged", f"{(d.commit_sha or '')[:12]} is on {base_branch}"
            elif d.repo_branch in heads:
                continue
            elif runs_it:
                new, reason = "merged", f"{base_branch} runs {d.version} ({d.repo_branch} was merged and deleted)"
            else:
                new, reason = "abandoned", f"{d.repo_branch} was deleted without being merged into {base_branch}"
        elif d.status == "retiring":
            if is_ancestor(git, d.retire_commit_sha, tip) or facts is None:
                new, reason = "retired", f"the retire change is on {base_branch}"
            elif d.retire_branch and d.retire_branch not in heads:
                new, reason = "merged", f"{d.retire_branch} was deleted without being merged: {d.name} still runs on {d.network}"
            else:
                continue
        if new != d.status:
            records.set_deployment_status(d.id, new, message=reason)
            changes.append(StateChange(d.id, d.name, d.network, d.version, d.status, new, reason))
    return changes
