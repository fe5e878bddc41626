"""``allora-gitops list`` and ``status NAME``: what is deployed where."""

from __future__ import annotations

from typing import Optional

import typer

COLUMNS = (("name", "NAME"), ("network", "NETWORK"), ("version", "VERSION"), ("sha256", "SHA256"), ("image", "IMAGE"))


def _table(rows: list[dict], columns=COLUMNS) -> str:
    cells = [[h for _, h in columns]] + [[_short(k, r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _short(key: str, value) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    return text[:12] if key in ("sha256", "commit") else text


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_cmd(
        repo: str = typer.Option(..., "--repo", help="The GitOps repository: a URL, or a path (work tree or bare)."),
        ref: str = typer.Option("main", "--ref", help="The branch (what Argo CD deploys) to read."),
        network: Optional[str] = typer.Option(None, "--network", help="Only this network."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """What is deployed where: every overlay of the repository, with its version, sha256 and image."""
        import json

        from allora_gitops.gitops.inventory import list_deployments

        rows = [r for r in list_deployments(repo, ref) if network is None or r["network"] == network]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        elif rows:
            typer.echo(_table(rows))
        else:
            typer.echo("no deployments")

    @app.command("status")
    def status_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        repo: str = typer.Option(..., "--repo", help="The GitOps repository: a URL, or a path (work tree or bare)."),
        ref: str = typer.Option("main", "--ref", help="The branch (what Argo CD deploys) to read."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Where NAME is deployed: network, version, sha256, image, topic, resources."""
        import json

        from allora_gitops.errors import GitOpsError
        from allora_gitops.gitops.inventory import list_deployments

        rows = list_deployments(repo, ref, name=name)
        if not rows:
            raise GitOpsError(f"{name} is not deployed on {ref}")
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            typer.echo(f"{r['name']} on {r['network']}")
            for key, value in r.items():
                if key not in ("name", "network") and value not in (None, ""):
                    typer.echo(f"  {key}: {value}")
