"""``allora-gitops repo init``: create a GitOps repository that publish can write to."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    repo_app = typer.Typer(help="Create and inspect GitOps repositories.", no_args_is_help=True)

    @repo_app.command("init")
    def init_cmd(
        path: Path = typer.Argument(..., help="Where to create the repository (must not exist, or be empty)."),
        bare: bool = typer.Option(
            False, "--bare", help="Create a bare repository (a remote to publish to), with the first commit on the default branch."
        ),
        repo_url: Optional[str] = typer.Option(
            None, "--repo-url", help="The URL Argo CD clones this repository from (default: PATH as a file:// URL)."
        ),
        branch: str = typer.Option("main", "--branch", help="The branch Argo CD deploys from."),
        network: Optional[List[str]] = typer.Option(None, "--network", help="A network this repository deploys to (repeatable; default: testnet and mainnet)."),
        monitoring: bool = typer.Option(
            True, "--monitoring/--no-monitoring",
            help="The repository's default for publish, promote and rollback: a PodMonitor and PrometheusRule per deployment.",
        ),
        monitoring_namespace: str = typer.Option(
            "monitoring", "--monitoring-namespace",
            help="The namespace Prometheus and Grafana's dashboard sidecar run in: admitted to the models' metrics port.",
        ),
    ) -> None:
        """Scaffold a GitOps repository: README, argocd/, deployments/, builds/, and a CI workflow for pull requests."""
        from allora_gitops import constants as C
        from allora_gitops.gitops.repo import redact_url
        from allora_gitops.gitops.scaffold import RepoSettings, default_repo_url, init_repo

        settings = RepoSettings(
            repo_url=repo_url or default_repo_url(path),
            repo_name=path.name.removesuffix(".git") or "allora-deployments",
            default_branch=branch,
            networks=tuple(network) if network else C.NETWORKS,
            monitoring=monitoring,
            monitoring_namespace=monitoring_namespace,
        )
        result = init_repo(path, settings, bare=bare)
        kind = "bare repository" if result.bare else "repository"
        typer.echo(f"created {kind} {result.path} ({len(result.files)} files, commit {result.commit[:12]} on {result.branch})")
        typer.echo(f"Argo CD will clone {redact_url(settings.repo_url)}")
        typer.echo("next:")
        if result.bare:
            typer.echo(f"  allora-gitops publish BUNDLE --repo {result.path} --network testnet")
            typer.echo(f"  git clone {result.path}   # to read or review it")
        else:
            typer.echo(f"  cd {result.path} && git remote add origin URL && git push -u origin {result.branch}")
            typer.echo("  allora-gitops publish BUNDLE --repo URL --network testnet")

    app.add_typer(repo_app, name="repo")
