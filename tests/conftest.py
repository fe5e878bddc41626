"""Shared fixtures. Real components only: servers are started on loopback by the fixtures that need them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("ALLORA_DEBUG", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run a console script in-process: ``cli("bundle", "validate", path)`` → CliResult."""

    def _run(tool: str, *args: str) -> CliResult:
        import importlib

        from allora_gitops.cli.app import run_app

        monkeypatch.delenv("ALLORA_DEBUG", raising=False)
        monkeypatch.setenv("NO_COLOR", "1")
        monkeypatch.setenv("COLUMNS", "200")
        module = importlib.import_module(f"allora_gitops.cli.{tool}")
        capsys.readouterr()
        code = run_app(module.app, [str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return _run


@pytest.fixture
def cli_proc():
    """Run a console script in a subprocess, exactly as a user would."""

    def _run(tool: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", f"allora_gitops.cli.{tool}", *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env(env),
            cwd=cwd,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return _run

from tests.fixtures.postgres import *  # noqa: E402,F401,F403
from tests.fixtures.s3 import *  # noqa: E402,F401,F403
from tests.fixtures.rendered import *  # noqa: F401,F403,E402
from tests.fixtures.git import *  # noqa: E402,F401,F403
from tests.fixtures.images import *  # noqa: F401,F403,E402
from tests.fixtures.registry import *  # noqa: F401,F403,E402
from tests.fixtures.problems import no_schema_names_in_error_bodies  # noqa: E402,F401  (autouse: every test)
from tests.fixtures.artifacts import *  # noqa: F401,F403,E402
