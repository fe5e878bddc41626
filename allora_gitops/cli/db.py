"""``allora-gitops db upgrade|status``: apply and show the records database migrations."""

from __future__ import annotations

from typing import Optional

import typer

DATABASE_URL_HELP = (
    "PostgreSQL URL (postgresql://user@host/db). Default: $ALLORA_DATABASE_URL, "
    "else the embedded PostgreSQL under the state directory."
)


def register(app: typer.Typer) -> None:
    db = typer.Typer(name="db", help="The records database: apply and show migrations.", no_args_is_help=True)

    @db.command("upgrade")
    def upgrade_cmd(
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Apply every pending migration (each in its own transaction; safe to run concurrently), then create the
        results' partitions ahead ($ALLORA_RESULTS_PARTITION daily|weekly, $ALLORA_RESULTS_PARTITIONS_AHEAD periods)."""
        from allora_gitops.db import resolve_database_url
        from allora_gitops.db.connection import display_url
        from allora_gitops.db.migrate import MigrationRunner

        url, _ = resolve_database_url(database_url)
        applied = MigrationRunner(url).upgrade(on_applied=lambda m: typer.echo(f"applied {m.label}"))
        state = MigrationRunner(url).check()
        import psycopg

        from allora_gitops.db.result_partitions import ensure_result_partitions

        with psycopg.connect(url, autocommit=True) as conn:  # the results' periods ahead (0016), as `serve` keeps them
            made = ensure_result_partitions(conn)
        if made:
            typer.echo(f"created {len(made)} result partition(s) ({made[0].name} .. {made[-1].name})")
        if not applied:
            typer.echo(f"{display_url(url)}: up to date at version {state.current_version:04d}")
        else:
            typer.echo(f"{display_url(url)}: now at version {state.current_version:04d}")

    @db.command("status")
    def status_cmd(
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Show applied and pending migrations, and check the schema is whole (tables, functions).

        Exit 1 when a migration is pending or was edited after it was applied, or a table it created is missing.
        """
        from allora_gitops.db import resolve_database_url
        from allora_gitops.db.connection import display_url
        from allora_gitops.db.migrate import MigrationRunner

        url, embedded = resolve_database_url(database_url)
        state = MigrationRunner(url).status()
        typer.echo(f"database: {display_url(url)}{' (embedded)' if embedded else ''}")
        drifted = {m.version for m, _ in state.drifted}
        applied = {a.version: a for a in state.applied}
        for m in state.known:
            a = applied.get(m.version)
            if a is None:
                typer.echo(f"  {m.label}  pending")
            elif m.version in drifted:
                typer.echo(f"  {m.label}  EDITED after it was applied {a.applied_at:%Y-%m-%d %H:%M:%S %Z}")
            else:
                typer.echo(f"  {m.label}  applied {a.applied_at:%Y-%m-%d %H:%M:%S %Z}")
        for a in state.unknown:
            typer.echo(f"  {a.version:04d}_{a.name}  applied, unknown to this version of allora-gitops")
        for table in state.missing_tables:
            typer.echo(f"  table {table}  MISSING (its migration is recorded as applied: a partial restore?)")
        for function in state.unpinned_functions:
            typer.echo(f"  function {function}  does not pin its search_path (a pg_restore of this database would fail)")
        if state.up_to_date:
            typer.echo(f"up to date at version {state.current_version:04d}")
            return
        typer.echo(
            f"{len(state.pending)} pending; run `allora-gitops db upgrade`"
            if state.pending and not (drifted or state.unknown or state.damaged)
            else "the database does not match this version's migrations"
        )
        raise typer.Exit(1)

    app.add_typer(db)
