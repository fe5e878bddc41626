"""What is deployed where, as the GitOps repository says (the database side joins in ``list``/``status``)."""

from __future__ import annotations

from typing import Any

from allora_gitops.gitops.layout import read_deployments
from allora_gitops.gitops.repo import Snapshot, parse_remote, read_ref


def list_deployments(repo: str, ref: str = "main", name: str | None = None) -> list[dict[str, Any]]:
    remote = parse_remote(repo)
    git, commit = read_ref(remote, ref)
    rows = []
    for facts in read_deployments(Snapshot(git, commit), name=name):
        row = facts.to_dict()
        row["repo_commit"] = commit
        rows.append(row)
    return rows
