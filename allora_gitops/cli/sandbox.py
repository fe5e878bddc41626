"""``allora-gitops sandbox BUNDLE`` and ``sandbox prune``: one-hour testnet runs with the platform's wallet."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from allora_gitops.cli.options import REPO_HELP


class _StartByDefault(TyperGroup):
    """``sandbox BUNDLE …`` means ``sandbox start BUNDLE …``; ``sandbox prune`` is the other command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(
        name="sandbox", cls=_StartByDefault, no_args_is_help=True,
        help="Run a bundle on testnet for at most an hour with the platform's sandbox wallet (`sandbox BUNDLE`), "
        "and remove sandboxes whose time is up (`sandbox prune`).",
    )  # fmt: skip

    @sandbox.command("start")
    def start_cmd(
        source: Path = typer.Argument(..., metavar="BUNDLE", help="A bundle directory (built first) or a built .tar.gz archive."),
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        duration: str = typer.Option("1h", "--duration", help="How long it runs: seconds, or 30m, 1h (at most 1h)."),
        topic_id: Optional[int] = typer.Option(None, "--topic-id", help="Topic to submit to (default: allora.topic_id)."),
        network: str = typer.Option("testnet", "--network", help="Sandboxes run on testnet only."),
        owner: Optional[str] = typer.Option(None, "--owner", help="Who runs it (default: $USER); the per-user limit counts by owner."),
        wallet_secret: Optional[str] = typer.Option(None, "--wallet-secret", help="Refused unless it names the platform's sandbox wallet."),
        image_registry: Optional[str] = typer.Option(None, "--image-registry", help="Where images are pushed, e.g. ghcr.io/org."),
        secret: Optional[list[str]] = typer.Option(None, "--secret", metavar="NAME=SECRET/KEY", help="Map model.yaml's environment.secrets entry NAME to key KEY of Secret SECRET; repeatable."),
        store: Optional[str] = typer.Option(None, "--store", help="Object store: file://DIR or s3://bucket/prefix."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded one)."),
        base: str = typer.Option("main", "--base", help="The branch Argo CD deploys."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Render BUNDLE as a batch/v1 Job under sandboxes/NAME-SHA12/ and commit it (review branch or directly, per sandbox.commit)."""
        import getpass
        import json

        from allora_gitops.cli.app import eprint
        from allora_gitops.cli.options import parse_secret_options
        from allora_gitops.sandbox import SandboxRequest, start_sandbox

        result = start_sandbox(
            SandboxRequest(
                source=source, repo=repo, owner=owner or getpass.getuser(), duration=duration, topic_id=topic_id,
                network=network, wallet_secret=wallet_secret, image_registry=image_registry, base_branch=base,
                store_url=store, database_url=database_url, secrets=parse_secret_options(secret),
            ),
            step=lambda s, m: eprint(f"==> {s}: {m}"),
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        state = f"commit {result.commit[:12]}" if result.committed else f"already there (at {result.commit[:12]})"
        typer.echo(f"sandbox {result.directory} ({result.name} {result.version}) until {result.expires_at}: {state} on {result.branch}")

    @sandbox.command("prune")
    def prune_cmd(
        repo: str = typer.Option(..., "--repo", help=REPO_HELP),
        base: str = typer.Option("main", "--base", help="The branch Argo CD deploys."),
        now: Optional[str] = typer.Option(None, "--now", help="Prune as if it were this RFC 3339 time (default: the clock)."),
        record: bool = typer.Option(True, "--record/--no-record", help="Retire the removed sandboxes' rows in the records."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help="PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded one)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; change nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Remove every sandbox directory whose time is up, in one commit on the base branch."""
        import json

        from allora_gitops.errors import UsageError
        from allora_gitops.sandbox import parse_rfc3339, prune_sandboxes, utc_now

        clock = utc_now
        if now is not None:
            moment = parse_rfc3339(now)
            if moment is None:
                raise UsageError(f"--now {now!r}: expected an RFC 3339 time such as 2026-12-01T01:00:00Z")
            clock = lambda: moment  # noqa: E731
        result = prune_sandboxes(repo, base_branch=base, clock=clock, database_url=database_url, record=record, dry_run=dry_run)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        verb = "would remove" if dry_run else "removed"
        for d in result.removed:
            typer.echo(f"{verb} {d}")
        if result.commit:
            typer.echo(f"pruned {len(result.removed)} sandbox(es): commit {result.commit[:12]} on {result.branch}")
        elif not result.removed:
            typer.echo(f"nothing to prune ({len(result.kept)} sandbox(es) still running)")

    app.add_typer(sandbox)
