"""The house has no import circles: no module imports one that (directly or not) imports it back.

Read with grimp (the graph import-linter is built on), imports inside functions included: a lazy import still
ties two modules together. A failure names each circle's pair and the chain that closes it, so the mend (move
the shared names into a module both can import) is plain.
"""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")

PACKAGES = ("allora_gitops", "allora_runtime")


def circles(graph) -> dict[tuple[str, str], list[str]]:
    """{(module, imported module): the chain of imports that leads back} for every direct import closing a circle."""
    found = {}
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back and (imported, module) not in found:
                found[(module, imported)] = list(back)
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(f"  {a} -> {b}, and back: {' -> '.join(chain)}" for (a, b), chain in found.items())


def test_the_check_sees_a_circle_when_there_is_one():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    graph.add_import(importer="allora_gitops.errors", imported="allora_gitops.publish")  # publish imports errors
    assert ("allora_gitops.errors", "allora_gitops.publish") in circles(graph) or ("allora_gitops.publish", "allora_gitops.errors") in circles(graph)
