"""``allora-bundle login`` and ``push``: the client side of the platform API (like ``truss push``, ``cog push``)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

PLATFORM_HELP = "The platform's URL (default: $ALLORA_PLATFORM_URL, else the one `allora-bundle login` saved)."


def register(app: typer.Typer) -> None:
    @app.command("login")
    def login_cmd(
        platform: str = typer.Option(..., "--platform", help="The platform's URL, e.g. https://platform.example.com."),
    ) -> None:
        """Save an API token for PLATFORM (read from stdin or a hidden prompt) in your config dir, mode 0600."""
        from allora_gitops.api.client import Credentials, PlatformClient, cleartext_warning, save_credentials
        from allora_gitops.cli.app import eprint

        if warning := cleartext_warning(platform):
            eprint(warning)
        token = sys.stdin.readline().strip() if not sys.stdin.isatty() else typer.prompt("API token", hide_input=True).strip()
        credentials = Credentials(platform.rstrip("/"), token)
        with PlatformClient(credentials) as client:
            client.whoami_check()  # refuse to save a token the platform does not accept
        path = save_credentials(credentials.platform, token)
        typer.echo(f"logged in to {credentials.platform}; token saved in {path}")

    @app.command("push")
    def push_cmd(
        path: Path = typer.Argument(Path("."), help="A bundle directory (validated and built first) or a built .tar.gz."),
        platform: Optional[str] = typer.Option(None, "--platform", help=PLATFORM_HELP),
        deploy: bool = typer.Option(False, "--deploy", help="Also ask for a deployment: a review branch in the GitOps repository."),
        network: Optional[str] = typer.Option(None, "--network", help="testnet or mainnet (default: allora.network in model.yaml)."),
        wallet: Optional[str] = typer.Option(
            None, "--wallet", help="Name of a wallet Secret assigned to you (default on testnet: your only one; mainnet needs it named)."
        ),
        topic_id: Optional[int] = typer.Option(None, "--topic-id", min=1, help="Default: allora.topic_id in model.yaml."),
        as_json: bool = typer.Option(False, "--json", help="Print the platform's answers as JSON."),
    ) -> None:
        """Upload a bundle to the platform, and with --deploy ask for its deployment (prints the review branch)."""
        from allora_gitops.api.client import PlatformClient, cleartext_warning, load_credentials
        from allora_gitops.cli.app import eprint

        if deploy and network == "mainnet" and not wallet:  # the platform refuses it too: say so before any upload
            from allora_gitops.errors import UsageError

            raise UsageError("a mainnet deployment needs its wallet named: give --wallet NAME (the Secret holding the wallet)")
        credentials = load_credentials(platform)
        if warning := cleartext_warning(credentials.platform):
            eprint(warning)
        with tempfile.TemporaryDirectory(prefix="allora-push-") as tmp, PlatformClient(credentials) as client:
            archive = _archive(path, Path(tmp))
            eprint(f"==> push: {archive.name} ({archive.stat().st_size} bytes) to {credentials.platform}")
            uploaded = _upload(client, archive, archive.stat().st_size, as_json)
            name, version = uploaded["name"], uploaded["version"]
            result = {"bundle": uploaded}
            if not as_json:
                state = "uploaded" if uploaded.get("created") else "already on the platform"
                typer.echo(f"{state}: {name} {version} sha256 {uploaded['sha256']}")
                for warning in uploaded.get("warnings") or []:
                    eprint(f"warning: {warning}")
            if deploy:
                request: dict = {"bundle": {"name": name, "version": version}}  # the platform defaults the rest from model.yaml
                for key, value in (("network", network), ("wallet", wallet), ("topic_id", topic_id)):
                    if value:
                        request[key] = value
                eprint(f"==> deploy: {name} {version} (the publish pipeline runs on the platform)")
                result["deployment"] = change = client.deploy(request)
                if not as_json:
                    _print_change(change)
        if as_json:
            typer.echo(json.dumps(result, indent=2))


def _archive(path: Path, work_dir: Path) -> Path:
    """A built archive to send: a directory is validated and built here (so mistakes show before any upload);
    an archive is sent as it is — the platform inspects it with the same checks as `allora-bundle inspect`."""
    from allora_gitops.bundle.source import resolve_source
    from allora_gitops.errors import BundleError

    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise BundleError(f"{path} is neither a bundle directory nor a .tar.gz archive")
        return path
    return resolve_source(path, work_dir).path


def _upload(client, archive: Path, size: int, quiet: bool) -> dict:
    if quiet or not sys.stderr.isatty():
        return client.upload(archive)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("uploading", total=size)
        return client.upload(archive, progress=lambda n: bar.advance(task, n))


def _print_change(change: dict) -> None:
    if change.get("nothing_to_do"):
        typer.echo(f"deployment {change.get('deployment_id')}: nothing to do: {change['nothing_to_do']}")
        if change.get("wallet"):
            typer.echo(f"  wallet: {change['wallet']}")
        return
    if change.get("committed"):
        typer.echo(f"deployment {change.get('deployment_id')}: commit {(change.get('commit') or '')[:12]} on {change['branch']}")
    else:
        typer.echo(f"deployment {change.get('deployment_id')}: already on {change['branch']}, no new commit")
    if change.get("compare_url"):
        typer.echo(f"  review: {change['compare_url']}")
    if change.get("summary"):
        typer.echo("  what changes:")
        for line in change["summary"]:
            typer.echo(f"    {line}")
    typer.echo(f"  next: merge {change['branch']} into {change['base_branch']} (a pull request) to deploy")
