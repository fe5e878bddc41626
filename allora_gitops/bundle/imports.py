"""What the entrypoint imports, read from source: the bundle files it needs and the packages it expects.

The import probe stops at the first import that fails; this static pass follows every import of the
entrypoint module and, through them, of each bundle-local module it reaches (the runtime puts the
bundle root first on ``sys.path``, ``bootstrap.py`` ``load_entrypoint``). It answers two questions a
single import cannot: which bundle files must ship (ignore rules must not drop them) and which
third-party top-level modules the code needs (each should come from a requirement).

Imports that the code is ready to miss are not needs: inside ``try`` with an ``ImportError`` (or
broader) handler, or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILES = 2000  # a bundle's own modules; past this the scan stops rather than crawl a vendored tree

_GUARD_EXCEPTIONS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class ImportSite:
    """``module`` is imported at ``file:line`` (``file`` relative to the bundle root, ``/``-separated)."""

    module: str
    file: str
    line: int


@dataclass
class ImportGraph:
    local: dict[str, ImportSite | None] = field(default_factory=dict)  # bundle file → the import that first reached it
    external: dict[str, ImportSite] = field(default_factory=dict)  # top-level module → its first import


def module_files(root: Path, module: str) -> list[str]:
    """Bundle files that importing ``module`` executes: each package's ``__init__.py`` on the way, then the module.

    Empty when the top-level name is not in the bundle (a namespace directory counts as in the bundle).
    """
    parts = module.split(".")
    files: list[str] = []
    for i in range(1, len(parts) + 1):
        rel = "/".join(parts[:i])
        if (root / rel / "__init__.py").is_file():
            files.append(rel + "/__init__.py")
        elif (root / (rel + ".py")).is_file():
            files.append(rel + ".py")
            break  # a module, not a package: the rest are attributes
        elif not (root / rel).is_dir():
            return files if i > 1 else []
    return files


def is_local(root: Path, module: str) -> bool:
    """Does the top-level name of ``module`` resolve inside the bundle (module, package or namespace directory)?"""
    top = module.split(".", 1)[0]
    return (root / (top + ".py")).is_file() or (root / top).is_dir()


def scan_imports(root: Path, module: str) -> ImportGraph:
    """Follow the imports of bundle module ``module`` under ``root``; files that do not parse are skipped."""
    root = Path(root)
    graph = ImportGraph()
    queue: list[tuple[str, ImportSite | None]] = [(f, None) for f in module_files(root, module)]
    while queue and len(graph.local) < MAX_FILES:
        rel, site = queue.pop(0)
        if rel in graph.local:
            continue
        graph.local[rel] = site
        try:
            tree = ast.parse((root / rel).read_bytes(), rel)
        except (SyntaxError, ValueError, OSError):
            continue
        package = _package_of(rel)
        for name, line in _needed_imports(tree, package, root):
            here = ImportSite(name, rel, line)
            if is_local(root, name):
                queue.extend((f, here) for f in module_files(root, name) if f not in graph.local)
            else:
                top = name.split(".", 1)[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    graph.external.setdefault(top, here)
    return graph


def _package_of(rel: str) -> list[str]:
    parts = rel[: -len(".py")].split("/")
    return parts[:-1]  # for pkg/__init__.py the package is pkg itself; for pkg/mod.py it is pkg as well


def _needed_imports(tree: ast.Module, package: list[str], root: Path):
    """(absolute module name, line) for each import the module cannot do without."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name:
                continue
            yield name, node.lineno
            for alias in node.names:  # `from pkg import sub` imports pkg/sub.py when it is a module
                if alias.name != "*" and module_files(root, f"{name}.{alias.name}")[-1:] != module_files(root, name)[-1:]:
                    yield f"{name}.{alias.name}", node.lineno


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in _GUARD_EXCEPTIONS for n in names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
