"""``allora-gitops publish``, ``promote``, ``rollback``, ``retire``: changes to a GitOps repository, each on a review branch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from allora_gitops.cli.options import JsonOpt, with_deployment_options, with_target_options

if TYPE_CHECKING:
    from allora_gitops.publish import Target
    from allora_gitops.render import DeploymentSettings


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
        if result.nothing_to_do:
            typer.echo(f"{result.name}{version} on {result.network}: nothing to do: {result.nothing_to_do}")
        elif result.committed:
            typer.echo(f"{what} {result.name}{version} on {result.network}: commit {result.commit[:12]} on {result.branch}")
        else:
            typer.echo(f"{result.name}{version} on {result.network}: already there, no new commit (at {(result.commit or '')[:12]})")
        if result.release_id and not result.nothing_to_do:
            row = "new release" if result.deployment_created else "existing release"
            typer.echo(f"  deployment {result.deployment_id}: release {result.release_id} ({row}, {result.deployment_status})")
        if result.owner:
            typer.echo(f"  owner: {result.owner}")
    if result.summary:  # nothing to do changes nothing: what stays is still said (the wallet, out loud)
        typer.echo("  unchanged:" if result.nothing_to_do else "  what changes:")
        for line in result.summary:
            typer.echo(f"    {line}")
    if result.review and result.committed:
        typer.echo("  next:")
        for line in result.review:
            typer.echo(f"    {line}")


def register(app: typer.Typer) -> None:
    @app.command("publish")
    @with_target_options()
    @with_deployment_options()
    def publish_cmd(
        source: Path = typer.Argument(..., help="A bundle directory (built first) or a built .tar.gz archive."),
        as_json: JsonOpt = False,
        *,
        settings: "DeploymentSettings",
        target: "Target",
    ) -> None:
        """Validate, store, record, render and commit a bundle to the GitOps repository on a review branch."""
        from allora_gitops.publish import publish_bundle

        _print(publish_bundle(source, settings.network, target, settings, step=_step(as_json)), as_json)

    @app.command("promote")
    @with_target_options(owner=False)
    @with_deployment_options(network=False)
    def promote_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        from_network: str = typer.Option(..., "--from", help="The network whose version is promoted."),
        to_network: str = typer.Option(..., "--to", help="The network to deploy it on."),
        as_json: JsonOpt = False,
        *,
        settings: "DeploymentSettings",
        target: "Target",
    ) -> None:
        """Deploy on another network the version that runs on --from (a review branch)."""
        from allora_gitops.publish import promote

        _print(promote(name, from_network, to_network, target, settings, step=_step(as_json)), as_json)

    @app.command("rollback")
    @with_target_options(owner=False)
    @with_deployment_options()
    def rollback_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        to: str = typer.Option(..., "--to", help="The version to deploy again (its archive is fetched from the store)."),
        as_json: JsonOpt = False,
        *,
        settings: "DeploymentSettings",
        target: "Target",
    ) -> None:
        """Deploy an earlier version again, re-rendered from its stored archive (a review branch)."""
        from allora_gitops.publish import rollback

        _print(rollback(name, settings.network, to, target, settings, step=_step(as_json)), as_json)

    @app.command("retire")
    @with_target_options(store=False, owner=False)
    def retire_cmd(
        name: str = typer.Argument(..., help="The bundle name."),
        network: Annotated[str, typer.Option("--network", help="The network to retire it from.")] = ...,
        as_json: JsonOpt = False,
        *,
        target: "Target",
    ) -> None:
        """Remove a deployment's overlay (Argo CD prunes it once merged) on a review branch."""
        from allora_gitops.publish import retire

        _print(retire(name, network, target, step=_step(as_json)), as_json)
