"""The one Jinja environment: StrictUndefined, no autoescape, escaping in filters.

Templates never quote by hand: a value goes into YAML through ``| yaml``
(a JSON string is a valid YAML scalar, so any text is safe) and into a
Dockerfile through ``| docker_json`` (exec form, LABEL, ENV) or
``| in_single_quotes`` (inside an ``sh -c '…'`` string). A template error
names the template and the line.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from allora_gitops.errors import RenderError

# Strings json.dumps would leave unchanged inside its quotes (the common case: names, digests, URLs).
_PLAIN = re.compile(r'[ !#-\[\]-~]*')
# Mapping keys that read the same unquoted in YAML 1.1 and 1.2 (label keys, field names).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def yaml_scalar(value: Any) -> str:
    """One YAML flow scalar: strings double-quoted (JSON escaping is YAML-compatible), numbers bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def to_yaml(value: Any, indent: int = 0) -> str:
    """A block of YAML for mappings and lists (keys sorted), indented by ``indent`` after the first line."""
    if not isinstance(value, (dict, list, tuple)):
        return yaml_scalar(value)
    lines = _block(value, 0)
    pad = " " * indent
    return ("\n" + pad).join(lines)


def _block(value: Any, level: int) -> list[str]:
    pad = "  " * level
    out: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        for key in sorted(value):
            item = value[key]
            if isinstance(item, (dict, list, tuple)) and item:
                out.append(f"{pad}{_key(key)}:")
                out.extend(_block(item, level + 1))
            else:
                out.append(f"{pad}{_key(key)}: {_empty_or_scalar(item)}")
        return out
    if not value:
        return [pad + "[]"]
    for item in value:
        if isinstance(item, (dict, list, tuple)) and item:
            inner = _block(item, level + 1)
            out.append(f"{pad}- {inner[0].lstrip()}")
            out.extend(inner[1:])
        else:
            out.append(f"{pad}- {_empty_or_scalar(item)}")
    return out


def _key(key: Any) -> str:
    text = str(key)
    if _PLAIN_KEY.fullmatch(text) and text.lower() not in _YAML11_WORDS:
        return text
    return yaml_scalar(text)


def _empty_or_scalar(item: Any) -> str:
    if isinstance(item, dict):
        return "{}"
    if isinstance(item, (list, tuple)):
        return "[]"
    return yaml_scalar(item)


def docker_json(value: Any) -> str:
    """A Dockerfile JSON string (exec-form arguments, LABEL and ENV values); no line breaks possible."""
    return json.dumps(str(value), ensure_ascii=True)


def in_single_quotes(value: Any) -> str:
    """Text placed inside a shell ``'…'`` string on one Dockerfile line: refuse what would end it."""
    text = str(value)
    bad = [ch for ch in ("'", "\n", "\r", "\\") if ch in text]
    if bad:
        raise ValueError(f"{text!r} cannot be placed in a shell string (contains {bad[0]!r})")
    return text


@lru_cache(maxsize=None)
def environment():
    """The Jinja environment over ``templates/`` (built once per process)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from allora_gitops.resources import templates_dir

    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,  # templates do not change under a running process; skips a stat per render
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = yaml_scalar
    env.filters["to_yaml"] = to_yaml
    env.filters["docker_json"] = docker_json
    env.filters["in_single_quotes"] = in_single_quotes
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one template; any failure becomes a RenderError naming the template (and line)."""
    from jinja2 import TemplateError, TemplateSyntaxError

    env = environment()
    try:
        return env.get_template(name).render(**context)
    except TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.name or name}:{exc.lineno}: {exc.message}") from None
    except (TemplateError, ValueError) as exc:
        raise RenderError(f"template {name}{_line_of(exc, name)}: {exc}") from None


def _line_of(exc: BaseException, name: str) -> str:
    """The template line from the traceback (Jinja compiles templates to code that keeps their file name)."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f":{line}" if line else ""
