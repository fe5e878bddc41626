"""Every third-party module ``allora_gitops`` imports is installed by ``pip install 'allora-gitops[platform]'``.

The platform image and operators install that extra alone; a module only the ``test`` extra brings (the chain
reader's allora-sdk, /metrics' prometheus-client once were) works in the tests and fails in production."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata

from tests.conftest import REPO_ROOT

# imported by allora_gitops but deliberately not a requirement: pip drives the interpreter a bundle runs in
NOT_REQUIRED = {"pip"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extras(requirement: str) -> list[str]:
    found = re.match(r"[^\[;]+\[([^\]]+)\]", requirement)
    return [e.strip() for e in found.group(1).split(",")] if found else []


def _platform_closure() -> set[str]:
    """Distribution names installed by the base dependencies plus the platform extra, transitively (as installed here)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    todo = [*project["dependencies"], *project["optional-dependencies"]["platform"]]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        requirement = todo.pop()
        name, extras = _name(requirement), _extras(requirement)
        if name == "allora-gitops":
            todo += [r for e in extras for r in project["optional-dependencies"][e]]
            continue
        if (name, tuple(extras)) in seen:
            continue
        seen.add((name, tuple(extras)))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for r in requires:
            if "extra ==" in r and not any(f'extra == "{e}"' in r or f"extra == '{e}'" in r for e in extras):
                continue
            todo.append(r.split(";")[0])
    return {name for name, _ in seen}


def test_every_module_the_platform_imports_comes_with_the_platform_extra():
    installed = _platform_closure()
    distributions = metadata.packages_distributions()
    missing: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "allora_gitops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("allora_gitops", "allora_runtime") or top in NOT_REQUIRED:
                    continue
                if not {d.lower().replace("_", "-") for d in distributions.get(top, [])} & installed:
                    missing.setdefault(top, set()).add(str(path.relative_to(REPO_ROOT)))
    assert missing == {}, f"imported but not installed by allora-gitops[platform]: {missing}"


def test_the_platform_extra_check_knows_the_chain_readers_modules():
    """A light install running ``chain status`` is told to add the extra, not given an internal error."""
    from allora_gitops.cli.app import PLATFORM_MODULES

    assert {"allora_sdk", "prometheus_client"} <= PLATFORM_MODULES
