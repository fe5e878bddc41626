"""``allora-gitops repo init`` and ``repo config``: create a GitOps repository, show and change its settings."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from allora_gitops.cli.options import BaseBranchOpt, BranchOpt, DryRunOpt, RepoOpt


def register(app: typer.Typer) -> None:
    repo_app = typer.Typer(help="Create GitOps repositories, show and change their settings.", no_args_is_help=True)

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
        namespace: Optional[str] = typer.Option(None, "--namespace", help="Namespace every model runs in (default: allora-models)."),
        image_registry: Optional[str] = typer.Option(None, "--image-registry", help="Registry/prefix every image is pushed to (default: localhost:5000/allora)."),
        store: Optional[str] = typer.Option(None, "--store", help="Object store of the bundle archives, file://DIR or s3://bucket/prefix (default: each operator's own)."),
        docs_url: Optional[str] = typer.Option(
            None, "--docs-url", help="Where you host the allora-gitops documentation: the alerts' runbook_url point into it (see `repo config docs_url`).",
        ),
        ci_install: Optional[str] = typer.Option(None, "--ci-install", help="The pip requirement the CI workflows install allora-gitops with (see `repo config ci.install`)."),
        monitoring: bool = typer.Option(
            True, "--monitoring/--no-monitoring",
            help="The repository's default for publish, promote and rollback: a PodMonitor and PrometheusRule per deployment.",
        ),
        monitoring_namespace: str = typer.Option(
            "monitoring", "--monitoring-namespace",
            help="The namespace Prometheus and Grafana's dashboard sidecar run in: admitted to the models' metrics port.",
        ),
    ) -> None:
        """Scaffold a GitOps repository: .allora-gitops.yaml, README, argocd/, deployments/, builds/, and CI workflows."""
        from allora_gitops import constants as C
        from allora_gitops.redact import display_url
        from allora_gitops.gitops.scaffold import default_repo_url, init_repo
        from allora_gitops.gitops.settings import RepositorySettings, validate_settings

        values = {
            "repo_url": repo_url or default_repo_url(path),
            "default_branch": branch,
            "networks": tuple(network) if network else C.NETWORKS,
            "namespace": namespace,
            "image_registry": image_registry,
            "object_store": store,
            "ci": {"install": ci_install} if ci_install else None,
            "docs_url": docs_url,
            "monitoring": monitoring,
            "monitoring_namespace": monitoring_namespace,
        }
        settings: RepositorySettings = validate_settings({k: v for k, v in values.items() if v is not None})
        result = init_repo(path, settings, bare=bare)
        kind = "bare repository" if result.bare else "repository"
        typer.echo(f"created {kind} {result.path} ({len(result.files)} files, commit {result.commit[:12]} on {result.branch})")
        typer.echo(f"Argo CD will clone {display_url(settings.repo_url)}")
        if settings.ci.install:
            typer.echo(f"CI installs {settings.ci.install} (change it with `allora-gitops repo config ci.install VALUE`)")
        else:
            from allora_gitops.cli.app import eprint

            eprint(
                "warning: CI cannot install allora-gitops yet: it is on no package index, and this one was not installed "
                "from a VCS commit or a wheel URL; until ci.install is set the workflows stop at their install step. "
                "Set it: allora-gitops repo config ci.install 'allora-gitops[platform] @ URL-OF-A-WHEEL-OR-git+URL@COMMIT'"
            )
        typer.echo("next:")
        if result.bare:
            typer.echo(f"  allora-gitops publish BUNDLE --repo {result.path} --network testnet")
            typer.echo(f"  git clone {result.path}   # to read or review it")
        else:
            typer.echo(f"  cd {result.path} && git remote add origin URL && git push -u origin {result.branch}")
            typer.echo("  allora-gitops publish BUNDLE --repo URL --network testnet")

    @repo_app.command("config")
    def config_cmd(
        key: Optional[str] = typer.Argument(None, help="A setting, dotted (e.g. namespace, dns.node_local_address, ci.install); none: show all."),
        value: Optional[str] = typer.Argument(None, help="The new value (lists comma-separated; `null` clears). None: show KEY."),
        repo: RepoOpt = ".",
        branch: BranchOpt = None,
        base: BaseBranchOpt = "main",
        dry_run: DryRunOpt = False,
    ) -> None:
        """Show the repository settings (.allora-gitops.yaml), or change one on a review branch (argocd/ and CI follow)."""
        from allora_gitops.gitops.config import change_setting, read_settings
        from allora_gitops.gitops.settings import get_setting

        if value is None:
            settings = read_settings(repo, base)
            if key is None:
                typer.echo(settings.to_yaml(), nl=False)
                return
            shown = get_setting(settings, key)
            typer.echo("null" if shown is None else ",".join(shown) if isinstance(shown, list) else str(shown))
            return
        assert key is not None
        persisted = change_setting(repo, key, value, base_branch=base, branch=branch, dry_run=dry_run)
        if dry_run:
            typer.echo(persisted.diff, nl=False)
            typer.echo(f"dry run: {len(persisted.changed)} file(s) would change on {persisted.branch}; nothing was pushed")
        elif not persisted.created:
            typer.echo(f"{key} is already {value} on {persisted.branch}; no new commit")
        else:
            typer.echo(f"set {key} on {persisted.branch}: commit {persisted.commit[:12]} ({len(persisted.changed)} file(s) changed)")
            if persisted.branch != base:
                typer.echo(f"  then merge {persisted.branch} into {base} (a pull request): the settings apply from {base}")

    app.add_typer(repo_app, name="repo")
