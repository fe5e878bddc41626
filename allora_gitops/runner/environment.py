"""The isolated virtualenv a bundle runs in locally, cached by what decides its contents.

The key is a hash of the bundle's requirements (and constraints, extra index
URLs), the runtime's own pins and the interpreter version, so a second run with
the same inputs reuses the environment at once and a changed requirement builds
a new one. Environments live under ``state_home()/runtimes/<key>``; a marker
file written last says an environment is complete, a lock file serialises
concurrent builders.

They are built with uv (``uv venv`` + ``uv pip install``: a resolver and installer in Rust that links
wheels from its cache instead of unpacking them again, seconds where pip takes tens of seconds), and
with pip where uv cannot serve: not installed, or ``$ALLORA_GITOPS_INSTALLER=pip``. The key does not
name the installer: both install the same pinned requirements.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from allora_gitops import constants as C
from allora_gitops.errors import RunError
from allora_gitops.state import ensure_state_dir, state_home

READY_MARKER = ".allora-ready.json"
KEY_VERSION = "1"  # bump when the layout or the build recipe of an environment changes


@dataclass(frozen=True)
class EnvironmentSpec:
    """What goes into an environment; everything here is part of its key."""

    requirements: str  # text of the requirements file
    requirements_dir: Path  # where relative paths inside it resolve (-r, -c, local wheels)
    constraints: Optional[str] = None
    extra_index_urls: tuple[str, ...] = ()
    runtime_requirements: tuple[str, ...] = C.RUNTIME_DRY_RUN_REQUIREMENTS

    def key(self, python: str = sys.executable) -> str:
        digest = hashlib.sha256()
        for part in (
            KEY_VERSION,
            interpreter_id(python),
            self.requirements,
            self.constraints or "",
            "\n".join(self.extra_index_urls),
            "\n".join(self.runtime_requirements),
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:24]


@dataclass(frozen=True)
class RunnerEnvironment:
    path: Path
    python: Path
    created: bool  # False when it came from the cache


def interpreter_id(python: str = sys.executable) -> str:
    """Implementation, full version and machine of an interpreter: wheels differ across these."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}-{platform.machine()}"
    probe = "import sys, platform; print(f'{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}-{platform.machine()}')"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def environments_dir() -> Path:
    return state_home() / "runtimes"


def venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    ensure_state_dir(lock_path.parent)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_environment(
    spec: EnvironmentSpec,
    *,
    rebuild: bool = False,
    progress: Callable[[str], None] = lambda line: None,
    verbose: bool = False,
) -> RunnerEnvironment:
    """Return the cached environment for ``spec``, building it first when missing, incomplete or ``rebuild``.

    ``verbose``: also pass pip's own progress lines (``Collecting numpy==2.4.6`` …) to ``progress``
    while building, so a first run on a terminal is not silent for minutes.
    """
    key = spec.key()
    path = environments_dir() / key
    with _locked(path.with_name(key + ".lock")):
        if not rebuild and (path / READY_MARKER).is_file() and venv_python(path).exists():
            return RunnerEnvironment(path, venv_python(path), created=False)
        if path.exists():
            shutil.rmtree(path)
        progress(f"creating the run environment {path} (once per set of requirements)")
        started = time.monotonic()
        try:
            installer = _build(spec, path, progress if verbose else None)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        (path / READY_MARKER).write_text(
            json.dumps(
                {
                    "key": key,
                    "python": interpreter_id(),
                    "runtime_requirements": list(spec.runtime_requirements),
                    "installer": installer,
                    "seconds": round(time.monotonic() - started, 1),
                },
                indent=2,
            )
            + "\n"
        )
        progress(f"run environment ready in {time.monotonic() - started:.0f} s")
        return RunnerEnvironment(path, venv_python(path), created=True)


def cached_environment(spec: EnvironmentSpec) -> Optional[Path]:
    """The complete cached environment for ``spec`` (built by an earlier ``run``), or None; never builds one."""
    path = environments_dir() / spec.key()
    return path if (path / READY_MARKER).is_file() and venv_python(path).exists() else None


def site_packages(path: Path) -> Path:
    """The ``site-packages`` directory of the virtualenv at ``path`` (built by this interpreter)."""
    import sysconfig

    return Path(sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)}))


def _pip_here() -> bool:
    """pip in the current interpreter can install into another one (``pip --python``, pip >= 22.3)."""
    try:
        import pip
    except ImportError:
        return False
    major, minor = (int(x) for x in pip.__version__.split(".")[:2])
    return (major, minor) >= (22, 3)


def find_uv() -> Optional[str]:
    """The uv executable: the one the ``uv`` package installed beside this interpreter, else on PATH.

    None when there is none, or when ``$ALLORA_GITOPS_INSTALLER`` is ``pip``.
    """
    if os.environ.get(C.INSTALLER_ENV, "").strip().lower() == "pip":
        return None
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _build(spec: EnvironmentSpec, path: Path, pip_progress: Optional[Callable[[str], None]] = None) -> str:
    """Build the environment for ``spec`` at ``path``; returns the installer used (``uv`` or ``pip``)."""
    uv = find_uv()
    if uv is not None:
        _build_with_uv(uv, spec, path, pip_progress)
        return "uv"
    _build_with_pip(spec, path, pip_progress)
    return "pip"


def _install_arguments(spec: EnvironmentSpec, path: Path) -> list[str]:
    """``-r``/``-c``/``--extra-index-url`` arguments for the spec's files, written into the environment (pip and uv alike)."""
    requirements_file = path / "bundle-requirements.txt"
    requirements_file.write_text(spec.requirements)
    args = [*spec.runtime_requirements]
    if spec.requirements.strip():
        args += ["-r", str(requirements_file)]
    if spec.constraints is not None:
        constraints_file = path / "bundle-constraints.txt"
        constraints_file.write_text(spec.constraints)
        args += ["-c", str(constraints_file)]
    for url in spec.extra_index_urls:
        args += ["--extra-index-url", url]
    return args


def uv_environment() -> dict[str, str]:
    """This process's environment for uv, with pip's index settings (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``)
    carried over where uv's own are unset: a user behind a mirror configured pip, and uv does not read pip's.

    uv trusts ``SSL_CERT_FILE`` when it is set, as pip does ``PIP_CERT``/``REQUESTS_CA_BUNDLE``.
    """
    env = dict(os.environ)
    for pip_name, uv_name in (("PIP_INDEX_URL", "UV_INDEX_URL"), ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL")):
        if env.get(pip_name) and not env.get(uv_name):
            env[uv_name] = env[pip_name]
    return env


def _build_with_uv(uv: str, spec: EnvironmentSpec, path: Path, progress: Optional[Callable[[str], None]]) -> None:
    quiet = [] if progress else ["-q"]
    env = uv_environment()
    _run([uv, "venv", "-q", "--python", sys.executable, str(path)], "creating the virtualenv", env=env)
    # unsafe-best-match: pick the best version across the index and extra indexes, as pip does (the image agrees)
    install = [uv, "pip", "install", "--python", str(venv_python(path)), "--index-strategy", "unsafe-best-match",
               "--no-progress", *quiet, *_install_arguments(spec, path)]
    _run(install, "installing the bundle's requirements", cwd=spec.requirements_dir, progress=progress, env=env)


def _build_with_pip(spec: EnvironmentSpec, path: Path, pip_progress: Optional[Callable[[str], None]] = None) -> None:
    borrow_pip = _pip_here()  # skipping ensurepip saves seconds per environment
    venv_cmd = [sys.executable, "-m", "venv", *(["--without-pip"] if borrow_pip else []), str(path)]
    _run(venv_cmd, "creating the virtualenv")
    python = venv_python(path)
    pip = [sys.executable, "-m", "pip", "--python", str(python)] if borrow_pip else [str(python), "-m", "pip"]
    quiet = [] if pip_progress else ["-q"]
    install = [*pip, "install", "--disable-pip-version-check", "--no-input", *quiet, *_install_arguments(spec, path)]
    _run(install, "installing the bundle's requirements", cwd=spec.requirements_dir, progress=pip_progress)


# pip's and uv's lines worth showing while they work (the rest is noise on a terminal)
_PIP_PROGRESS = ("Collecting ", "Downloading ", "Building wheel", "Installing collected packages", "Successfully installed",
                 "Resolved ", "Prepared ", "Installed ", "Built ")


def _run(command: list[str], what: str, cwd: Optional[Path] = None,
         progress: Optional[Callable[[str], None]] = None, env: Optional[dict[str, str]] = None) -> None:
    """Run ``command``; on failure a RunError with the last lines of its output. ``progress`` gets the installer's steps as they come."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            stdin=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line.strip():
            output.append(line)
            del output[:-200]
        if progress is not None and line.lstrip().startswith(_PIP_PROGRESS):
            progress("  " + line.strip())
    code = proc.wait()
    if code != 0:
        tail = [line for line in output if not line.startswith("WARNING: Location")][-12:]
        raise RunError(f"{what} failed (exit {code}):", problems=[], details=tail)


@dataclass(frozen=True)
class CachedEnvironment:
    """One environment under ``environments_dir()``: its directory, size in bytes, and whether it is complete."""

    path: Path
    size: int
    ready: bool


def list_environments() -> list[CachedEnvironment]:
    """Every cached environment, oldest first (by modification time)."""
    root = environments_dir()
    if not root.is_dir():
        return []
    found = []
    for path in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
        found.append(CachedEnvironment(path, size, (path / READY_MARKER).is_file()))
    return found


def prune_environments() -> tuple[list[CachedEnvironment], list[CachedEnvironment]]:
    """Remove every cached environment not in use right now; (removed, skipped because a run holds its lock)."""
    removed, busy = [], []
    for env in list_environments():
        lock_path = env.path.with_name(env.path.name + ".lock")
        with open(lock_path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(env)
                continue
            try:
                shutil.rmtree(env.path, ignore_errors=True)
                removed.append(env)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        lock_path.unlink(missing_ok=True)
    return removed, busy
