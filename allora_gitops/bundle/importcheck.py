"""Import the bundle's entrypoint in a child interpreter, so that user code that raises, hangs,
calls ``sys.exit`` or crashes the interpreter gives a finding instead of taking the CLI down.

The child sees what the bundle will have and nothing more: the standard library, the bundle's shipped
files (validate hands it the staged copy, :mod:`bundle.stage`), and the environment ``run`` built from
its requirements when there is one — not this CLI's packages.

The child writes one JSON result to a file (the user's code owns stdout and
stderr) and leaves with ``os._exit`` so that atexit hooks and stray threads of
the user's module cannot keep it alive. A timeout kills its whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DEFAULT_IMPORT_TIMEOUT = 60.0

_PROBE = r"""
import importlib, inspect, json, os, sys, traceback
root, workdir, module, function, out = sys.argv[1:6]
# Started with -I -S: only the standard library is on sys.path. The bundle root goes first (as in the
# image), then the requirements' environment when `run` has built one (addsitedir reads its .pth files).
import site
sys.path[:] = [root] + [p for p in sys.path if p not in ("", ".", root)]
for site_dir in sys.argv[6:]:
    site.addsitedir(site_dir)
os.chdir(workdir)

def done(**result):
    with open(out, "w") as fh:
        json.dump(result, fh)
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)

def where(exc):
    frame = None
    places = [(fr.filename, fr.lineno) for fr in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:  # the bad line is not a frame: the compiler reports it
        places.append((exc.filename, exc.lineno))
    for filename, lineno in places:
        if filename.startswith("<"):  # <frozen importlib._bootstrap>: would resolve into the cwd, inside the bundle
            continue
        f = os.path.abspath(filename)
        if f.startswith(root + os.sep):
            frame = (os.path.relpath(f, root), lineno)
    return frame

try:
    mod = importlib.import_module(module)
except BaseException as exc:
    loc = where(exc)
    result = {"status": "raised", "type": type(exc).__name__, "message": str(exc)[:300]}
    if isinstance(exc, SystemExit):
        result = {"status": "exit", "code": repr(exc.code)}
    if isinstance(exc, ModuleNotFoundError):
        result["missing"] = exc.name or ""
    if isinstance(exc, OSError) and isinstance(exc.filename, str):  # a file the module opens, maybe excluded from the archive
        result["filename"] = exc.filename
    if loc:
        result["file"], result["line"] = loc
    done(**result)

fn = getattr(mod, function, inspect.Parameter.empty)
if fn is inspect.Parameter.empty:
    done(status="no-function")
if not callable(fn):
    done(status="not-callable", type=type(fn).__name__)
try:
    sig = inspect.signature(fn)
except (TypeError, ValueError):
    done(status="ok", arity="unknown")
P = inspect.Parameter
positional = [p for p in sig.parameters.values() if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
required = [p for p in positional if p.default is P.empty]
varargs = any(p.kind == P.VAR_POSITIONAL for p in sig.parameters.values())
kw_required = [p.name for p in sig.parameters.values() if p.kind == P.KEYWORD_ONLY and p.default is P.empty]
ok = len(required) <= 1 and (positional or varargs) and not kw_required
line = None
try:
    line = inspect.getsourcelines(fn)[1]
except (OSError, TypeError):
    pass
done(status="ok" if ok else "arity", signature=str(sig), line=line,
     coroutine=inspect.iscoroutinefunction(fn))
"""


@dataclass
class ImportResult:
    status: str  # ok, raised, exit, no-function, not-callable, arity, timeout, crashed
    data: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""


class ImportProbe:
    """The child interpreter, started now and awaited later, so the import overlaps the rest of validation."""

    def __init__(self, root: Path, workdir: Path, module: str, function: str, timeout: float = DEFAULT_IMPORT_TIMEOUT,
                 site_dirs: tuple[Path, ...] = (), variables: Optional[dict[str, str]] = None):
        """``site_dirs``: where the bundle's requirements are installed (none: the standard library only);
        ``variables``: model.yaml's ``environment.variables``, set as the container (and ``run``) sets them.

        The child runs with ``-I -S``, so nothing installed alongside this CLI (boto3, say) can make an
        import pass that would fail in ``run`` and in the image.
        """
        import time

        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="allora-import-")
        self._out = Path(self._tmp.name) / "result.json"
        self._err_path = Path(self._tmp.name) / "stderr"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")}
        env.update(variables or {})
        # -B: leave no __pycache__ in the user's bundle (-I ignores PYTHONDONTWRITEBYTECODE)
        root = Path(root).resolve()
        with open(self._err_path, "wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", _PROBE, str(root), str(Path(workdir).resolve()), module, function,
                 str(self._out), *map(str, site_dirs)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=str(root),
                env=env,
                start_new_session=True,
            )
        self._deadline = time.monotonic() + timeout

    def result(self) -> ImportResult:
        import time

        try:
            try:
                code = self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return ImportResult("timeout", {"timeout": self.timeout})
            finally:
                _kill_group(self._proc)  # whatever the module left running in the background
            tail = self._err_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            if self._out.exists():
                try:
                    data = json.loads(self._out.read_text())
                    return ImportResult(data.pop("status"), data, tail)
                except (ValueError, KeyError):
                    pass
            if code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                return ImportResult("crashed", {"signal": name}, tail)
            return ImportResult("crashed", {"exit_code": code}, tail)
        finally:
            self._tmp.cleanup()


def probe_entrypoint(root: Path, workdir: Path, module: str, function: str, timeout: float = DEFAULT_IMPORT_TIMEOUT,
                     site_dirs: tuple[Path, ...] = ()) -> ImportResult:
    """Import ``module`` from the bundle at ``root`` in a child interpreter and check ``function``."""
    return ImportProbe(root, workdir, module, function, timeout, site_dirs).result()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
