"""What both console scripts share: the Typer app factory, --debug/--version, and the one place errors are caught.

Kept light on purpose: ``allora-bundle --help`` imports this, so no pydantic,
Jinja, boto3, GitPython or psycopg here.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import typer

from allora_gitops import __version__
from allora_gitops.errors import AlloraGitopsError

DEBUG_ENV = "ALLORA_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


def new_app(name: str, help: str) -> typer.Typer:
    app = typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        # Rich tracebacks would print local variables, where tokens and keys live.
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain click help: rich.markdown alone would double start-up time
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"{name} {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
        debug: bool = typer.Option(
            False, "--debug", help="Show tracebacks on errors (also: ALLORA_DEBUG=1). Accepted anywhere on the line."
        ),
    ) -> None:
        if debug:
            os.environ[DEBUG_ENV] = "1"

    return app


def eprint(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app``; print our own errors as ``error: …`` lines and return the exit code."""
    for stream in (sys.stdout, sys.stderr):  # a ✓ or a file name on an ASCII terminal: escaped, never a crash
        if hasattr(stream, "reconfigure") and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # honoured wherever it stands, not only before the command
        args = [a for a in args if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"
    try:
        app(args=args, prog_name=app.info.name, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AlloraGitopsError as exc:
        if debug_enabled():
            import traceback

            traceback.print_exc()
        for line in exc.lines():
            eprint(line)
        return exc.exit_code
    except KeyboardInterrupt:
        eprint("error: interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are turned into a line
        if debug_enabled():
            import traceback

            traceback.print_exc()
        eprint(f"error: internal error ({type(exc).__name__}); run again with --debug for the traceback")
        return 1
    return 0


def entry(app: typer.Typer) -> Callable[[], None]:
    def _main() -> None:
        sys.exit(run_app(app))

    return _main
