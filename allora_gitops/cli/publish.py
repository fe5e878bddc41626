"""``allora-gitops publish``, ``promote``, ``rollback``, ``retire``: changes to a GitOps repository, each on a review branch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

REPO_HELP = "The GitOps repository: a URL or a path (a bare repository works). Must be initialised by `repo init`."


def _step(as_json: bool):
    from allora_gitops.cli.app import eprint

    def say(step: str, message: str) -> None:
        eprint(f"==> {step}: {message}")

    return say


def _print(result, as_json: bool) -> None:
    import json

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if result.dry_run:
        typer.echo(result.diff, nl=False)
        typer.echo(f"dry run: {len(result.changed_files)} file(s) would change on {result.branch}; nothing was changed")
    else:
        what = {"publish": "published", "promote": "promoted", "rollback": "rolled back", "retire": "retired"}[result.action]
        version = f" {result.version}" if result.version and result.action != "retire" else ""
        if result.committed:
            typer.echo(f"{what} {result.name}{version} on {result.network}: commit {result.commit[:12]} on {result.branch}")
        else:
            typer.echo(f"{result.name}{version} on {result.network}: already there, no new commit (at {(result.commit or '')[:12]})")
        if result.deployment_id:
            row = "new row" if result.deployment_created else "existing row"
            typer.echo(f"  deployment {result.deployment_id} ({row}, {result.deployment_status})")
    if result.summary:
        typer.echo("  what changes:")
        for line in result.summary:
            typer.echo(f"    {line}")
    if result.review and result.committed:
        typer.echo("  next:")
        for line in result.review:
            typer.echo(f"    {line}")


MONITORING_HELP = "Render a PodMonitor and PrometheusRule for the deployment (default: the repository's `monitoring:`, else on)."
THRESHOLD_HELP = "AlloraLowWalletBalance fires below this many uallo (default: the repository's `low_balance_threshold_uallo:`, else 10^18 = 1 ALLO)."


def _options(**kw):
    from allora_gitops.publish import DeploymentOptions

    return DeploymentOptions(**kw)


def register(app: typer.Typer) -> None:
    @app.command("publish")
    def publish_cmd(
        source: Path = typer.Argument(..., help="A bundle directory (built first) or a built .tar.gz archive."),
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        network: str = typer.Option(..., "--network", help="testnet or mainnet."),
        topic_id: Optional[int] = typer.Option(None, "--topic-id", help="Topic to submit to (default: allora.topic_id)."),
        fee_tier: Optional[str] = typer.Option(None, "--fee-tier", help="ECO, STANDARD or PRIORITY."),
        polling_interval: Optional[int] = typer.Option(None, "--polling-interval", help="Seconds between polls."),
        cpu: Optional[str] = typer.Option(None, "--cpu", help="CPU request, e.g. 250m."),
        cpu_limit: Optional[str] = typer.Option(None, "--cpu-limit", help="CPU limit (default: twice the request)."),
        memory: Optional[str] = typer.Option(None, "--memory", help="Memory request and limit, e.g. 512Mi."),
        image_registry: Optional[str] = typer.Option(None, "--image-registry", help="Where images are pushed, e.g. ghcr.io/org."),
        wallet_secret: Optional[str] = typer.Option(None, "--wallet-secret", help="Name of the Kubernetes Secret holding the wallet."),
        secret_store: Optional[str] = typer.Option(None, "--secret-store", help="An external-secrets store to create the wallet Secret from."),
        base_image: Optional[str] = typer.Option(None, "--base-image", help="Base image (default python:<version>-slim); pin with @sha256:…"),
        monitoring: Optional[bool] = typer.Option(None, "--monitoring/--no-monitoring", help=MONITORING_HELP),
        low_balance_threshold: Optional[int] = typer.Option(None, "--low-balance-threshold", min=0, metavar="UALLO", help=THRESHOLD_HELP),
        store: Optional[str] = typer.Option(None, "--store", help="Object store: file://DIR or s3://bucket/prefix (default: under the state directory)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else an embedded server)."),
        branch: Optional[str] = typer.Option(None, "--branch", help="Branch to commit on (default deploy/NAME/NETWORK/VERSION; `main` commits directly)."),
        base: str = typer.Option("main", "--base", help="The branch Argo CD deploys; review branches start from it."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show the file diff; upload, record and push nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (steps still go to stderr)."),
    ) -> None:
        """Validate, store, record, render and commit a bundle to the GitOps repository on a review branch."""
        from allora_gitops.publish import Target, publish_bundle

        target = Target(repo=repo, branch=branch, base_branch=base, store_url=store, database_url=database_url, dry_run=dry_run)
        options = _options(
            topic_id=topic_id, fee_tier=fee_tier, polling_interval=polling_interval, cpu=cpu, cpu_limit=cpu_limit,
            memory=memory, image_registry=image_registry, wallet_secret=wallet_secret, secret_store=secret_store,
            base_image=base_image, monitoring=monitoring, low_balance_threshold=low_balance_threshold,
        )  # fmt: skip
        _print(publish_bundle(source, network, target, options, step=_step(as_json)), as_json)

    @app.command("promote")
    def promote_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        from_network: str = typer.Option(..., "--from", help="The network whose version is promoted."),
        to_network: str = typer.Option(..., "--to", help="The network to deploy it on."),
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        topic_id: Optional[int] = typer.Option(None, "--topic-id", help="Topic on the target network (default: the last one used there, else model.yaml)."),
        fee_tier: Optional[str] = typer.Option(None, "--fee-tier"),
        wallet_secret: Optional[str] = typer.Option(None, "--wallet-secret"),
        monitoring: Optional[bool] = typer.Option(None, "--monitoring/--no-monitoring", help=MONITORING_HELP),
        low_balance_threshold: Optional[int] = typer.Option(None, "--low-balance-threshold", min=0, metavar="UALLO", help=THRESHOLD_HELP),
        store: Optional[str] = typer.Option(None, "--store"),
        database_url: Optional[str] = typer.Option(None, "--database-url"),
        branch: Optional[str] = typer.Option(None, "--branch", help="Default promote/NAME/NETWORK/VERSION."),
        base: str = typer.Option("main", "--base"),
        dry_run: bool = typer.Option(False, "--dry-run"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Deploy on another network the version that runs on --from (a review branch)."""
        from allora_gitops.publish import Target, promote

        target = Target(repo=repo, branch=branch, base_branch=base, store_url=store, database_url=database_url, dry_run=dry_run)
        options = _options(topic_id=topic_id, fee_tier=fee_tier, wallet_secret=wallet_secret, monitoring=monitoring,
            low_balance_threshold=low_balance_threshold,
        )
        _print(promote(name, from_network, to_network, target, options, step=_step(as_json)), as_json)

    @app.command("rollback")
    def rollback_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        network: str = typer.Option(..., "--network"),
        to: str = typer.Option(..., "--to", help="The version to deploy again (its archive is fetched from the store)."),
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        topic_id: Optional[int] = typer.Option(None, "--topic-id", help="Default: what that version used on this network."),
        monitoring: Optional[bool] = typer.Option(None, "--monitoring/--no-monitoring", help=MONITORING_HELP),
        low_balance_threshold: Optional[int] = typer.Option(None, "--low-balance-threshold", min=0, metavar="UALLO", help=THRESHOLD_HELP),
        store: Optional[str] = typer.Option(None, "--store"),
        database_url: Optional[str] = typer.Option(None, "--database-url"),
        branch: Optional[str] = typer.Option(None, "--branch", help="Default rollback/NAME/NETWORK/VERSION."),
        base: str = typer.Option("main", "--base"),
        dry_run: bool = typer.Option(False, "--dry-run"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Deploy an earlier version again, re-rendered from its stored archive (a review branch)."""
        from allora_gitops.publish import Target, rollback

        target = Target(repo=repo, branch=branch, base_branch=base, store_url=store, database_url=database_url, dry_run=dry_run)
        _print(rollback(name, network, to, target, _options(topic_id=topic_id, monitoring=monitoring, low_balance_threshold=low_balance_threshold), step=_step(as_json)), as_json)

    @app.command("retire")
    def retire_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        network: str = typer.Option(..., "--network"),
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        database_url: Optional[str] = typer.Option(None, "--database-url"),
        branch: Optional[str] = typer.Option(None, "--branch", help="Default retire/NAME/NETWORK."),
        base: str = typer.Option("main", "--base"),
        dry_run: bool = typer.Option(False, "--dry-run"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Remove a deployment's overlay (Argo CD prunes it once merged) on a review branch."""
        from allora_gitops.publish import Target, retire

        target = Target(repo=repo, branch=branch, base_branch=base, database_url=database_url, dry_run=dry_run)
        _print(retire(name, network, target, step=_step(as_json)), as_json)
