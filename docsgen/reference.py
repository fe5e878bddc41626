"""The reference pages whose truth is the code, rendered as Markdown (pure: text in, text out; no mkdocs here).

Each ``render_*`` returns one page. ``PAGES`` maps a path under ``docs/`` to its renderer; ``docsgen/hooks.py``
adds them to the mkdocs build, so the site never carries a hand-copied table that can drift from the code.
Sources: the typer apps (CLI), ``BundleManifest``'s JSON schema (model.yaml), the FastAPI app's OpenAPI
document (HTTP API), the runtime's and the chain reader's Prometheus registries and ``render/monitoring.py``'s
alert table (metrics and alerts), ``RepositorySettings`` and the modules that name environment variables
(settings), and the packages' docstrings (the architecture page's module map).
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path
from typing import Any, Callable, Iterable

import allora_gitops

# The checkout whose code is imported (the pages describe the code the build imports; examples/ beside it).
ROOT = Path(allora_gitops.__file__).resolve().parents[1]
GENERATED = "<!-- Generated from the code by docsgen/reference.py at build time: edit the code, not this page. -->\n\n"


def _cell(text: Any) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    text = "" if text is None else str(text)
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: Any) -> str:
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(rows_cell for rows_cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the command line -------------------------------------------------------------------------------------


def _commands(command, path: tuple[str, ...]):
    """``(path, click command)`` depth first, the group itself first; hidden commands left out."""
    yield path, command
    if hasattr(command, "commands"):  # a group (typer vendors its own click: no isinstance against click's)
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not getattr(sub, "hidden", False):
                yield from _commands(sub, (*path, name))


def _kind(annotation) -> str:
    """A parameter's value type in words: ``int``, ``path``, one of the choices, ``… (repeatable)``."""
    import enum
    import typing

    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _kind(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _kind(args[0])
    if origin in (list, tuple, typing.List, typing.Tuple) and args:
        return _kind(args[0]) + ", repeatable"
    if origin is typing.Literal:
        return ", ".join(_code(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ", ".join(_code(m.value) for m in annotation)
    name = getattr(annotation, "__name__", str(annotation))
    return {"str": "text", "Path": "path", "bool": "flag", "float": "number", "int": "integer"}.get(name, name.lower())


def _param_row(param) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    kind = _kind(descriptor.annotation) if descriptor is not None else ""
    if param.param_type_name == "argument":
        name = _code(param.name.upper())
        kind = "argument: " + kind + ("" if param.required else ", optional")
    else:
        name = " / ".join(_code(f) for f in [*param.opts, *param.secondary_opts])
        if getattr(param, "is_flag", False):
            kind = "flag"
    if getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
        kind += f" ({'' if param.min is None else param.min}…{'' if param.max is None else param.max})"
    default = param.default
    shown = "" if default is None or default == () or default == [] or callable(default) or (getattr(param, "is_flag", False) and default is False) else _code(default)
    return [name, _cell(kind), shown, _cell(getattr(param, "help", "") or "")]


def render_cli(prog: str, app) -> str:
    """The reference of one typer app: every command, its help, arguments and options."""
    import typer

    root = typer.main.get_command(app)
    out = [f"# `{prog}` command line\n\n", GENERATED]
    out.append(f"{_cell(root.help)}\n\nEvery command takes `--help`; `--debug` (before the command) shows tracebacks.\n")
    for path, command in _commands(root, ()):
        if not path:
            continue
        name = " ".join((prog, *path))
        out.append(f"\n## `{name}`\n\n")
        if command.help:
            out.append(command.help.strip().replace("\b\n", "") + "\n\n")
        params = [p for p in command.params if p.name not in ("help",) and not getattr(p, "hidden", False)]
        if params:
            out.append(_table(["argument / option", "kind", "default", "description"], (_param_row(p) for p in params)))
    return "".join(out)


def render_cli_bundle() -> str:
    from allora_gitops.cli.bundle import app

    return render_cli("allora-bundle", app)


def render_cli_gitops() -> str:
    from allora_gitops.cli.gitops import app

    return render_cli("allora-gitops", app)


# --- model.yaml ------------------------------------------------------------------------------------------


def _schema_type(node: dict, defs: dict) -> str:
    if "$ref" in node:
        return _schema_type(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    if "enum" in node:
        return " \\| ".join(_code(json.dumps(v)) for v in node["enum"])
    if "const" in node:
        return _code(json.dumps(node["const"]))
    if "anyOf" in node:
        return " or ".join(_schema_type(n, defs) for n in node["anyOf"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(node.get('items', {}), defs)}"
    if kind == "object" and "properties" not in node:
        extra = node.get("additionalProperties")
        return f"mapping of {_schema_type(extra, defs)}" if isinstance(extra, dict) else "mapping"
    return "section" if kind == "object" else kind


def _schema_rows(node: dict, defs: dict, prefix: str):
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:  # Optional[Section]: describe the section
        for option in node["anyOf"]:
            resolved = defs[option["$ref"].rsplit("/", 1)[1]] if "$ref" in option else option
            if "properties" in resolved:
                node = resolved
                break
    required = set(node.get("required", ()))
    for key, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        target = defs[sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        description = sub.get("description") or target.get("description", "")
        default = sub.get("default", target.get("default"))
        shown_default = "" if key in required or default is None else _code(json.dumps(default))
        yield [_code(dotted), _schema_type(sub, defs), "yes" if key in required else "", shown_default, _cell(description)]
        nested = target
        if "anyOf" in sub:
            nested = next((defs[o["$ref"].rsplit("/", 1)[1]] for o in sub["anyOf"] if "$ref" in o), {})
        if "properties" in nested:
            yield from _schema_rows(nested, defs, dotted + ".")
        items = nested.get("items") if nested.get("type") == "array" else None
        if items:
            item = defs[items["$ref"].rsplit("/", 1)[1]] if "$ref" in items else items
            if "properties" in item:
                yield from _schema_rows(item, defs, dotted + "[].")


def render_model_yaml() -> str:
    """``model.yaml`` key by key, from the JSON schema ``allora-bundle schema`` prints."""
    from allora_gitops.bundle.manifest import manifest_json_schema

    schema = manifest_json_schema()
    defs = schema.get("$defs", {})
    out = ["# `model.yaml` reference\n\n", GENERATED]
    if schema.get("description"):
        out.append(_cell(schema["description"]) + "\n\n")
    out.append(
        "Every key of a bundle's `model.yaml`; unknown keys are errors. `allora-bundle schema > model.schema.json` "
        "prints the same JSON schema for your editor (yaml-language-server, VS Code). How the keys are used: "
        "[bundles](bundles.md).\n\n"
    )
    out.append(_table(["key", "type", "required", "default", "description"], _schema_rows(schema, defs, "")))
    return "".join(out)


# --- the HTTP API ----------------------------------------------------------------------------------------


def openapi_document() -> dict:
    from allora_gitops.api.app import create_app
    from allora_gitops.api.settings import ApiSettings

    return create_app(ApiSettings(repo="file:///nonexistent")).openapi()


def _ref_name(node: dict) -> str:
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[1]
    if node.get("type") == "array" and "items" in node:
        return f"list of {_ref_name(node['items'])}"
    if "anyOf" in node:
        return " or ".join(_ref_name(n) for n in node["anyOf"])
    return node.get("type", "object")


def render_http_api() -> str:
    """Every route of ``allora-gitops serve`` from its OpenAPI document (``GET /api/openapi.json``)."""
    doc = openapi_document()
    out = [f"# HTTP API reference\n\n", GENERATED]
    info = doc.get("info", {})
    out.append(
        f"{_cell(info.get('description', ''))}\n\nOpenAPI {doc.get('openapi')} document of `{info.get('title')}`, API version "
        f"`{info.get('version')}`: `GET /api/openapi.json` on a running server, browsable at `/api/docs`. Behaviour in depth: "
        "[platform API](platform-api.md).\n"
    )
    groups: dict[str, list] = {}
    for path, methods in doc.get("paths", {}).items():
        for method, op in methods.items():
            groups.setdefault((op.get("tags") or ["other"])[0], []).append((path, method.upper(), op))
    for tag in sorted(groups):
        out.append(f"\n## {tag}\n")
        for path, method, op in groups[tag]:
            out.append(f"\n### `{method} {path}`\n\n")
            if op.get("summary"):
                out.append(f"**{_cell(op['summary'])}**\n\n")
            if op.get("description"):
                out.append(op["description"].strip() + "\n\n")
            params = op.get("parameters", [])
            if params:
                out.append(_table(
                    ["parameter", "in", "required", "type", "description"],
                    ([_code(p["name"]), p["in"], "yes" if p.get("required") else "", _cell(_ref_name(p.get("schema", {}))),
                      _cell(p.get("description", ""))] for p in params),
                ))  # fmt: skip
                out.append("\n")
            body = op.get("requestBody")
            if body:
                kinds = ", ".join(f"{_code(k)} ({_cell(_ref_name(v.get('schema', {})))})" for k, v in body.get("content", {}).items())
                out.append(f"Request body{' (required)' if body.get('required') else ''}: {kinds}\n\n")
            responses = op.get("responses", {})
            if responses:
                out.append(_table(["status", "meaning"], ([_code(code), _cell(r.get("description", ""))] for code, r in sorted(responses.items()))))
    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        out.append("\n## Schemas\n")
        for name in sorted(schemas):
            schema = schemas[name]
            out.append(f"\n### {name}\n\n")
            if schema.get("description"):
                out.append(_cell(schema["description"]) + "\n\n")
            required = set(schema.get("required", ()))
            props = schema.get("properties", {})
            if props:
                out.append(_table(
                    ["field", "type", "required", "description"],
                    ([_code(k), _cell(_ref_name(v)), "yes" if k in required else "", _cell(v.get("description", v.get("title", "")))] for k, v in props.items()),
                ))  # fmt: skip
    return "".join(out)


# --- metrics and alerts ----------------------------------------------------------------------------------


def _families(exposition: str) -> list[tuple[str, str, str, set[str]]]:
    """``(name, type, help, label names)`` of a Prometheus text exposition, in order."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    order: list[str] = []
    for line in exposition.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            helps[name] = text.replace("\\n", " ").replace("\\\\", "\\")
            order.append(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            sample = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*?)\})?", line)
            if sample:
                found = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", sample.group(3) or "")) - {"le", "quantile"}
                base = next((n for n in order[::-1] if sample.group(1).startswith(n)), sample.group(1))
                labels.setdefault(base, set()).update(found)
    return [(n, types.get(n, ""), helps[n], labels.get(n, set())) for n in order]


def runtime_exposition() -> str:
    """The runtime's registry as it starts (every label set it pre-creates), wallet balance included."""
    from prometheus_client import generate_latest

    from allora_runtime.metrics import Metrics

    metrics = Metrics(enabled=True)
    metrics.model_info("example", "1.0.0", "0" * 64, "testnet", 69)
    if hasattr(metrics, "wallet_balance"):
        metrics.wallet_balance(1)
    return generate_latest(metrics.registry).decode()


def chain_exposition() -> str:
    from allora_gitops.chain.metrics import render_metrics

    return render_metrics([]).decode()


def example_spec():
    """The deployment spec the alert table is shown for: the example bundle on testnet."""
    from allora_gitops.bundle.manifest import load_manifest
    from allora_gitops.render import DeploymentSettings, DeploymentSpec

    manifest = load_manifest(ROOT / "examples" / "linear-forecaster" / "model.yaml").manifest
    return DeploymentSpec.complete(
        manifest, sha256="0" * 64, archive_size=1,
        settings=DeploymentSettings(network="testnet", archive_url="s3://bundles/linear-forecaster.tar.gz"),
    )  # fmt: skip


def render_metrics_and_alerts() -> str:
    from allora_gitops.render.monitoring import alerts

    out = ["# Metrics and alerts reference\n\n", GENERATED]
    out.append(
        "The series a deployment exposes and the alerts its PrometheusRule carries. How they are scraped and "
        "routed: [monitoring](monitoring.md); what to do when one fires: [runbooks](../how-to/runbooks.md).\n"
    )
    sections = (
        ("Runtime metrics (every model pod, port 9090 `/metrics`)", runtime_exposition(),
         "From `allora_runtime/metrics.py`; the PodMonitor adds `allora_model`, `allora_network` and `allora_deployment`. "
         "`process_*` and `python_*` are prometheus-client's standard process and platform collectors."),
        ("Chain metrics (the platform server's `/metrics`)", chain_exposition(),
         "From `allora_gitops/chain/metrics.py`: one series per live deployment the chain poller read. "
         "[What the chain data means](../explanation/chain-data.md)."),
    )  # fmt: skip
    for title, exposition, note in sections:
        out.append(f"\n## {title}\n\n{note}\n\n")
        out.append(_table(
            ["metric", "type", "labels", "description"],
            ([_code(n), kind, ", ".join(_code(label) for label in sorted(lbls)), _cell(text)] for n, kind, text, lbls in _families(exposition) if not n.endswith("_created")),
        ))  # fmt: skip
    spec = example_spec()
    out.append(
        "\n## Alerts\n\nFrom `allora_gitops/render/monitoring.py`, shown for the example bundle on testnet "
        f"(`{spec.instance}` in namespace `{spec.namespace}`, polling every {spec.polling_interval} s); each alert also carries "
        "`allora_model`, `allora_network`, `allora_deployment` and `namespace`, and a `runbook_url` when the repository "
        "sets `docs_url`.\n"
    )
    for alert in alerts(spec):
        out.append(f"\n### {alert.name}\n\n")
        out.append(f"Severity **{alert.severity}**, for `{alert.for_}`. {_cell(alert.summary)}.\n\n")
        out.append(f"{_cell(alert.description)}\n\n")
        out.append(f"```promql\n{alert.expr}\n```\n\n")
        out.append(f"Runbook: [{alert.name}](../how-to/runbooks.md#runbook-{alert.name.lower()}).\n")
    return "".join(out)


# --- settings --------------------------------------------------------------------------------------------


def _model_rows(model, prefix: str = ""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            doc = re.sub(r"^``[\w.]+:`` — ", "", (ann.__doc__ or "").strip().split("\n\n")[0])
            yield [_code(dotted), "section", "", _cell(doc)]
            yield from _model_rows(ann, dotted + ".")
            continue
        if field.is_required():
            default = "required"
        else:
            value = field.default_factory() if field.default_factory is not None else field.default
            if isinstance(value, (tuple, list)):
                value = [v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v for v in value]
            elif isinstance(value, BaseModel):
                value = value.model_dump(exclude_none=True)
            default = _code(json.dumps(value))
        yield [_code(dotted), default, _cell(_kind(ann).replace(", repeatable", " (list)").replace("flag", "boolean")), _cell(field.description or "")]


def environment_variables(path: Path) -> list[tuple[str, str]]:
    """``(variable, comment)`` for each ``NAME = "ALLORA_…"`` / ``"FORWARDED_…"`` constant of a module, with the
    comment on its line (else the comment block right above it)."""
    source = path.read_text()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            value = node.value.value
            if not re.fullmatch(r"(ALLORA|FORWARDED)_[A-Z0-9_]+", value):
                continue
            comment = comments.get(node.lineno, "")
            if set(comment) & {"-"} and re.fullmatch(r"-+ .* -+", comment):
                comment = ""  # a section header, not about this variable
            above = node.lineno - 1
            block = []
            while not comment and above >= 1 and lines[above - 1].lstrip().startswith("#"):
                if not re.fullmatch(r"-+ .* -+", comments.get(above, "")):
                    block.insert(0, comments.get(above, ""))
                above -= 1
            found.append((value, comment or " ".join(block)))
    return found


# (title, module, the pages whose prose explains its variables: every one is named there, tests/test_docs.py checks)
ENVIRONMENT_SOURCES = (
    ("The command line and the platform server", "allora_gitops/constants.py", ()),
    ("The platform server (`allora-gitops serve`)", "allora_gitops/api/settings.py", ("platform-api.md", "results.md", "runtime.md#log-shipping-your-models-log-on-the-platform")),
    ("The runtime in every model pod (`bootstrap.pyz`)", "allora_runtime/contract.py", ("runtime.md#configuration",)),
)


def _link(page: str) -> str:
    return f"[{page.split('#')[0].removesuffix('.md')}]({page})"


def render_settings() -> str:
    from allora_gitops.gitops.settings import RepositorySettings

    out = ["# Settings reference\n\n", GENERATED]
    out.append(
        "## Repository settings: `.allora-gitops.yaml`\n\n"
        f"{_cell(RepositorySettings.__doc__).rstrip('.')}. Written by `allora-gitops repo init`, read from the base branch by "
        "`render`, `publish`, `promote` and `rollback`; change one with `allora-gitops repo config KEY VALUE` "
        "(a review branch; lists comma-separated, `null` clears). A flag that contradicts a setting is refused.\n\n"
    )
    out.append(_table(["key", "default", "type", "description"], _model_rows(RepositorySettings)))
    out.append("\n## Environment variables\n\nEvery variable the code names, with the comment beside its definition.\n")
    seen: set[str] = set()
    for title, rel, prose in ENVIRONMENT_SOURCES:
        rows = [(n, c) for n, c in environment_variables(ROOT / rel) if n not in seen]
        seen.update(n for n, _ in rows)
        if rows:
            where = f" What each one does, its default and its bounds: {', '.join(_link(p) for p in prose)}." if prose else ""
            out.append(f"\n### {title}\n\nFrom `{rel}`.{where}\n\n")
            see = "see " + " or ".join(_link(p) for p in prose) if prose else ""
            out.append(_table(["variable", "what it sets"], ([_code(n), _cell(c) or see] for n, c in rows)))
    return "".join(out)


# --- the module map --------------------------------------------------------------------------------------


def _first_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except SyntaxError:
        return ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def render_module_map() -> str:
    """A table of every package and module of ``allora_gitops`` and ``allora_runtime``, from their docstrings."""
    rows = []
    for top in ("allora_gitops", "allora_runtime"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "migrations" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            name = ".".join(rel.with_suffix("").parts)
            if name.endswith(".__init__"):
                name = name[: -len(".__init__")] + "/"
            elif path.name.startswith("_") and path.name != "__main__.py":
                continue
            rows.append([_code(name), str(len(path.read_text().splitlines())), _cell(_first_line(path))])
    return _table(["module", "lines", "what it is (its docstring)"], rows)


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli-allora-bundle.md": render_cli_bundle,
    "reference/cli-allora-gitops.md": render_cli_gitops,
    "reference/model-yaml.md": render_model_yaml,
    "reference/http-api.md": render_http_api,
    "reference/metrics-and-alerts.md": render_metrics_and_alerts,
    "reference/settings.md": render_settings,
}
# ``<!-- generated: NAME -->`` in a hand-written page is replaced by the renderer's text
MARKERS: dict[str, Callable[[], str]] = {"module-map": render_module_map}
