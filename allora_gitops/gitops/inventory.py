"""What is deployed where: the GitOps repository (what Argo CD runs) joined with the records database.

The repository is the truth about what is deployed (the base branch); the
database adds the deployment's status, its commit and its review branch, and
knows about changes still waiting for review (live rows not on the branch yet).
"""

from __future__ import annotations

from typing import Any, Callable

from allora_gitops.errors import AlloraGitopsError
from allora_gitops.gitops.layout import read_deployments
from allora_gitops.gitops.repo import Snapshot, parse_remote, read_ref

WAITING = ("pending", "committed")  # changes not on the base branch yet
DEPLOYED = ("synced", "merged", "retiring")  # on the base branch, as far as the records know
# When several records match what runs, the one git says runs it wins.
_PREFERENCE = {"synced": 0, "merged": 1, "retiring": 2, "committed": 3, "pending": 4}


def repo_deployments(repo: str, ref: str = "main", name: str | None = None, *, full: bool | None = None) -> list[dict[str, Any]]:
    """One row per overlay at ``ref``; ``full`` also reads topic, fee tier and resources (default: for one ``name``)."""
    remote = parse_remote(repo)
    git, commit = read_ref(remote, ref)
    rows = []
    for facts in read_deployments(Snapshot(git, commit), name=name, full=full):
        row = facts.to_dict()
        row["in_repo"] = True
        row["repo_commit"] = commit
        rows.append(row)
    return rows


def _record_row(d) -> dict[str, Any]:
    return {
        "status": d.status,
        "deployment_id": d.id,
        "commit": d.commit_sha,
        "branch": d.repo_branch,
        "status_message": d.status_message,
        "updated_at": d.updated_at.isoformat() if d.updated_at else None,
    }


def _record_change_row(d, *, in_repo: bool) -> dict[str, Any]:
    """A row from the record alone (what the repository would say, taken from the record)."""
    return {"name": d.name, "network": d.network, "version": d.version, "sha256": d.bundle_sha256,
            "image": d.container_image, "topic_id": str(d.topic_id), "fee_tier": d.fee_tier, "in_repo": in_repo,
            **_record_row(d)}  # fmt: skip


def list_deployments(
    repo: str | None,
    ref: str = "main",
    name: str | None = None,
    *,
    database_url: str | None = None,
    use_database: bool = True,
    warn: Callable[[str], None] = lambda _m: None,
    full: bool | None = None,
) -> list[dict[str, Any]]:
    """The repository's deployments at ``ref`` joined with their records (states reconciled with git first),
    plus the changes still waiting for review. Without ``repo``, the records alone: the newest synced, merged
    or retiring deployment per name and network stands for what runs (unreconciled: as of the last ``sync``).
    ``full``: see :func:`repo_deployments`."""
    rows = repo_deployments(repo, ref, name, full=full) if repo else []
    if not use_database:
        return rows
    try:
        from allora_gitops.db import open_records

        with open_records(database_url) as records:
            if repo:
                from allora_gitops.gitops.sync import reconcile

                reconcile(records, parse_remote(repo), ref, name=name)  # lazily: states follow the repository
            records_list = records.list_deployments(name=name)
    except (AlloraGitopsError, ImportError) as exc:
        if not repo:
            raise
        reason = exc.message if isinstance(exc, AlloraGitopsError) else "not installed"
        warn(f"warning: the records database is unavailable, showing the repository only ({reason})")
        return rows
    seen: set[str] = set()
    newest: dict[tuple[str, str], Any] = {}  # (name, network) → updated_at of the record matching the repository
    for row in rows:
        candidates = [
            d for d in records_list if d.name == row["name"] and d.network == row["network"] and d.version == row["version"]
            and (not row.get("sha256") or d.bundle_sha256 == row["sha256"]) and d.action != "retire"
        ]  # fmt: skip
        match = min(candidates, key=lambda d: _PREFERENCE.get(d.status, 9), default=None)
        if match is not None:
            row.update(_record_row(match))
            seen.add(match.id)
            newest[(match.name, match.network)] = match.updated_at
        else:
            row.update({"status": "untracked", "deployment_id": None, "commit": None, "branch": None})
    if not repo:  # without the repository, what the records say is on the base branch stands for it
        for d in records_list:  # newest first: one per name and network
            if d.status in DEPLOYED and (d.name, d.network) not in newest:
                rows.append(_record_change_row(d, in_repo=True))
                seen.add(d.id)
                newest[(d.name, d.network)] = d.updated_at
    shown: set[tuple[str, str]] = set()
    for d in records_list:  # newest first: at most one change waiting for review per name and network
        key = (d.name, d.network)
        if d.id in seen or d.status not in WAITING or key in shown:
            continue
        if key in newest and not (d.updated_at and newest[key] and d.updated_at > newest[key]):
            continue  # older than what the repository runs: superseded
        shown.add(key)
        rows.append(_record_change_row(d, in_repo=False))
    rows.sort(key=lambda r: (r["name"], r["network"], not r["in_repo"]))
    return rows
