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
    records: Any = None,
) -> list[dict[str, Any]]:
    """The repository's deployments at ``ref`` joined with their records (states reconciled with git first),
    plus the changes still waiting for review. Without ``repo``, the records alone: the newest synced, merged
    or retiring deployment per name and network stands for what runs (unreconciled: as of the last ``sync``).
    ``full``: see :func:`repo_deployments`. ``records``: an open ``Records`` to use instead of opening one."""
    import contextlib

    rows = repo_deployments(repo, ref, name, full=full) if repo else []
    if not use_database:
        return rows
    try:
        from allora_gitops.db import open_records

        with contextlib.nullcontext(records) if records is not None else open_records(database_url) as records:
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


# --- one entry per deployment (issue 20) ------------------------------------------------------------


def release_dict(r) -> dict[str, Any]:
    """A release (``ReleaseRecord``) as list, status, history and the API show it."""
    return {
        "release_id": r.id, "kind": r.action, "version": r.version, "sha256": r.bundle_sha256, "status": r.status,
        "commit": r.commit_sha, "branch": r.repo_branch, "by": r.created_by,
        "at": r.created_at.isoformat(timespec="seconds") if r.created_at else None,
        "wallet": r.wallet_secret_name, "image": r.container_image, "message": r.status_message,
    }  # fmt: skip


def live_release_in(deployment, releases: list[Any]) -> Any:
    """The release of ``deployment`` that runs, as the records know it (``live_deployments``, migration 0008): its
    live release unless that is a retire; before git was first read (no live release settled), the newest merged."""
    on_base = ("merged", "synced", "retiring")
    if deployment.live_release_id is not None:
        live = next((r for r in releases if r.id == deployment.live_release_id), None)
        return live if live is not None and live.action != "retire" and live.status in on_base else None
    merged = [r for r in releases if r.action != "retire" and r.status in on_base]
    return merged[-1] if merged else None


def entry_of(deployment, releases: list[Any], facts=None, *, repo_read: bool = False) -> dict[str, Any]:
    """One deployment (a ``db.records.Deployment``) with its live release and its open reviews.

    ``live_version``: what the base branch runs — from ``facts`` (``DeploymentFacts`` or None) when the
    repository was read (``repo_read``), else from the live release the records settled last; None when
    nothing runs. ``pending``: releases waiting for review (version, branch, kind), oldest first.
    """
    live = live_release_in(deployment, releases)
    live_version = (facts.version if facts is not None else None) if repo_read else (live.version if live else None)
    pending = [r for r in releases if r.status in WAITING]
    if live is not None:
        status = live.status
    elif pending:
        status = pending[-1].status
    elif live_version is not None:
        status = "untracked"
    else:
        status = "retired" if releases else "-"
    return {
        "id": deployment.id, "name": deployment.name, "network": deployment.network, "owner": deployment.owner,
        "live_version": live_version, "status": status,
        "version": live_version, "sha256": (facts.sha256 if facts is not None else None) if repo_read else (live.bundle_sha256 if live else None),
        "image": (facts.image if facts is not None else None) if repo_read else (live.container_image if live else None),
        "commit": live.commit_sha if live else None, "wallet": live.wallet_secret_name if live else None,
        "live": release_dict(live) if live is not None else None,
        "pending": [{"version": r.version, "branch": r.repo_branch, "kind": r.action, "release_id": r.id, "status": r.status} for r in pending],
        "retired": live_version is None and not pending,
    }  # fmt: skip


def deployment_entries(
    repo: str | None,
    ref: str = "main",
    name: str | None = None,
    network: str | None = None,
    *,
    database_url: str | None = None,
    include_retired: bool = False,
    visible: Callable[[str], bool] = lambda _name: True,
    records: Any = None,
) -> list[dict[str, Any]]:
    """One entry per deployment (a model on a network), by name and network: see :func:`entry_of`.

    With ``repo`` the states are reconciled with git first and ``live_version`` is read from ``ref``; an
    overlay the records do not know is an ``untracked`` entry without an id. Retired deployments (nothing
    live, nothing pending) are left out unless ``include_retired``; ``visible(name)`` filters by owner.
    """
    import contextlib

    from allora_gitops.db import open_records

    with contextlib.ExitStack() as stack:
        if records is None:
            records = stack.enter_context(open_records(database_url))
        facts_of: dict[tuple[str, str], Any] = {}
        if repo:
            from allora_gitops.gitops.sync import reconcile

            remote = parse_remote(repo)
            reconcile(records, remote, ref, name=name)
            git, commit = read_ref(remote, ref)
            facts_of = {(f.name, f.network): f for f in read_deployments(Snapshot(git, commit), name=name, full=False)}
        out = []
        by_deployment: dict[str, list] = {}
        for r in records.list_deployments(name=name, network=network):  # every release in one statement
            by_deployment.setdefault(r.deployment_id, []).append(r)
        for d in records.list_deployment_entities(name=name, network=network):
            if not visible(d.name):
                continue
            releases = sorted(by_deployment.get(d.id, []), key=lambda r: (r.created_at, r.id))
            entry = entry_of(d, releases, facts_of.pop((d.name, d.network), None), repo_read=bool(repo))
            if include_retired or not entry["retired"]:
                out.append(entry)
        for (n, net), f in facts_of.items():
            if (network is None or net == network) and visible(n):
                out.append({"id": None, "name": n, "network": net, "owner": None, "live_version": f.version, "status": "untracked",
                            "version": f.version, "sha256": f.sha256, "image": f.image, "commit": None, "wallet": None,
                            "live": None, "pending": [], "retired": False})  # fmt: skip
    out.sort(key=lambda e: (e["name"], e["network"]))
    return out


def entries_page(records: Any, f: Any, *, after: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], list[Any], str | None]:
    """One page of deployments (``db.paging.DeploymentFilter`` ``f``, keyset by name and network) as
    :func:`entry_of` entries, with the release each entry's lifecycle is of (the live one, else the newest
    waiting; None when neither), and the next page's cursor (None on the last). Reads the page's releases in
    one statement. ``UsageError`` for a bad cursor or limit."""
    page, next_cursor = records.page_deployments(f, after=after, limit=limit)
    releases_of = records.releases_of([d.id for d in page])
    entries, shown = [], []
    for d in page:
        releases = releases_of[d.id]
        e = entry_of(d, releases)
        release_id = (e["live"] or {}).get("release_id") or (e["pending"][-1]["release_id"] if e["pending"] else None)
        entries.append(e)
        shown.append(next((r for r in releases if r.id == release_id), None))
    return entries, shown, next_cursor


def one_per_deployment(rows: list[dict[str, Any]], *, database_url: str | None = None, include_retired: bool = False,
                       use_database: bool = True, records: Any = None) -> list[dict[str, Any]]:
    """``list``'s rows (:func:`list_deployments`) folded into one entry per deployment (name + network).

    Each keeps what the base branch runs (its row, ``live_version``: None when only a review waits) and gains
    ``pending`` (every open review: version, branch, kind, oldest first), ``id`` (the deployment's) and
    ``owner`` from the records. ``include_retired`` adds the deployments that run nothing and wait for nothing.
    """
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: not r.get("in_repo", True)):
        key = (row["name"], row["network"])
        if key in entries:
            continue  # a review waiting beside what runs: it is listed in `pending` below
        entries[key] = {**row, "live_version": row.get("version") if row.get("in_repo", True) else None, "pending": []}
    if use_database:
        import contextlib

        from allora_gitops.db import open_records

        with contextlib.nullcontext(records) if records is not None else open_records(database_url) as records:
            for key, entry in entries.items():
                d = records.find_deployment(*key)
                if d is None:
                    continue
                entry.update(id=d.id, owner=d.owner)
                entry["pending"] = [{"version": r.version, "branch": r.repo_branch, "kind": r.action, "release_id": r.id, "status": r.status}
                                    for r in records.list_releases(d.id) if r.status in WAITING]  # fmt: skip
            if include_retired:
                for d in records.list_deployment_entities():
                    if (d.name, d.network) not in entries:
                        entries[(d.name, d.network)] = {"name": d.name, "network": d.network, "version": None, "live_version": None,
                                                        "status": "retired", "in_repo": False, "id": d.id, "owner": d.owner, "pending": []}  # fmt: skip
    return sorted(entries.values(), key=lambda e: (e["name"], e["network"]))
