"""``allora-bundle run``: local predictions through the container's own runtime (bootstrap.pyz --dry-run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from allora_gitops.cli.app import eprint
from allora_gitops.errors import AlloraGitopsError


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        path: Path = typer.Argument(Path("."), exists=True, help="The bundle directory (holding model.yaml), or an archive built by 'build'."),
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
        allow_private_artifacts: bool = typer.Option(
            False, "--allow-private-artifacts", help="Let artifacts.remote come from loopback, private or link-local addresses (refused by default)."
        ),
        prune: bool = typer.Option(
            False, "--prune", help="List and remove the cached virtualenvs (of every bundle), then exit; runs nothing."
        ),
    ) -> None:
        """Predict locally, exactly as the container does: import, timeout, value checks.

        PATH is a bundle directory or a built .tar.gz (checked, then unpacked to a
        temporary directory). Runs bootstrap.pyz --dry-run in an isolated virtualenv built from the bundle's
        requirements (cached, so later runs start at once). Prints `nonce → value
        (latency)` per nonce; exits 1 when any prediction is invalid.
        """
        import contextlib
        import json
        import sys
        import tempfile

        if prune:
            _prune(json_output)
            return

        from allora_gitops import constants as C
        from allora_gitops.runner.local import RunRequest, format_prediction, run_bundle

        with contextlib.ExitStack() as stack:
            bundle_dir = path
            if path.is_file():  # a built archive: run what ships, unpacked as the image unpacks it
                from allora_gitops.bundle.archive import extract_archive

                bundle_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="allora-run-"))) / "bundle"
                extract_archive(path, bundle_dir)
            request = RunRequest(
                bundle_dir=bundle_dir,
                nonces=tuple(nonce) if nonce else (C.SAMPLE_NONCE,),
                timeout=timeout,
                here=here,
                rebuild=rebuild,
                verbose=sys.stderr.isatty(),
                allow_private_artifacts=allow_private_artifacts,
            )
            try:
                report = run_bundle(
                    request,
                    on_prediction=(lambda p: None) if json_output else (lambda p: typer.echo(format_prediction(p))),
                    on_output=eprint,
                    progress=eprint,
                    on_warning=lambda line: eprint(f"warning: {line}"),
                )
            except AlloraGitopsError as exc:
                if not json_output:
                    raise
                # --json promises one document on stdout, also when the bundle does not load
                typer.echo(json.dumps({"ok": False, "error": _error_document(exc)}, indent=2))
                for line in exc.lines():
                    eprint(line)
                raise typer.Exit(exc.exit_code) from None
        if json_output:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        if not report.ok:
            raise typer.Exit(1)


def _error_document(exc: AlloraGitopsError) -> dict:
    """What ``run --json`` prints when there is no prediction: the error as the text lines say it, as data."""
    message = exc.message or "; ".join(str(p) for p in exc.problems)  # a ManifestError is its problems
    doc: dict = {"type": type(exc).__name__, "message": message}
    if exc.problems:
        doc["problems"] = [p.to_dict() for p in exc.problems]
    details = list(getattr(exc, "details", []))
    if details and details[0].startswith("at "):
        doc["where"] = details.pop(0)[3:]
    if details:
        doc["details"] = details
    return doc


def _prune(json_output: bool = False) -> None:
    import json

    from allora_gitops.runner.environment import environments_dir, prune_environments

    removed, busy = prune_environments()
    total = sum(e.size for e in removed)
    if json_output:
        typer.echo(json.dumps({
            "directory": str(environments_dir()),
            "removed": [{"path": str(e.path), "bytes": e.size, "complete": e.ready} for e in removed],
            "kept_in_use": [str(e.path) for e in busy],
            "freed_bytes": total,
        }, indent=2))
        return
    for env in removed:
        typer.echo(f"removed {env.path} ({env.size / (1 << 20):.1f} MB{'' if env.ready else ', incomplete'})")
    for env in busy:
        eprint(f"warning: {env.path} is in use by a running 'allora-bundle run'; kept")
    typer.echo(f"{len(removed)} cached environment{'s' if len(removed) != 1 else ''} removed from {environments_dir()}, "
               f"{total / (1 << 20):.1f} MB freed")
