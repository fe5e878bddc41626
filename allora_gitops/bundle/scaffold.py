"""``allora-bundle init``: a new bundle from the cookiecutter blueprint in ``blueprints/bundle``.

Rendered into a temporary directory beside the target and moved into place,
so a failure never leaves half a bundle, and ``--dir`` may name any directory.
"""

from __future__ import annotations

import keyword
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from allora_gitops import constants as C
from allora_gitops.bundle.manifest import check_bundle_name
from allora_gitops.errors import BundleError, Problem
from allora_gitops.resources import blueprints_dir


@dataclass(frozen=True)
class ScaffoldedBundle:
    path: Path
    name: str
    package: str


def package_name(name: str) -> str:
    """The Python package for bundle ``name``: '-' becomes '_', and it must not start with a digit or be a keyword."""
    package = name.replace("-", "_")
    if package[:1].isdigit() or keyword.iskeyword(package):
        package = f"model_{package}"
    return package


def check_init(name: str, target: Path, *, python_version: str = C.DEFAULT_PYTHON, network: str = "testnet") -> None:
    """Refuse what ``init_bundle`` would refuse, before anything is printed or written. Raises BundleError."""
    try:
        check_bundle_name(name)
    except ValueError as exc:
        raise BundleError(f"invalid bundle name: {exc}") from None
    if python_version not in C.SUPPORTED_PYTHON:
        raise BundleError(f"Python {python_version} is not supported; use one of {', '.join(C.SUPPORTED_PYTHON)}")
    if network not in C.NETWORKS:
        raise BundleError(f"unknown network {network!r}; use one of {', '.join(C.NETWORKS)}")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise BundleError(f"{target} exists and is not a directory")
    existing = next(p for p in target.absolute().parents if p.exists())  # the directory init would create under
    if not target.exists() and not existing.is_dir():
        raise BundleError(f"cannot create {target}: {existing} is a file, not a directory")
    if not target.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise BundleError(f"cannot create {target}: {existing} is not writable")
    if target.is_dir() and any(target.iterdir()):
        raise BundleError(f"{target} already exists and is not empty; choose another name or --dir")


def init_bundle(
    name: str,
    target: Path,
    *,
    python_version: str = C.DEFAULT_PYTHON,
    topic_id: int = 69,
    network: str = "testnet",
    version: str = "0.1.0",
    blueprint: Optional[Path] = None,
) -> ScaffoldedBundle:
    """Create the bundle ``name`` in ``target`` (absent or empty). Raises BundleError on a bad name or a non-empty dir.

    ``blueprint``: the cookiecutter template (default: ``blueprints/bundle``). Bytecode in it (pip compiles the
    blueprint's ``.py`` files when it installs the wheel) never reaches the new bundle.
    """
    check_init(name, target, python_version=python_version, network=network)
    target = Path(target)

    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.generate import generate_context, generate_files
    from cookiecutter.prompt import prompt_for_config

    package = package_name(name)
    template = blueprint if blueprint is not None else blueprints_dir() / "bundle"
    context = generate_context(
        context_file=str(template / "cookiecutter.json"),
        extra_context={"name": name, "package": package, "version": version, "python_version": python_version,
                       "topic_id": str(topic_id), "network": network},
    )
    context["cookiecutter"] = prompt_for_config(context, no_input=True)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    try:
        try:
            rendered = Path(generate_files(template, context, output_dir=staging, accept_hooks=False))
        except CookiecutterException as exc:
            raise BundleError("the bundle blueprint failed to render", [Problem(str(exc), str(template))]) from None
        _drop_bytecode(rendered)
        if target.is_dir():
            for child in rendered.iterdir():
                shutil.move(str(child), target / child.name)
        else:
            rendered.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ScaffoldedBundle(target, name, package)


def _drop_bytecode(root: Path) -> None:
    """Remove ``__pycache__`` directories and stray ``.pyc`` files the blueprint carried."""
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in root.rglob("*.py[co]"):
        compiled.unlink(missing_ok=True)
