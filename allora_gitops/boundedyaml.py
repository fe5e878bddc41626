"""The one way to read YAML that came from a user: bounded size, nesting depth and alias expansion.

Every YAML file a user controls (model.yaml, build.yaml, the files of a GitOps repository read by
``verify``/``diff``/``publish``, repository settings) goes through :func:`load_yaml` or
:func:`load_yaml_all`. Aliases are cheap to write and expensive to expand: nine levels of nine
aliases (the "billion laughs" shape, CVE-2019-11253 in the Kubernetes API server) is a 1 kB file
that expands to 10^9 nodes when a consumer walks it. The composed node graph shares aliased nodes,
so it stays small; we measure what it *would* expand to (one pass, memoised per node) and refuse
it before anything builds Python objects from it. go-yaml's fix for the same CVE bounds alias
expansion the same way (gopkg.in/yaml.v2 2.2.4, ``decoder.excessiveAliasing``).

Bounds are per file (:class:`YamlLimits`); the defaults fit any real manifest with a wide margin.
A file over a bound, a recursive alias, or a syntax error is one :class:`YamlError` carrying one
:class:`~allora_gitops.errors.Problem` that names the file (and line/column when known).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allora_gitops.errors import AlloraGitopsError, Problem


class YamlError(AlloraGitopsError):
    """A user's YAML file is not valid YAML or is over a :class:`YamlLimits` bound (one problem, code ``yaml``)."""


@dataclass(frozen=True)
class YamlLimits:
    """Bounds for one file.

    ``max_chars``: length of the text in characters; ``max_depth``: nesting of collections (libyaml
    refuses past 1000 on its own); ``max_nodes``: scalars + collections counted as if every alias
    were expanded in place, summed over the file's documents.
    """

    max_chars: int = 16 * 1024 * 1024
    max_depth: int = 200
    max_nodes: int = 1_000_000


LIMITS = YamlLimits()


def load_yaml(text: str, file: str, *, positions: bool = False, limits: YamlLimits = LIMITS) -> Any:
    """One YAML document as Python data (``None`` for an empty text).

    ``positions=True`` loads with ruamel's round-trip loader: mappings and sequences keep
    ``.lc`` line/column data for error messages (model.yaml); duplicate keys are an error.
    Otherwise libyaml's safe loader is used (about fifty times faster), PyYAML's pure one if
    libyaml is missing. Raises :class:`YamlError` naming ``file``.
    """
    _check_size(text, file, limits)
    if positions:
        return _load_round_trip(text, file, limits)
    docs = _load_safe(text, file, limits)
    if len(docs) > 1:
        raise YamlError(problems=[Problem("expected one YAML document, found several", file, code="yaml")])
    return docs[0] if docs else None


def load_yaml_all(text: str, file: str, *, limits: YamlLimits = LIMITS) -> list[Any]:
    """Every document of a YAML text as Python data, empty documents included as ``None``.

    Raises :class:`YamlError` naming ``file``; the node bound covers all documents together.
    """
    _check_size(text, file, limits)
    return _load_safe(text, file, limits)


def _check_size(text: str, file: str, limits: YamlLimits) -> None:
    if len(text) > limits.max_chars:
        raise YamlError(problems=[Problem(f"YAML file is larger than {limits.max_chars:,} characters; refused", file, code="yaml")])


def _load_safe(text: str, file: str, limits: YamlLimits) -> list[Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    budget = _Budget(limits, file)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            budget.measure(node)
            docs.append(loader.construct_document(node))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise YamlError(problems=[Problem(f"invalid YAML: {exc}", file, code="yaml")]) from None
    except RecursionError:
        raise _too_deep(file, limits, None) from None
    finally:
        loader.dispose()
    return docs


def _load_round_trip(text: str, file: str, limits: YamlLimits) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    rt = YAML(typ="rt")
    rt.allow_duplicate_keys = False
    constructor, parser = rt.get_constructor_parser(text)
    try:
        node = constructor.composer.get_single_node()
        if node is None:
            return None
        _Budget(limits, file).measure(node)
        return constructor.construct_document(node)
    except MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except YAMLError as exc:
        raise YamlError(problems=[Problem(f"invalid YAML: {exc}", file, code="yaml")]) from None
    except RecursionError:  # ruamel's composer is recursive Python: deep nesting ends here before the budget sees it
        raise _too_deep(file, limits, None) from None
    finally:
        parser.dispose()


def _syntax_error(exc: Any, file: str) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    reason = (exc.problem or exc.context or "invalid YAML").strip()
    return YamlError(problems=[Problem(f"invalid YAML: {reason}", file, line, col, code="yaml")])


def _too_deep(file: str, limits: YamlLimits, mark: Any) -> YamlError:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return YamlError(problems=[Problem(f"YAML nested deeper than {limits.max_depth} levels; refused", file, line, col, code="yaml")])


class _Budget:
    """Expanded node count and depth of composed documents, without expanding them.

    Works on PyYAML and ruamel nodes alike (``.value`` is a list of nodes for a sequence, of
    ``(key, value)`` node pairs for a mapping, a string for a scalar). Iterative, so a deep file
    cannot exhaust the Python stack here; memoised by node identity, so an alias costs one lookup.
    """

    def __init__(self, limits: YamlLimits, file: str):
        self.limits = limits
        self.file = file
        self.total = 0

    def measure(self, root: Any) -> None:
        limits = self.limits
        memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
        open_nodes: set[int] = set()
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            if children_done:
                open_nodes.discard(key)
                size, depth = 1, 0
                for child in _children(node):
                    child_size, child_depth = memo[id(child)]
                    size += child_size
                    depth = max(depth, child_depth)
                depth += 1
                if depth > limits.max_depth:
                    raise _too_deep(self.file, limits, getattr(node, "start_mark", None))
                if size + self.total > limits.max_nodes:
                    raise self._too_many(node)
                memo[key] = (size, depth)
                continue
            if key in memo:
                continue
            if key in open_nodes:
                raise self._problem("YAML alias refers to a node that contains it (a recursive structure); refused", node)
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in memo)
        self.total += memo[id(root)][0]

    def _too_many(self, node: Any) -> YamlError:
        return self._problem(
            f"YAML holds more than {self.limits.max_nodes:,} values once aliases are expanded (an alias bomb?); refused", node
        )

    def _problem(self, message: str, node: Any) -> YamlError:
        mark = getattr(node, "start_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return YamlError(problems=[Problem(message, self.file, line, col, code="yaml")])


def _children(node: Any) -> list[Any]:
    value = node.value
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):
            return [part for pair in value for part in pair]
        return value
    return []
