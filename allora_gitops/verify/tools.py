"""Finding the external tools verify runs: on PATH, else beside the running interpreter (a venv's bin/)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from allora_gitops.errors import VerifyError


def find_tool(name: str, hint: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise VerifyError(f"{name} not found on PATH or beside {sys.executable}; {hint}")
