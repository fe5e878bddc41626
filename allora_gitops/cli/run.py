"""``allora-bundle run``: local predictions through the container's own runtime (bootstrap.pyz --dry-run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from allora_gitops.cli.app import eprint


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        path: Path = typer.Argument(Path("."), help="The bundle directory (holding model.yaml)."),
        nonce: Optional[list[int]] = typer.Option(
            None, "--nonce", "-n", metavar="N", help="A nonce (block height) to predict; repeat for more. Default: 1000."
        ),
        timeout: Optional[float] = typer.Option(
            None, "--timeout", min=0.001, metavar="S", help="Seconds per call (default: model.yaml runtime.max_seconds)."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print one JSON document instead of one line per nonce."),
        here: bool = typer.Option(
            False, "--here", help="Use the current interpreter instead of the bundle's cached virtualenv."
        ),
        rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the cached virtualenv first."),
    ) -> None:
        """Predict locally, exactly as the container does: import, timeout, value checks.

        Runs bootstrap.pyz --dry-run in an isolated virtualenv built from the bundle's
        requirements (cached, so later runs start at once). Prints `nonce → value
        (latency)` per nonce; exits 1 when any prediction is invalid.
        """
        import json

        from allora_gitops import constants as C
        from allora_gitops.runner.local import RunRequest, format_prediction, run_bundle

        request = RunRequest(
            bundle_dir=path,
            nonces=tuple(nonce) if nonce else (C.SAMPLE_NONCE,),
            timeout=timeout,
            here=here,
            rebuild=rebuild,
        )
        report = run_bundle(
            request,
            on_prediction=(lambda p: None) if json_output else (lambda p: typer.echo(format_prediction(p))),
            on_output=eprint,
            progress=eprint,
        )
        if json_output:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        if not report.ok:
            raise typer.Exit(1)
