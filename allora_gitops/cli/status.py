"""``allora-gitops list`` and ``status NAME``: what is deployed where, from the repository and the records."""

from __future__ import annotations

from typing import Optional

import typer

from allora_gitops.db.paging import MAX_LIMIT

COLUMNS = (
    ("name", "NAME"),
    ("network", "NETWORK"),
    ("version", "VERSION"),
    ("sha256", "SHA256"),
    ("status", "STATUS"),
    ("commit", "COMMIT"),
    ("image", "IMAGE"),
    ("pending", "PENDING"),
)
SANDBOX_COLUMNS = (
    ("sandbox", "SANDBOX"),
    ("version", "VERSION"),
    ("owner", "OWNER"),
    ("expires_at", "EXPIRES"),
    ("state", "STATE"),
)
REPO_HELP = "The GitOps repository (URL or path). Without it, only the records database is read."


def _table(rows: list[dict], columns=COLUMNS) -> str:
    cells = [[h for _, h in columns]] + [[_cell(k, r) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _cell(key: str, row: dict) -> str:
    value = row.get(key)
    if key == "pending":
        return ", ".join(f"{p['kind']} {p['version']} ({p['branch']})" for p in value) if value else "-"
    if key == "status" and not row.get("in_repo", True) and value and row.get("branch"):  # a retired one waits on none
        return f"{value} (review: {row.get('branch')})"
    if value is None or value == "":
        return "-"
    text = str(value)
    return text[:12] if key in ("sha256", "commit") else text


def _rows(repo, ref, name, database_url, no_db, full=None, records=None):
    from allora_gitops.cli.app import eprint
    from allora_gitops.gitops.inventory import list_deployments

    return list_deployments(repo, ref, name, database_url=database_url, use_database=not no_db, warn=eprint, full=full, records=records)


def _page(repo, ref, database_url, network, show_all, limit, after, owner, state, prefix):
    """(entries as ``list --json`` shows them, the next page's cursor): one keyset page from the records, their
    states reconciled with ``repo`` first when given."""
    from allora_gitops.db import open_records
    from allora_gitops.db.paging import DEFAULT_LIMIT, DeploymentFilter
    from allora_gitops.gitops.inventory import entries_page

    f = DeploymentFilter(owner=owner, network=network, state=state, name_prefix=prefix, include_retired=show_all)
    with open_records(database_url) as records:
        if repo:
            from allora_gitops.gitops.repo import parse_remote
            from allora_gitops.gitops.sync import reconcile

            reconcile(records, parse_remote(repo), ref)
        entries, _, next_cursor = entries_page(records, f, after=after, limit=DEFAULT_LIMIT if limit is None else limit)
    rows = [{**e, "version": e["live_version"], "in_repo": e["live"] is not None,
             "branch": e["pending"][-1]["branch"] if e["pending"] and e["live"] is None else None} for e in entries]  # fmt: skip
    return rows, next_cursor


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_cmd(
        repo: Optional[str] = typer.Option(None, "--repo", help=REPO_HELP),
        ref: str = typer.Option("main", "--ref", help="The branch Argo CD deploys."),
        network: Optional[str] = typer.Option(None, "--network", help="Only this network."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded one)."),
        no_db: bool = typer.Option(False, "--no-db", help="Read the repository only."),
        sandboxes: bool = typer.Option(False, "--sandboxes", help="List sandbox runs (owner, end time) instead of deployments."),
        show_all: bool = typer.Option(False, "--all", help="Also the retired deployments (nothing runs, nothing waits)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        limit: Optional[int] = typer.Option(None, "--limit", help=f"A page of at most this many deployments, by name (1-{MAX_LIMIT}); the next page's --after is printed on stderr."),
        after: Optional[str] = typer.Option(None, "--after", help="The cursor the previous page printed: list from there."),
        owner: Optional[str] = typer.Option(None, "--owner", help="Only this owner's deployments (pages from the records)."),
        state: Optional[str] = typer.Option(None, "--state", help="live, waiting or retired (pages from the records)."),
        prefix: Optional[str] = typer.Option(None, "--prefix", help="Only names starting with this (pages from the records)."),
    ) -> None:
        """One line per deployment (a model on a network): the version the base branch runs (live_version in
        --json), sha256, status, commit, image, and the reviews waiting (pending). With --limit, --after or a
        filter (--owner, --state, --prefix) the records are read a page at a time (docs/reference/paging.md)."""
        import json

        from allora_gitops.errors import UsageError

        if repo is None and no_db:
            raise UsageError("--no-db needs --repo: there would be nothing to read")
        if any(v is not None for v in (limit, after, owner, state, prefix)):
            if no_db or sandboxes:
                raise UsageError("--limit, --after, --owner, --state and --prefix page through the records: not with --no-db or --sandboxes")
            rows, next_cursor = _page(repo, ref, database_url, network, show_all, limit, after, owner, state, prefix)
            typer.echo(json.dumps(rows, indent=2) if as_json else _table(rows) if rows else "no deployments")
            if next_cursor is not None:
                from allora_gitops.cli.app import eprint

                eprint(f"more: run again with --after {next_cursor}")
            return
        if sandboxes:
            from allora_gitops.sandbox import list_sandboxes

            found = list_sandboxes(repo, ref, database_url=database_url, use_database=not no_db)
            if as_json:
                typer.echo(json.dumps(found, indent=2))
            else:
                typer.echo(_table(found, SANDBOX_COLUMNS) if found else "no sandboxes")
            return
        from allora_gitops.gitops.inventory import one_per_deployment

        rows = [r for r in _rows(repo, ref, None, database_url, no_db, full=as_json) if network is None or r["network"] == network]
        rows = [r for r in one_per_deployment(rows, database_url=database_url, include_retired=show_all, use_database=not no_db)
                if network is None or r["network"] == network]  # fmt: skip
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        elif rows:
            typer.echo(_table(rows))
        else:
            typer.echo("no deployments")

    @app.command("status")
    def status_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        repo: Optional[str] = typer.Option(None, "--repo", help=REPO_HELP),
        ref: str = typer.Option("main", "--ref", help="The branch Argo CD deploys."),
        network: Optional[str] = typer.Option(None, "--network", help="Only this network."),
        database_url: Optional[str] = typer.Option(None, "--database-url"),
        no_db: bool = typer.Option(False, "--no-db", help="Read the repository only."),
        last: int = typer.Option(10, "--last", min=0, help="How many recent results to show."),
        prometheus_url: Optional[str] = typer.Option(
            None, "--prometheus-url", help="Prometheus to read CPU, memory and restarts from (default: $ALLORA_PROMETHEUS_URL, else not shown)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Where NAME is deployed, what each deployment runs (version, image, topic, resources, status), its
        submission results (the last ones, success rate and latency over 1 h / 24 h / 7 d, errors) and, with a
        Prometheus URL, its CPU and memory against the limits and its restarts."""
        import json

        from allora_gitops.errors import GitOpsError, UsageError
        from allora_gitops.explorer import check_explorer_settings
        from allora_gitops.prometheus import prometheus_url_setting

        if repo is None and no_db:
            raise UsageError("--no-db needs --repo: there would be nothing to read")
        prometheus = prometheus_url_setting(prometheus_url)  # a malformed URL fails before anything is read
        check_explorer_settings()  # as does a malformed explorer template, rather than half-way through the output
        import contextlib

        from allora_gitops.gitops.inventory import one_per_deployment

        with contextlib.ExitStack() as stack:  # one connection for the whole command (each open checks the schema)
            records = None
            if not no_db and repo is None:  # with --repo the records may be down: list_deployments warns and goes on
                from allora_gitops.db import open_records

                records = stack.enter_context(open_records(database_url))
            rows = [r for r in _rows(repo, ref, name, database_url, no_db, records=records) if network is None or r["network"] == network]
            if not rows:
                where = (f" on {network}" + (f" in {ref}" if repo else "")) if network else (f" on {ref}" if repo else "")
                raise GitOpsError(f"{name} is not deployed{where} and has no live deployment record")
            entries = {(e["name"], e["network"]): e for e in one_per_deployment(rows, database_url=database_url, use_database=not no_db, records=records)}
            for r in rows:  # what runs and what waits, on every row of the deployment
                e = entries[(r["name"], r["network"])]
                r["live_version"], r["pending"] = e["live_version"], e["pending"]
            statuses = {} if no_db else _deployment_statuses(rows, database_url, last, records=records)
            chains = {} if no_db else _chain_views(rows, database_url, records=records)  # the chain reader's latest (allora_gitops/chain)
        usages = [_resources(r, prometheus) if r.get("in_repo", True) else None for r in rows]  # a change under review runs nowhere
        if as_json:
            for r, usage in zip(rows, usages):
                if r.get("deployment_id") in statuses:
                    found = statuses[r["deployment_id"]]
                    r["lifecycle"] = found.lifecycle.to_dict()
                    r["results"] = found.results_dict()
                r["resources"] = usage.to_dict() if usage else None
                if r.get("deployment_id") in chains:
                    r["chain"] = chains[r["deployment_id"]].to_dict()
            typer.echo(json.dumps(rows, indent=2))
            return
        for r, usage in zip(rows, usages):
            where = f"{r['name']} on {r['network']}" + ("" if r.get("in_repo", True) else f" (waiting for review on {r.get('branch')})")
            typer.echo(where)
            found = statuses.get(r.get("deployment_id"))
            if found is not None:
                typer.echo(f"  lifecycle: {found.lifecycle.stage} ({found.lifecycle.reason})")
            typer.echo(f"  live: {r['live_version'] or 'nothing'}")
            for p in r["pending"]:
                typer.echo(f"  pending: {p['kind']} {p['version']} on {p['branch']} ({p['status']})")
            for key, value in r.items():
                if key not in ("name", "network", "in_repo", "live_version", "pending") and value not in (None, ""):
                    typer.echo(f"  {key}: {value}")
            if found is not None:
                for line in _summary_lines(found.summary, r["network"]):
                    typer.echo(f"  {line}")
            if usage:
                typer.echo(f"  resources: {usage.summary_line()}")
            if r.get("deployment_id") in chains:
                typer.echo(f"  chain: {'; '.join(chains[r['deployment_id']].summary)}")

    @app.command("sync")
    def sync_cmd(
        repo: str = typer.Option(..., "--repo", help="The GitOps repository (URL or path)."),
        base: str = typer.Option("main", "--base", help="The branch Argo CD deploys."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded one)."),
    ) -> None:
        """Bring the records' states in line with git: committed → merged / abandoned, retiring → retired."""
        from allora_gitops.db import open_records
        from allora_gitops.gitops.repo import parse_remote
        from allora_gitops.gitops.sync import reconcile

        remote = parse_remote(repo)
        with open_records(database_url) as records:
            changes = reconcile(records, remote, base)
        for c in changes:
            typer.echo(f"{c.name} {c.version} on {c.network}: {c.old} → {c.new} ({c.reason})")
        typer.echo(f"records follow {remote.display} {base}: {len(changes)} change(s)")

    @app.command("history")
    def history_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        network: Optional[str] = typer.Option(None, "--network", help="Only this network."),
        repo: Optional[str] = typer.Option(None, "--repo", help="The GitOps repository: reconcile the states with it first."),
        base: str = typer.Option("main", "--base", help="The branch Argo CD deploys (with --repo)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded one)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        limit: Optional[int] = typer.Option(None, "--limit", help=f"A page of at most this many releases, oldest first (1-{MAX_LIMIT}); the next page's --after is printed on stderr."),
        after: Optional[str] = typer.Option(None, "--after", help="The cursor the previous page printed: continue from there."),
    ) -> None:
        """The releases of NAME per network, in the order they were made: kind (publish, promote, rollback,
        retire, pin), version, state, commit, branch, who, when. With --limit or --after, a page at a time."""
        import json

        from allora_gitops.db import open_records
        from allora_gitops.db.paging import DEFAULT_LIMIT
        from allora_gitops.errors import GitOpsError
        from allora_gitops.gitops.inventory import release_dict

        rows, next_cursor = [], None
        with open_records(database_url) as records:
            if repo:
                from allora_gitops.gitops.repo import parse_remote
                from allora_gitops.gitops.sync import reconcile

                reconcile(records, parse_remote(repo), base, name=name)
            targets = {d.id: d for d in records.list_deployment_entities(name=name, network=network)}
            if limit is None and after is None:
                releases = [r for d in targets.values() for r in records.list_releases(d.id)]
            else:
                releases, next_cursor = records.page_releases(list(targets), after=after, limit=DEFAULT_LIMIT if limit is None else limit)
            for r in releases:
                d = targets[r.deployment_id]
                rows.append({"network": d.network, "deployment_id": d.id, "live": r.id == d.live_release_id, **release_dict(r),
                             "date": r.created_at.isoformat(timespec="seconds")})  # fmt: skip
        if not rows:
            raise GitOpsError(f"{name} has no deployment records" + (f" on {network}" if network else ""))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            columns = (("kind", "KIND"), ("version", "VERSION"), ("status", "STATUS"), ("commit", "COMMIT"), ("date", "DATE"),
                       ("branch", "BRANCH"), ("by", "BY"))  # fmt: skip
            for net in dict.fromkeys(r["network"] for r in rows):
                typer.echo(net)
                table = _table([r for r in rows if r["network"] == net], columns)
                typer.echo("\n".join("  " + line for line in table.splitlines()))
        if next_cursor is not None:
            from allora_gitops.cli.app import eprint

            eprint(f"more: run again with --after {next_cursor}")


def _resources(row: dict, prometheus: Optional[str]):
    """The row's ResourceUsage; limits from the repository's overlay when the row has them (``--repo``)."""
    from allora_gitops import constants as C
    from allora_gitops.prometheus import Limits, read_resources

    known = Limits.from_quantities(row.get("cpu_limit"), row.get("memory_limit"))
    return read_resources(prometheus, C.NAMESPACE, f"{row['name']}-{row['network']}", limits=lambda: known)


def _deployment_statuses(rows: list[dict], database_url, last: int, records=None) -> dict:
    """deployment id → lifecycle.DeploymentStatus (lifecycle and results summary) for the rows the records know."""
    import contextlib

    from allora_gitops.db import open_records
    from allora_gitops.lifecycle import deployment_status

    ids = [r["deployment_id"] for r in rows if r.get("deployment_id")]
    if not ids:
        return {}
    out = {}
    with contextlib.nullcontext(records) if records is not None else open_records(database_url) as records:
        for i in ids:
            d = records.get_deployment(i)
            if d is not None:
                out[i] = deployment_status(records.connection, d, recent=last)
    return out


def _chain_views(rows: list[dict], database_url, records=None) -> dict:
    """deployment id → chain.store.ChainView (what the chain reader last stored) for the live rows."""
    import contextlib

    from allora_gitops.chain.store import chain_view, live_workers
    from allora_gitops.db import open_records

    ids = {r["deployment_id"] for r in rows if r.get("deployment_id")}
    if not ids:
        return {}
    names = {r["name"] for r in rows}
    with contextlib.nullcontext(records) if records is not None else open_records(database_url) as records:
        workers = live_workers(records.connection, name=next(iter(names))) if len(names) == 1 else live_workers(records.connection)
        return {w.deployment_id: chain_view(records.connection, w) for w in workers if w.deployment_id in ids}


def _summary_lines(summary, network: str) -> list[str]:
    """The text form of a ResultSummary: windows, errors by type, recent results (newest first, tx hashes as
    explorer links)."""
    from allora_gitops.db.results import RESULT_KINDS, WINDOWS
    from allora_gitops.errors import printable
    from allora_gitops.explorer import explorer_tx_url
    from allora_gitops.lifecycle import human_age

    if summary.last_result_at is None:
        return ["results: none reported yet"]
    lines = ["results:"]
    for kind in RESULT_KINDS:
        cells = []
        for label, _ in WINDOWS:
            w = summary.window(label, kind)
            if w is None:
                cells.append(f"{label} -")
                continue
            pct = " ".join(f"{k} {_ms(v)}" for k, v in w.latency_ms.items() if v is not None)
            cells.append(f"{label} {w.success_rate:.1%} ({w.success}/{w.total})" + (f" latency {pct}" if pct else ""))
        if any(not c.endswith(" -") for c in cells):
            lines.append(f"  {kind}s: " + "; ".join(cells))
    if summary.errors:
        longest = WINDOWS[-1][0]
        lines.append(f"errors ({longest}):")
        for e in summary.errors:
            what = e.error_type or e.reason or e.status
            extra = f" at {printable(e.last_where)}" if e.last_where else ""
            shorter = ", ".join(f"{label} {e.by_window.get(label, 0)}" for label, _ in WINDOWS[:-1])
            lines.append(f"  {e.kind} {e.status} {what} ({e.reason or '-'}) x{e.count} ({shorter}): {printable(e.last_message or '-')}{extra}")
    if summary.recent:
        lines.append("recent:")
        for r in summary.recent:
            # what a model reported (its value, its exception's message) is shown on one line, control characters
            # escaped: a multi-line message or a terminal escape sequence must not reshape the operator's terminal
            detail = printable(f"{r.value}" if r.status == "success" else f"{r.error_type or r.reason}: {r.error_message}")
            tx = f" tx {explorer_tx_url(network, r.tx_hash) or r.tx_hash}" if r.tx_hash else ""
            latency = f" {_ms(r.latency_ms)}" if r.latency_ms is not None else ""
            lines.append(f"  {r.at:%Y-%m-%d %H:%M:%S} ({human_age(r.at, summary.as_of)} ago) nonce {r.nonce} {r.kind} {r.status}{latency}{tx} {detail}")
    return lines


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10000 else f"{value / 1000:.2f} s"
