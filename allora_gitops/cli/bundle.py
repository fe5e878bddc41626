"""``allora-bundle``: the model developer's CLI. Must start fast: heavy imports live inside commands."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from allora_gitops.cli import logs, push, run
from allora_gitops.cli.app import entry, new_app

app = new_app("allora-bundle", "Create, check, build and run Allora model bundles.")

PROGRESS_MIN_BYTES = 32 << 20  # below this a build takes well under a second: no bar


class PythonVersion(str, Enum):  # mirrors constants.SUPPORTED_PYTHON (a test keeps them equal)
    py310 = "3.10"
    py311 = "3.11"
    py312 = "3.12"
    py313 = "3.13"


class Network(str, Enum):
    testnet = "testnet"
    mainnet = "mainnet"


def _human_size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KB"
    return f"{n} B"


# --- init ---------------------------------------------------------------------


@app.command("init")
def init_cmd(
    name: str = typer.Argument(..., help="Bundle name: lowercase letters, digits and '-', at most 53 characters."),
    directory: Optional[Path] = typer.Option(None, "--dir", "-d", help="Where to create the bundle (default: ./NAME)."),
    python: PythonVersion = typer.Option(PythonVersion.py311, "--python", help="Python version of the runtime image."),
    topic_id: int = typer.Option(69, "--topic-id", min=1, help="Allora topic to submit predictions to."),
    network: Network = typer.Option(Network.testnet, "--network", help="Allora network."),
) -> None:
    """Create a new bundle from the blueprint: model.yaml, requirements.txt, src/<package>/runner.py, artifacts/."""
    from allora_gitops.bundle.scaffold import check_init, init_bundle

    target = directory if directory is not None else Path(name)
    check_init(name, target, python_version=python.value, network=network.value)  # refuse before printing anything
    shown = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"
    print(f"Creating new bundle: {name}")
    print(f"Location: {shown}")
    created = init_bundle(name, target, python_version=python.value, topic_id=topic_id, network=network.value)
    print()
    print("✅ Bundle initialized successfully!")
    print()
    print("Next steps:")
    print(f"  1. cd {target}")
    print(f"  2. Edit src/{created.package}/runner.py to implement your model")
    print("  3. Add dependencies to requirements.txt")
    print("  4. Run 'allora-bundle validate' to check your bundle")
    print("  5. Run 'allora-bundle build' to create a deployable archive")


# --- validate -----------------------------------------------------------------

# (label, problem codes it owns, what it needs to have run: "" always runs, "manifest" a loaded model.yaml,
# "tree" a readable bundle directory). A step that did not run is never shown as passed.
_IMPORT_LABEL = "entrypoint module found, imports, and its function takes the nonce"
_CHECKLIST = (
    ("model.yaml structure is valid", {"schema", "yaml", "missing", "io"}, ""),
    ("requirements parse and are pinned", {"requirements", "unpinned", "encoding"}, ""),
    (_IMPORT_LABEL,
     {"entrypoint", "import", "import-timeout", "import-unknown", "function", "not-installed", "workdir", "import-excluded",
      "remote-not-fetched"}, "manifest"),
    ("artifacts directory exists", {"artifacts"}, "manifest"),
    ("no secrets, links, unreadable names, excluded essentials or oversize content",
     {"secret", "link", "special", "size", "excluded", "import-excluded", "name"}, "tree"),
)


def _print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2))


def _print_report(report) -> None:
    out = sys.stdout
    for problem in report.problems:
        print(str(problem), file=out)
    if report.problems:
        print(file=out)
    for label, codes, needs in _CHECKLIST:
        hits = [p for p in report.problems if p.code in codes]
        ran = (needs != "manifest" or report.manifest is not None) and (needs != "tree" or report.tree is not None)
        if label == _IMPORT_LABEL and ran and not report.imported and not any(p.severity == "error" for p in hits):
            # a warning kept the import from happening (a package not installed here): never a ✓ for "imports"
            print(f"! entrypoint module found, not imported ({_not_imported_reason(hits)}); its function's signature "
                  "checked from source", file=out)
        elif any(p.severity == "error" for p in hits):
            print(f"✗ {label}", file=out)
        elif not ran:
            print(f"- {label} (not checked: {'model.yaml did not load' if needs == 'manifest' else 'the bundle could not be read'})",
                  file=out)
        else:
            print(f"{'!' if hits else '✓'} {label}", file=out)
    print(file=out)


def _not_imported_reason(hits) -> str:
    if any(p.code in ("not-installed", "import-unknown") for p in hits):
        return "a package it imports is not installed here"
    if any(p.code == "remote-not-fetched" for p in hits):
        return "it opens an artifacts.remote file validate does not fetch"
    return "the import did not run"


def _counts(report) -> str:
    e, w = len(report.errors), len(report.warnings)
    return f"{e} error{'s' if e != 1 else ''}, {w} warning{'s' if w != 1 else ''}"


@app.command("validate")
def validate_cmd(
    path: Path = typer.Argument(Path("."), exists=True, file_okay=False, dir_okay=True, help="Bundle directory."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings (e.g. unpinned requirements) as errors."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable report on stdout."),
    import_timeout: float = typer.Option(60.0, "--import-timeout", min=0.1, help="Seconds the entrypoint may take to import."),
) -> None:
    """Check a bundle: schema, requirements, entrypoint import (in a subprocess), artifacts, size, secrets, links.

    Exit 0 when valid (warnings allowed), 1 when invalid, 2 on a usage error.
    """
    from allora_gitops.bundle.validate import validate_bundle

    report = validate_bundle(path, strict, import_timeout=import_timeout, display=str(path))
    if as_json:
        _print_json(report.to_dict())
    else:
        print(f"Validating bundle at: {path}")
        _print_report(report)
        if report.ok:
            suffix = f" ({_counts(report)})" if report.warnings else ""
            print(f"✅ Bundle validation passed!{suffix}")
        else:
            print(f"❌ Bundle validation failed: {_counts(report)}")
    if not report.ok:
        raise typer.Exit(1)


# --- build --------------------------------------------------------------------


@app.command("build")
def build_cmd(
    path: Path = typer.Argument(Path("."), exists=True, file_okay=False, dir_okay=True, help="Bundle directory."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default: dist/ in the bundle)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse to build when validation has warnings."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    import_timeout: float = typer.Option(60.0, "--import-timeout", min=0.1, help="Seconds the entrypoint may take to import."),
) -> None:
    """Validate, then write DIR/NAME-VERSION.tar.gz and its .sha256: reproducible, byte for byte."""
    from allora_gitops.bundle.archive import archive_excludes, build_archive
    from allora_gitops.bundle.validate import validate_bundle

    target_dir = out_dir if out_dir is not None else path / "dist"
    excludes = archive_excludes(path, target_dir)
    report = validate_bundle(path, strict, import_timeout=import_timeout, display=str(path), extra_excludes=excludes)
    if not report.ok:
        if as_json:
            _print_json({"ok": False, "validation": report.to_dict()})
            raise typer.Exit(1)
        from allora_gitops.errors import BundleError

        raise BundleError(f"bundle {path} is invalid ({_counts(report)}); nothing was built", report.problems)
    for warning in report.warnings:
        print(str(warning), file=sys.stderr)

    from allora_gitops import constants as C

    target = target_dir / C.archive_filename(report.manifest.name, report.manifest.version)
    if not as_json:
        print(f"Building archive: {target}")
    total = report.tree.total_size if report.tree else 0
    if sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES and not as_json:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("archiving", total=total)
            built = build_archive(path, target_dir, progress=lambda n: bar.advance(task, n), tree=report.tree)
    else:
        built = build_archive(path, target_dir, tree=report.tree)
    if as_json:
        data = built.to_dict()
        data["ok"] = True
        data["sha256_file"] = str(built.sha256_path)
        data["warnings"] = [p.to_dict() for p in report.warnings]
        _print_json(data)
        return
    print("✅ Bundle built successfully!")
    print(f"   Archive: {built.path}")
    print(f"   Size: {_human_size(built.size)} ({built.file_count} files, {_human_size(built.unpacked_size)} unpacked)")
    print(f"   SHA256: {built.sha256}")


# --- inspect ------------------------------------------------------------------


@app.command("inspect")
def inspect_cmd(
    archive: Path = typer.Argument(..., exists=True, file_okay=True, dir_okay=False, help="A .tar.gz made by 'allora-bundle build'."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    files: bool = typer.Option(True, "--files/--no-files", help="List the files."),
) -> None:
    """Show name, version, python, digest and files of an archive; verify every file against its manifest.

    Nothing is extracted. Absolute paths, '..', links and devices are refused.
    """
    from allora_gitops.bundle.archive import inspect_archive

    info = inspect_archive(archive)
    if as_json:
        _print_json(info.to_dict())
        return
    m = info.manifest
    print(f"Archive:  {info.path}")
    print(f"Name:     {m.name}")
    print(f"Version:  {m.version}")
    print(f"Python:   {m.python.version}")
    print(f"Entry:    {m.entrypoint.module}:{m.entrypoint.function}")
    print(f"SHA256:   {info.sha256}")
    print(f"Size:     {_human_size(info.size)} ({info.file_count} files, {_human_size(info.unpacked_size)} unpacked)")
    if files:
        print("Files:")
        width = max((len(str(f.size)) for f in info.files), default=1)
        for f in info.files:
            print(f"  {f.mode:04o}  {f.size:>{width}}  {f.sha256[:12]}  {f.path}")
    print(f"✓ manifest verified: {info.file_count} files match their sha256")


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON schema of model.yaml (for editors: yaml-language-server, VS Code)."""
    from allora_gitops.bundle.manifest import manifest_json_schema

    import json

    print(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))


run.register(app)
push.register(app)
logs.register(app)

main = entry(app)

if __name__ == "__main__":
    main()
