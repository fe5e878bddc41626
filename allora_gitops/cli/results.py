"""``allora-gitops results import|prune|partitions``: load the runtime's results from its log, apply retention, keep partitions."""

from __future__ import annotations

from datetime import timezone
from typing import Optional

import typer

from allora_gitops.cli.db import DATABASE_URL_HELP


def register(app: typer.Typer) -> None:
    results = typer.Typer(name="results", help="Submission results: import a runtime log, prune old results.", no_args_is_help=True)

    @results.command("import")
    def import_cmd(
        file: str = typer.Argument(..., metavar="FILE|-", help="The runtime's JSON-lines log (e.g. from kubectl logs); - reads stdin."),
        name: str = typer.Option(..., "--name", help="The bundle name of the deployment the log belongs to."),
        network: Optional[str] = typer.Option(None, "--network", help="Its network (needed when NAME is live on several)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Record every prediction and submission in FILE for NAME's live deployment.

        All or nothing: every malformed result line is reported as FILE:LINE and nothing is imported.
        Lines that are not result events are skipped and counted. Results already recorded (same nonce
        and kind) are left as they are, so importing the same log twice adds nothing. Text is stored as the
        results API stores it: bytes that are not UTF-8, NUL and lone surrogates become U+FFFD, long messages
        are cut; a time in the future is recorded as the import's time (counted in the summary).
        """
        import sys

        from allora_gitops.db import open_records
        from allora_gitops.db.results import import_results, live_deployment
        from allora_gitops.errors import UsageError
        from allora_gitops.result_log import ResultLog

        source = "<stdin>" if file == "-" else file
        with open_records(database_url) as records:
            deployment = live_deployment(records, name, network)
            log = ResultLog(source)
            if file == "-":
                import io

                stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")  # as a file is read
                counts = import_results(records.connection, deployment.id, log.rows(stdin))
            else:
                try:
                    handle = open(file, encoding="utf-8", errors="replace")
                except OSError as exc:
                    raise UsageError(f"{file}: cannot read it ({exc.strerror})") from None
                with handle:
                    counts = import_results(records.connection, deployment.id, log.rows(handle))
        typer.echo(
            f"{source}: imported {counts.inserted} new result(s) for {deployment.name} on {deployment.network}"
            f" ({counts.duplicates} already recorded) from {log.lines} line(s); skipped {log.skipped} line(s)"
            " that are not result events"
            + (f", {log.unattributed} submission failure(s) without a nonce" if log.unattributed else "")
            + (f"; {log.adjusted} result(s) dated in the future were recorded at the import's time" if log.adjusted else "")
        )

    @results.command("prune")
    def prune_cmd(
        older_than: Optional[str] = typer.Option(
            None, "--older-than", metavar="DURATION",
            help="Drop results observed longer ago than this (30d, 12h, 2w). Default: $ALLORA_RESULTS_RETENTION, else 30d.",
        ),  # fmt: skip
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Apply the retention: drop the partitions (days or weeks) of results wholly older than the given age.

        A partition only partly older is kept until it is wholly older; results outside every partition (in the
        default partition) older than the age are deleted.
        """
        from allora_gitops.db import open_records
        from allora_gitops.db.results import prune_results
        from allora_gitops.db.retention import results_retention

        text, span = results_retention(older_than)
        with open_records(database_url) as records:
            report = prune_results(records.connection, span)
        dropped = ", ".join(p.name for p in report.dropped) or "none"
        typer.echo(
            f"pruned results older than {text} (before {report.cutoff.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC):"
            f" dropped {len(report.dropped)} partition(s) ({dropped}; about {report.rows_estimate} result(s)),"
            f" deleted {report.stray_deleted} result(s) outside every partition"
        )

    @results.command("partitions")
    def partitions_cmd(
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Create the partitions ahead ($ALLORA_RESULTS_PARTITION daily|weekly, $ALLORA_RESULTS_PARTITIONS_AHEAD) and list them."""
        from allora_gitops.db import open_records
        from allora_gitops.db.result_partitions import ensure_result_partitions, result_partitions

        with open_records(database_url) as records:
            made = ensure_result_partitions(records.connection)
            for p in result_partitions(records.connection):
                span = "default (rows outside every period)" if p.start is None else f"{p.start:%Y-%m-%d %H:%M} .. {p.end:%Y-%m-%d %H:%M} UTC"
                rows = "?" if p.rows_estimate is None else f"~{p.rows_estimate}"
                typer.echo(f"{p.name}  {span}  {rows} rows")
        typer.echo(f"created {len(made or [])} partition(s)")

    app.add_typer(results)

