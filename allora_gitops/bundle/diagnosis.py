"""Why the entrypoint did not import, and what to do: one diagnosis for ``validate`` and ``run``.

Both see the same failure from different sides — validate's import probe reports the exception's fields,
``run`` gets the runtime's error line — and both hand it here as a :class:`FailedImport`. The advice
depends on what the missing name *is*, in this order:

1. the entrypoint module itself (or a package on its path): a wrong ``entrypoint.module`` →
   "did you mean src.x.runner?", never a requirement;
2. a module or file of the bundle that the ignore rules keep out of the archive → the file, named;
3. another module of the bundle that does not exist → the closest sibling;
4. a private module (``_loss``, ``sklearn._loss``) while unpickling → a version mismatch of the artifact;
5. a third-party module → the requirement to add, certain only when the environment built from the
   requirements is known (``run``'s) or there are no requirements at all.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from allora_gitops import constants as C
from allora_gitops.bundle.imports import is_local, module_files
from allora_gitops.bundle.requirements import ParsedRequirement, distribution_for, provided_by

_NO_MODULE = re.compile(r"No module named '([^']+)'")
_NO_FILE = re.compile(r"No such file or directory: '([^']+)'")
_ARTIFACT_IN_SOURCE = re.compile(r"""["']([^"'\s]+\.(?:pkl|pickle|joblib|jbl|sav|pt|pth|ckpt|h5|keras|onnx|cbm|ubj|npz|npy|model))["']""")

RUNTIME_PACKAGES = [ParsedRequirement(r.split("==")[0].lower(), r, 0, True) for r in C.RUNTIME_REQUIREMENTS]


@dataclass(frozen=True)
class FailedImport:
    """What a failed import reported: the probe's fields, or the runtime's message parsed (:meth:`from_message`)."""

    message: str = ""
    missing: Optional[str] = None  # ModuleNotFoundError.name: the dotted module that was not found
    filename: Optional[str] = None  # OSError.filename: as the code wrote it (relative to the workdir) or absolute
    file: Optional[str] = None  # the innermost frame in the bundle, relative to its root ("/"-separated)
    line: Optional[int] = None

    @classmethod
    def from_message(cls, message: str, file: Optional[str] = None, line: Optional[int] = None) -> "FailedImport":
        missing = _NO_MODULE.search(message)
        missing_file = _NO_FILE.search(message)
        return cls(message, missing.group(1) if missing else None, missing_file.group(1) if missing_file else None, file, line)


@dataclass(frozen=True)
class ImportContext:
    """The bundle and the environment the import ran in."""

    root: Path  # the bundle directory as the user has it (not the staged copy)
    module: str  # model.yaml entrypoint.module
    workdir: str = "."  # model.yaml entrypoint.workdir, relative to the root
    ships: Optional[Callable[[str], bool]] = None  # does this bundle path ship? None: everything under root does
    requirements: list[ParsedRequirement] = field(default_factory=list)
    requirements_file: str = "requirements.txt"
    requirements_known: bool = True  # the requirements file was read and every line understood
    env_site: Optional[Path] = None  # site-packages of the environment built from the requirements, when known
    staged_root: Optional[Path] = None  # where the import actually ran (absolute file names are mapped back)


@dataclass(frozen=True)
class Diagnosis:
    """``message`` says what is wrong and what to do; ``code`` is the validate problem code it is filed under."""

    message: str
    severity: str = "error"
    code: str = "import"
    missing_top: Optional[str] = None  # the third-party top-level module found missing, if that is the finding
    path: Optional[str] = None  # the bundle file it names, when excluded from the archive


def _excluded(ctx: ImportContext, rel: str) -> bool:
    return ctx.ships is not None and (ctx.root / rel).exists() and not ctx.ships(rel)


def _excluded_message(rel: str, what: str) -> str:
    return (f"{rel} is excluded from the archive by the ignore rules ({C.IGNORE_FILE} or the defaults), but {what}; "
            "ship it (`run` and the image would not have it)")


def entrypoint_not_found(root: Path, module: str) -> Optional[str]:
    """Why ``module`` is not a module of the bundle at ``root``, with the closest one that is; None when it is."""
    base = module.replace(".", "/")
    candidates = [f"{base}.py", f"{base}/__init__.py"]
    if any((root / c).is_file() for c in candidates):
        return None
    meant = closest_module(root, module)
    hint = f"; did you mean {meant}?" if meant else ""
    return f"module {module!r} not found: expected {candidates[0]} or {candidates[1]}{hint}"


def closest_module(root: Path, module: str) -> Optional[str]:
    """The bundle module ``module`` most likely means: under ``src.`` (where ``init`` puts it), or with each
    missing part replaced by its closest sibling (``runer`` → ``runner``); None when nothing close exists."""
    for guess in (module, f"src.{module}"):
        parts: list[str] = []
        directory = root
        wanted = guess.split(".")
        for i, part in enumerate(wanted):
            names = _children(directory, modules=i == len(wanted) - 1)
            if part not in names:
                close = difflib.get_close_matches(part, names, n=1, cutoff=0.75)
                if not close:
                    break
                part = close[0]
            parts.append(part)
            directory = directory / part
        else:
            meant = ".".join(parts)
            base = meant.replace(".", "/")
            if meant != module and ((root / f"{base}.py").is_file() or (root / base / "__init__.py").is_file()):
                return meant
    return None


def _children(directory: Path, modules: bool) -> list[str]:
    """Package directories in ``directory`` (and its ``.py`` modules when ``modules``), by name."""
    if not directory.is_dir():
        return []
    names = [p.name for p in directory.iterdir() if p.is_dir() and p.name.isidentifier()]
    if modules:
        names += [p.stem for p in directory.glob("*.py") if p.stem.isidentifier()]
    return sorted(set(names))


def missing_module_in_bundle(root: Path, module: str) -> str:
    """``no module named 'x.y' in the bundle (x/y.py does not exist; did you mean x.z?)``."""
    rel = module.replace(".", "/")
    parent = (root / rel).parent
    siblings = _children(parent, modules=True)
    close = difflib.get_close_matches(Path(rel).name, siblings, n=1)
    hint = f"; did you mean {module.rsplit('.', 1)[0]}.{close[0]}?" if close and "." in module else ""
    return f"no module named {module!r} in the bundle ({rel}.py does not exist{hint})"


def missing_package(top: str, ctx: ImportContext) -> Optional[Diagnosis]:
    """What to say about third-party module ``top`` that the code imports; None when a requirement provides it.

    An error only when certain: the environment built from the requirements is known and lacks it, or
    there are no requirements. Otherwise a warning (import and distribution names differ: sklearn).
    """
    if provided_by(top, RUNTIME_PACKAGES) is not None:
        return None  # the image installs the runtime's own packages (PyYAML, prometheus-client, allora-sdk)
    req = provided_by(top, ctx.requirements)
    where = ctx.requirements_file
    if ctx.env_site is not None:
        if _installed(ctx.env_site, top):
            return None
        if req is not None:
            return Diagnosis(f"no module named {top!r} in the run environment, though {req.text} is installed there; "
                             "check which package provides it", missing_top=top)
        return Diagnosis(f"no module named {top!r} in the run environment built from {where}; "
                         f"add {distribution_for(top)} to {where}", missing_top=top)
    if req is not None or not ctx.requirements_known:  # unreadable requirements are reported on their own
        return None
    if not ctx.requirements:
        return Diagnosis(f"no module named {top!r}, and {where} lists no packages; add {distribution_for(top)} to {where}",
                         missing_top=top)
    close = difflib.get_close_matches(top.lower().replace("_", "-"), [r.name for r in ctx.requirements], n=1, cutoff=0.4)
    maybe = f"; perhaps {close[0]} provides it" if close else ""
    return Diagnosis(f"no module named {top!r} here, and no requirement in {where} is known to provide it "
                     f"(import and distribution names can differ{maybe}); if none does, add the package that provides it "
                     "(`allora-bundle run` checks for certain)", "warning", "import-unknown", top)


def diagnose_import(failure: FailedImport, ctx: ImportContext) -> Optional[Diagnosis]:
    """The finding for a failed import of ``ctx.module``; None when there is nothing to add to its own message."""
    if failure.filename:
        rel = _bundle_path(failure.filename, ctx)
        if rel is not None and _excluded(ctx, rel):
            return Diagnosis(_excluded_message(rel, f"importing {ctx.module} opens it"), code="import-excluded", path=rel)
        return None
    missing = failure.missing
    if not missing:
        return None
    top = missing.split(".", 1)[0]
    if missing == ctx.module or ctx.module.startswith(missing + "."):
        why = entrypoint_not_found(ctx.root, ctx.module)
        if why is not None:
            return Diagnosis(why, code="entrypoint")
    if is_local(ctx.root, missing):
        for rel in module_files(ctx.root, missing):
            if _excluded(ctx, rel):
                return Diagnosis(_excluded_message(rel, f"importing {ctx.module} needs it"), code="import-excluded", path=rel)
        if ctx.ships is not None and (ctx.root / top).is_dir() and not ctx.ships(top):
            return Diagnosis(_excluded_message(top + "/", f"importing {ctx.module} needs it"), code="import-excluded", path=top)
        return Diagnosis(missing_module_in_bundle(ctx.root, missing))
    if top.startswith("_") or "._" in missing:
        artifact = _artifact_at(ctx, failure)
        loading = f" while loading {artifact}" if artifact else ""
        return Diagnosis(f"this looks like a version mismatch{loading}: the artifact was saved with another version of a "
                         f"package than the one installed; pin in {ctx.requirements_file} the version it was saved with")
    verdict = missing_package(top, ctx)
    if verdict is None:
        if ctx.env_site is not None or not ctx.requirements_known:
            return None
        return Diagnosis(f"{top} is not installed here, so {ctx.module} was not imported; "
                         "`allora-bundle run` checks in a real environment", "warning", "not-installed", top)
    artifact = _artifact_at(ctx, failure)
    if artifact and verdict.severity == "error":
        return Diagnosis(f"{verdict.message} (needed while loading {artifact})", verdict.severity, verdict.code, top)
    return verdict


def _bundle_path(filename: str, ctx: ImportContext) -> Optional[str]:
    """``filename`` (absolute, or relative to the workdir) as a path inside the bundle; None when outside it."""
    path = filename if os.path.isabs(filename) else os.path.join(ctx.staged_root or ctx.root, ctx.workdir, filename)
    path = os.path.normpath(path)
    for base in (ctx.staged_root, ctx.root):
        if base is None:
            continue
        base = os.path.normpath(os.path.abspath(base))
        if path.startswith(base + os.sep):
            return Path(os.path.relpath(path, base)).as_posix()
    return None


def _artifact_at(ctx: ImportContext, failure: FailedImport) -> str:
    """An artifact path quoted on the failing line of the user's code (``pickle.load(open('artifacts/m.pkl'))``)."""
    if not failure.file or not failure.line:
        return ""
    try:
        source = (ctx.root / failure.file).read_text(encoding="utf-8", errors="replace").splitlines()[failure.line - 1]
    except (OSError, IndexError):
        return ""
    m = _ARTIFACT_IN_SOURCE.search(source)
    return m.group(1) if m else ""


def _installed(site: Path, top: str) -> bool:
    """Is top-level module ``top`` in the environment's site-packages (package, module or extension)?"""
    return (site / top).is_dir() or any(site.glob(f"{top}.py")) or any(site.glob(f"{top}.*.so")) or any(site.glob(f"{top}.*.pyd"))
