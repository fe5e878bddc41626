"""``promtool check rules`` over every PrometheusRule the overlays build.

The CRD schema proves the shape of a PrometheusRule; only Prometheus' own
parser proves its PromQL, durations and templates. Each rule's ``spec`` is
written as a Prometheus rule file (``groups:``) and all files are checked by
one ``promtool`` process; each failure becomes one finding on its overlay.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from allora_gitops.errors import Problem, VerifyError
from allora_gitops.verify.tools import find_tool

_POSITION = re.compile(r"^\d+:\d+: ")
PROMTOOL_HINT = "install the Debian package prometheus (bash .ci/setup does)"


def check_prometheus_rules(rules: Iterable[tuple[str, dict]]) -> list[Problem]:
    """``rules``: (where, PrometheusRule object) pairs; a Problem per promtool complaint, on ``where``.

    Raises VerifyError when promtool is missing or does not answer within 120 s.
    """
    import yaml

    rules = list(rules)
    if not rules:
        return []
    promtool = find_tool("promtool", PROMTOOL_HINT)
    with tempfile.TemporaryDirectory(prefix="allora-verify-rules-") as tmp:
        files: dict[str, tuple[str, str]] = {}
        for i, (where, obj) in enumerate(rules):
            path = Path(tmp) / f"{i}.yaml"
            path.write_text(yaml.safe_dump(obj.get("spec") or {}, sort_keys=False), encoding="utf-8")
            name = (obj.get("metadata") or {}).get("name", "?")
            files[str(path)] = (where, f"PrometheusRule/{name}")
        try:
            proc = subprocess.run(
                [promtool, "check", "rules", *files], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise VerifyError("promtool check rules did not finish within 120 s") from None
    if proc.returncode == 0:
        return []
    findings = _parse(proc.stdout + "\n" + proc.stderr, files)
    if not findings:  # promtool failed in a way that names no file: say so rather than pass
        raise VerifyError(f"promtool check rules failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    return findings


def _parse(output: str, files: dict[str, tuple[str, str]]) -> list[Problem]:
    """promtool prints ``Checking FILE`` then ``FAILED:`` and one line per error, often prefixed by ``FILE:``."""
    findings = []
    current = None
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("Checking "):
            current = files.get(text[len("Checking ") :])
            continue
        if not text or text.startswith(("SUCCESS", "FAILED")) or current is None:
            continue
        for path in files:  # drop the temporary file and its line: the overlay and the group/rule name the place
            text = text.replace(f"{path}: ", "").replace(path, "rule file")
        text = _POSITION.sub("", text)
        where, ident = current
        findings.append(Problem(f"{ident}: promtool: {text}", where, code="promtool"))
    return findings
