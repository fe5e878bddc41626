"""Records follow the repository: deployment states derived from what git knows.

- ``committed`` → ``merged`` once its commit is reachable from the base branch (or, after a squash
  merge, once the base branch runs exactly that version and sha256);
- ``committed`` → ``abandoned`` once its review branch is gone without being merged;
- ``retiring`` → ``retired`` once the retire commit is on the base branch (or the overlay is gone
  from it); ``retiring`` → ``merged`` when the retire branch was deleted unmerged: it still runs.

Then the **live release** of every deployment (a model on a network) is the one the base branch holds:
the newest merged release whose version and sha256 the base branch runs (a merged retire release when the
overlay is gone); every other merged release of it becomes ``superseded`` (``Records.settle_live_release``).

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
    """Move this repository's ``committed``/``retiring`` releases to what git says, then settle each
    deployment's live release; returns what changed."""
    mine = [d for d in records.list_deployments(name=name) if d.repo_url == remote.display]
    if not mine:
        return []
    git, tip = read_ref(remote, base_branch)
    heads = branch_heads(remote, git)
    running = {(f.name, f.network): f for f in read_deployments(Snapshot(git, tip), name=name, full=False)}
    changes = []
    for d in mine:
        if d.status not in FOLLOWED:
            continue
        facts = running.get((d.name, d.network))
        if d.action == "retire":
            runs_it = facts is None
        else:
            runs_it = facts is not None and facts.version == d.version and (not facts.sha256 or facts.sha256 == d.bundle_sha256)
        new, reason = d.status, ""
        if d.status == "committed":
            if is_ancestor(git, d.commit_sha, tip):
                new, reason = "merged", f"{(d.commit_sha or '')[:12]} is on {base_branch}"
            elif d.repo_branch in heads:
                continue
            elif runs_it:
                new, reason = "merged", f"{base_branch} runs {d.version} ({d.repo_branch} was merged and deleted)"
                if d.action == "retire":
                    reason = f"{base_branch} no longer runs {d.name} on {d.network} ({d.repo_branch} was merged and deleted)"
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
    changes += settle_live(records, remote, base_branch, running, name=name)
    return changes


def live_release_of(releases: list[Any], facts: Any) -> Any:
    """Which of one deployment's releases (``ReleaseRecord``, any order) the base branch holds, given what it
    runs there (``DeploymentFacts`` or None): the newest merged one that matches, else the newest superseded
    one that does (the base branch runs it again); with no overlay, the newest merged retire release."""
    def matches(r) -> bool:
        if facts is None:
            return r.action == "retire"
        return r.action != "retire" and r.version == facts.version and (not facts.sha256 or facts.sha256 == r.bundle_sha256)

    newest_first = sorted(releases, key=lambda r: (r.created_at, r.id), reverse=True)
    for wanted in (("merged", "synced", "retiring"), ("superseded",)):
        for r in newest_first:
            if r.status in wanted and matches(r):
                return r
    return None


def settle_live(records: Any, remote: Remote, base_branch: str, running: dict, *, name: str | None = None) -> list[StateChange]:
    """Record each deployment's live release from ``running`` ((name, network) → facts on the base branch)."""
    changes = []
    by_deployment: dict[str, list[Any]] = {}
    for r in records.list_deployments(name=name):
        if r.repo_url == remote.display and r.deployment_id:
            by_deployment.setdefault(r.deployment_id, []).append(r)
    for deployment_id, releases in by_deployment.items():
        first = releases[0]
        live = live_release_of(releases, running.get((first.name, first.network)))
        already = records.get_deployment_by_id(deployment_id)
        on_base = [r for r in releases if r.status in ("merged", "synced") and (live is None or r.id != live.id)]
        if already is not None and already.live_release_id == (live.id if live else None) and not on_base and (live is None or live.status != "superseded"):
            continue
        what = f"{live.version} ({live.action})" if live is not None else "nothing"
        for r in records.settle_live_release(deployment_id, live.id if live else None, f"{base_branch} runs {what} on {first.network}"):
            old = next(x.status for x in releases if x.id == r.id)
            changes.append(StateChange(r.id, r.name, r.network, r.version, old, r.status, r.status_message or ""))
    return changes
