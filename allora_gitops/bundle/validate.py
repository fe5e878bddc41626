"""Check a bundle directory: every problem at once, each with ``file:line:col``.

Parse → check → report, problems collected rather than raised: a user fixing
a bundle wants the whole list, not one error per run. ``strict`` turns
warnings into errors, except the ones about this machine (a requirement not
installed here says nothing about the bundle).
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from allora_gitops import constants as C
from allora_gitops.bundle.ignore import BundleTree, symlink_escapes, walk_bundle
from allora_gitops.bundle.diagnosis import (
    Diagnosis, FailedImport, ImportContext, diagnose_import, entrypoint_not_found, missing_package,
)
from allora_gitops.bundle.importcheck import DEFAULT_IMPORT_TIMEOUT, ImportProbe, ImportResult
from allora_gitops.bundle.imports import ImportGraph, is_local, scan_imports
from allora_gitops.bundle.manifest import BundleManifest, LoadedManifest, load_manifest
from allora_gitops.bundle.requirements import ParsedRequirement, parse_requirements, read_requirements
from allora_gitops.bundle.stage import StagedBundle
from allora_gitops.bundle.secrets import ALLOW_FILE, not_allowed, parse_allow_list, scan_file
from allora_gitops.bundle.text import BundleTextError, decode_text
from allora_gitops.errors import ManifestError, Problem

NOT_UTF8_NAME = "file name is not valid UTF-8; rename it (such names break Dockerfile COPY, tar and terminals)"
# warnings that --strict leaves as warnings: they say what this machine lacks, not what is wrong with the bundle
LOCAL_ONLY_CODES = frozenset({"not-installed", "remote-not-fetched"})


@dataclass
class ValidationReport:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    manifest: Optional[BundleManifest] = None
    tree: Optional[BundleTree] = field(default=None, repr=False)
    imported: Optional[bool] = None  # the entrypoint was imported (None: not attempted, model.yaml did not load)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "name": self.manifest.name if self.manifest else None,
            "version": self.manifest.version if self.manifest else None,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "files": len(self.tree.files) if self.tree else None,
            "size": self.tree.total_size if self.tree else None,
            "imported": self.imported,
            "problems": [p.to_dict() for p in self.problems],
        }


class _Checker:
    def __init__(self, root: Path, display: str, import_timeout: float, extra_excludes: tuple[str, ...]):
        self.root = root
        self.display = display
        self.import_timeout = import_timeout
        self.extra_excludes = extra_excludes
        self.problems: list[Problem] = []
        self.env_site: Optional[Path] = None  # site-packages of `run`'s environment for these requirements
        self.requirements_read = False  # the requirements file was read, every line understood: an empty list then means "no packages"
        self.staged: Optional[StagedBundle] = None  # the shipped files, where the probe imports
        self.imported = False

    def shown(self, rel: str) -> str:
        """How a bundle path is printed: relative to where the user pointed us."""
        return rel if self.display in ("", ".") else f"{self.display.rstrip('/')}/{rel}"

    def add(self, message: str, rel: Optional[str] = None, line: Optional[int] = None, col: Optional[int] = None,
            severity: str = "error", code: str = "") -> None:
        self.problems.append(Problem(message, self.shown(rel) if rel is not None else self.display, line, col, severity, code))

    # --- whole-tree checks -----------------------------------------------------

    def check_tree(self, tree: BundleTree) -> None:
        for path, target in tree.symlinks:
            if symlink_escapes(self.root, path, target):
                self.add(f"symbolic link to {target!r} points outside the bundle; copy what it points to into the bundle", path, code="link")
            else:
                self.add(f"symbolic link to {target!r}; archives hold no links, replace it with the file itself", path, code="link")
        for path in tree.special:
            self.add("not a regular file or directory (fifo, socket or device); it cannot ship", path, code="special")
        for path in tree.undecodable:
            self.add(NOT_UTF8_NAME, path, code="name")
        total = tree.total_size
        if total > C.MAX_BUNDLE_BYTES:
            big = sorted(tree.files, key=lambda e: -e.size)[:3]
            biggest = ", ".join(f"{e.path} ({_mb(e.size)})" for e in big)
            self.add(
                f"bundle is {_mb(total)}, over the {_mb(C.MAX_BUNDLE_BYTES)} limit (largest: {biggest}); "
                f"exclude files with {C.IGNORE_FILE}",
                code="size",
            )
        allowed = self.allowed_fingerprints(tree)
        for entry in tree.files:
            for finding in not_allowed(scan_file(entry.path, entry.abs_path, entry.size), allowed):
                self.add(finding.message(), finding.path, finding.line, finding.col, code="secret")

    def allowed_fingerprints(self, tree: BundleTree) -> set[str]:
        """The allow-list, when it ships (inspect reads it from the archive: both must agree)."""
        if not tree.ships(ALLOW_FILE):
            if (self.root / ALLOW_FILE).is_file():  # else "add it to .allorasecretsignore" would send the user in circles
                self.add(f"{ALLOW_FILE} is excluded from the archive by the ignore rules, so its fingerprints allow "
                         "nothing (inspect reads them from the archive); ship it", ALLOW_FILE, severity="warning", code="excluded")
            return set()
        try:
            return parse_allow_list(decode_text((self.root / ALLOW_FILE).read_bytes(), self.shown(ALLOW_FILE)))
        except BundleTextError as exc:
            self.problems.extend(exc.problems)
        except OSError as exc:
            self.add(f"cannot read: {exc.strerror}", ALLOW_FILE, code="io")
        return set()

    # --- model.yaml-driven checks ------------------------------------------------

    def start_import(self, loaded: LoadedManifest, tree: BundleTree) -> Optional[tuple[Optional[ImportProbe], str]]:
        """Start importing the entrypoint from the shipped files (it runs while the tree is scanned).

        (probe, module file); the probe is None when the module file itself does not ship. None when
        there is no module file to import.
        """
        m = loaded.manifest
        why = entrypoint_not_found(self.root, m.entrypoint.module)
        if why is not None:
            self.problems.append(loaded.problem(why, "entrypoint", "module", code="entrypoint"))
            return None
        module_file = next(c for c in m.module_file_candidates if (self.root / c).is_file())
        if not tree.ships(module_file) or not (self.root / m.entrypoint.workdir).is_dir():
            return None, module_file
        try:
            self.staged = StagedBundle(tree)
        except OSError as exc:
            self.add(f"cannot lay out the shipped files to import them: {exc.strerror} ({exc.filename})", code="io")
            return None, module_file
        workdir = self.staged.path / m.entrypoint.workdir
        if not workdir.is_dir():  # the workdir ships no file: the image would not have it either
            self.add(f"workdir {m.entrypoint.workdir!r} holds no file that ships, so the image would not have it",
                     m.entrypoint.workdir, code="workdir")
            return None, module_file
        self.env_site = _run_environment_site(self.root, m)
        site_dirs = (self.env_site,) if self.env_site is not None else ()
        probe = ImportProbe(self.staged.path, workdir, m.entrypoint.module, m.entrypoint.function, self.import_timeout, site_dirs,
                            dict(m.environment.variables))
        return probe, module_file

    def cleanup(self) -> None:
        if self.staged is not None:
            self.staged.cleanup()
            self.staged = None

    def import_context(self, loaded: LoadedManifest, tree: BundleTree, reqs: list[ParsedRequirement]) -> ImportContext:
        m = loaded.manifest
        return ImportContext(
            root=self.root, module=m.entrypoint.module, workdir=m.entrypoint.workdir, ships=tree.ships,
            requirements=reqs, requirements_file=m.environment.pip_requirements, requirements_known=self.requirements_read,
            env_site=self.env_site, staged_root=self.staged.path if self.staged is not None else None,
        )

    def check_manifest(self, loaded: LoadedManifest, tree: BundleTree,
                       started: Optional[tuple[Optional[ImportProbe], str]]) -> None:
        reqs = self.check_requirements(loaded, tree)
        self.check_paths(loaded, tree)
        if started is not None:
            probe, module_file = started
            ctx = self.import_context(loaded, tree, reqs)
            if not tree.ships(module_file):
                self.problems.append(loaded.problem(f"{module_file} is excluded from the archive by the ignore rules",
                                                    "entrypoint", "module", code="excluded"))
            graph = scan_imports(self.root, loaded.manifest.entrypoint.module)
            self.check_local_imports(graph, tree, module_file)
            reported = None
            if probe is not None:
                reported = self.check_import(loaded, module_file, probe.result(), ctx)
            else:
                self._static_function_check(loaded, module_file)
            self.check_external_imports(graph, ctx, reported)

    def check_local_imports(self, graph: ImportGraph, tree: BundleTree, module_file: str) -> None:
        """Every bundle file the entrypoint imports (directly or through other bundle modules) must ship."""
        for rel, site in graph.local.items():
            if rel != module_file and site is not None and not tree.ships(rel):
                self.add(f"{rel} is imported by {self.shown(site.file)}:{site.line} but excluded from the archive by the "
                         f"ignore rules ({C.IGNORE_FILE} or the defaults); `run` and the image would fail to import it",
                         rel, code="excluded")

    def check_external_imports(self, graph: ImportGraph, ctx: ImportContext, reported: Optional[str]) -> None:
        """Every third-party module the code needs should come from a requirement (the probe saw only the first)."""
        for top, site in graph.external.items():
            if top == reported:
                continue
            verdict = missing_package(top, ctx)
            if verdict is not None:
                self.add(verdict.message, site.file, site.line, severity=verdict.severity, code=verdict.code)

    def check_requirements(self, loaded: LoadedManifest, tree: BundleTree) -> list[ParsedRequirement]:
        m = loaded.manifest
        reqs: list[ParsedRequirement] = []
        files = [("pip_requirements", m.environment.pip_requirements)]
        if m.environment.constraints:
            files.append(("constraints", m.environment.constraints))
        for key, rel in files:
            path = self.root / rel
            if not path.is_file():
                what = "is not a file" if path.exists() else "not found"
                self.problems.append(loaded.problem(f"{rel} {what} (environment.{key}); create it, empty if the model needs no packages",
                                                    "environment", key, code="requirements"))
                continue
            if not tree.ships(rel):
                self.problems.append(loaded.problem(f"{rel} is excluded from the archive by the ignore rules", "environment", key, code="excluded"))
            text, problems = read_requirements(path, self.shown(rel))
            parsed, more = parse_requirements(text, self.shown(rel)) if text is not None else ([], [])
            problems += more
            if key == "constraints":  # constraints pin; they need not be pinned themselves twice
                problems = [p for p in problems if p.code != "unpinned"]
            else:
                reqs = parsed
                # a line that is refused (numpy=>1.0, -r other.txt) may be the package the code imports:
                # what the bundle installs is then unknown, and the import check must not call it missing
                self.requirements_read = text is not None and not any(p.severity == "error" for p in more)
            self.problems.extend(problems)
        return reqs

    def check_paths(self, loaded: LoadedManifest, tree: BundleTree) -> None:
        m = loaded.manifest
        workdir = m.entrypoint.workdir
        if not (self.root / workdir).is_dir():
            self.problems.append(loaded.problem(f"workdir {workdir!r} is not a directory of the bundle", "entrypoint", "workdir", code="workdir"))
        artifacts = m.artifacts_path
        where = ("artifacts", "root") if m.artifacts else ("entrypoint", "artifacts_dir")
        if not (self.root / artifacts).is_dir():
            self.problems.append(loaded.problem(f"artifacts directory {artifacts!r} does not exist", *where, severity="warning", code="artifacts"))
        elif artifacts not in (".", "") and not tree.ships(artifacts.rstrip("/")):
            self.problems.append(loaded.problem(f"artifacts directory {artifacts!r} is excluded from the archive by the ignore rules",
                                                *where, code="excluded"))
        elif artifacts not in (".", ""):
            prefix = artifacts.rstrip("/") + "/"
            remote = {Path(a.path).as_posix() for a in m.remote_artifacts}  # ignored on purpose: the image build fetches them
            on_disk = next((p for p in (self.root / artifacts).rglob("*")
                            if p.is_file() and not p.is_symlink() and p.name != ".gitkeep"
                            and p.relative_to(self.root).as_posix() not in remote), None)
            if on_disk is not None and not any(e.path.startswith(prefix) and not e.path.endswith("/.gitkeep") for e in tree.files):
                self.problems.append(loaded.problem(
                    f"every file under the artifacts directory {artifacts!r} is excluded by the ignore rules "
                    f"(e.g. {on_disk.relative_to(self.root).as_posix()}); the model would ship without them",
                    *where, severity="warning", code="excluded"))
        for i, remote in enumerate(m.remote_artifacts):  # fetched at build: a local copy must not ship too
            if tree.ships(remote.path):
                self.problems.append(loaded.problem(
                    f"artifacts.remote[{i}]: {remote.path} is also a file of the bundle and would ship in the archive; "
                    f"add /{remote.path} to {C.IGNORE_FILE} (the image build and `run` fetch it)",
                    "artifacts", "remote", i, "path", code="remote"))

    def check_import(self, loaded: LoadedManifest, module_file: str, result: ImportResult,
                     ctx: ImportContext) -> Optional[str]:
        """Report the probe's result; returns the third-party top-level module it found missing, if any."""
        m = loaded.manifest
        module, function = m.entrypoint.module, m.entrypoint.function
        d = result.data
        file, line = d.get("file") or module_file, d.get("line")
        if result.status == "ok":
            self.imported = True
            return None
        if result.status == "raised" and ("missing" in d or "filename" in d):
            if "missing" in d and not ctx.requirements_known and not is_local(ctx.root, d["missing"]):
                self._static_function_check(loaded, module_file)  # what the bundle installs is unknown; reported already
                return d["missing"].split(".", 1)[0]
            failure = FailedImport(str(d.get("message", "")), d.get("missing"), d.get("filename"), file, line)
            found = diagnose_import(failure, ctx)
            remote = {Path(a.path).as_posix() for a in m.remote_artifacts}
            if found is not None and found.code == "import-excluded" and found.path in remote:
                # not excluded: an artifacts.remote file the image build fetches (and run), which validate does not download
                self.add(f"importing {module} opens {found.path}, an artifacts.remote file validate does not fetch, so it was "
                         "not imported here; `allora-bundle run` imports it with the file", file, line,
                         severity="warning", code="remote-not-fetched")
                self._static_function_check(loaded, module_file)
                return None
            if found is not None:
                self._report_diagnosis(loaded, module, found, file, line)
                if found.severity == "warning":
                    self._static_function_check(loaded, module_file)
                return found.missing_top
        if result.status == "raised":
            message = str(d.get("message"))
            if ctx.staged_root is not None:  # the scratch copy is gone when the user reads this: name their file
                message = message.replace(str(ctx.staged_root) + os.sep, str(self.root.resolve()) + os.sep)
            self.add(f"importing {module} raised {d.get('type')}: {message}", file, line, code="import")
        elif result.status == "exit":
            self.add(f"importing {module} called sys.exit({d.get('code')}); modules must not exit on import", file, line, code="import")
        elif result.status == "timeout":
            self.add(f"importing {module} did not finish within {d['timeout']:g} s (a hang, or a very slow load at import); "
                     "raise it with --import-timeout", module_file, code="import-timeout")
        elif result.status == "crashed":
            how = f"was killed by {d['signal']}" if "signal" in d else f"exited with code {d.get('exit_code')}"
            self.add(f"the interpreter {how} while importing {module}", module_file, code="import")
        elif result.status == "no-function":
            self.problems.append(loaded.problem(f"{module} has no function {function!r}", "entrypoint", "function", code="function"))
        elif result.status == "not-callable":
            self.problems.append(loaded.problem(f"{module}.{function} is a {d.get('type')}, not a function", "entrypoint", "function", code="function"))
        elif result.status == "arity":
            self.add(f"{function}{d.get('signature')} must take exactly one argument, the nonce: def {function}(nonce: int)",
                     module_file, line, code="function")

    def _report_diagnosis(self, loaded: LoadedManifest, module: str, found: Diagnosis, file: str, line: Optional[int]) -> None:
        if found.code == "import-excluded" and any(p.code == "excluded" and p.file == self.shown(found.path or "") for p in self.problems):
            return  # the static pass named the file already
        if found.code == "entrypoint":  # the module path in model.yaml is wrong: point at it
            self.problems.append(loaded.problem(found.message, "entrypoint", "module", code=found.code))
        elif found.code in ("import-excluded", "not-installed"):
            self.add(found.message, file, line, severity=found.severity, code=found.code)
        else:
            self.add(f"importing {module} failed: {found.message}", file, line, severity=found.severity, code=found.code)

    def _static_function_check(self, loaded: LoadedManifest, module_file: str) -> None:
        """When the module cannot be imported here, still check that the function is defined with one argument."""
        import ast

        function = loaded.manifest.entrypoint.function
        try:
            tree = ast.parse((self.root / module_file).read_bytes(), module_file)
        except SyntaxError as exc:
            self.add(f"syntax error: {exc.msg}", module_file, exc.lineno, exc.offset, code="import")
            return
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
                a = node.args
                positional = a.posonlyargs + a.args
                required = len(positional) - len(a.defaults)
                kw_required = [k for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
                if required > 1 or (not positional and not a.vararg) or kw_required:
                    self.add(f"{function}() must take exactly one argument, the nonce: def {function}(nonce: int)",
                             module_file, node.lineno, node.col_offset + 1, code="function")
                return
        # assigned, imported or generated: only an import can tell; say nothing


def _run_environment_site(root: Path, manifest: BundleManifest) -> Optional[Path]:
    """site-packages of the environment ``allora-bundle run`` built for these requirements, if it exists."""
    from allora_gitops.bundle.text import decode_text
    from allora_gitops.runner.environment import EnvironmentSpec, cached_environment, site_packages

    env = manifest.environment
    try:
        requirements = decode_text((root / env.pip_requirements).read_bytes(), env.pip_requirements)
        constraints = decode_text((root / env.constraints).read_bytes(), env.constraints) if env.constraints else None
    except (OSError, BundleTextError):
        return None  # reported by check_requirements
    spec = EnvironmentSpec(requirements, root, constraints, tuple(env.extra_index_urls))
    path = cached_environment(spec)
    return site_packages(path) if path is not None else None


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def validate_bundle(
    path: Path,
    strict: bool = False,
    *,
    import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
    display: Optional[str] = None,
    extra_excludes: tuple[str, ...] = (),
) -> ValidationReport:
    """Check the bundle directory ``path``. Never raises for a bad bundle: the report lists why."""
    root = Path(path)
    display = str(path) if display is None else display
    report = ValidationReport(path=root)
    checker = _Checker(root, display, import_timeout, extra_excludes)
    if not root.is_dir():
        checker.add("not a directory", code="missing")
        report.problems = checker.problems
        return report

    loaded: Optional[LoadedManifest] = None
    try:
        loaded = load_manifest(root / C.MANIFEST_FILE, checker.shown(C.MANIFEST_FILE))
        report.manifest = loaded.manifest
    except ManifestError as exc:
        checker.problems.extend(exc.problems)

    try:
        tree = walk_bundle(root, extra_excludes)
    except (OSError, BundleTextError) as exc:
        if isinstance(exc, BundleTextError):  # the ignore file: what ships cannot be known without it
            checker.problems.extend(replace(p, file=checker.shown(p.file or C.IGNORE_FILE)) for p in exc.problems)
        else:
            checker.add(f"cannot read the bundle: {exc.strerror} ({exc.filename})", code="io")
        report.problems = checker.problems
        return report
    report.tree = tree
    try:
        # the import runs from the shipped files while the tree is scanned for secrets
        started = checker.start_import(loaded, tree) if loaded is not None else None
        if loaded is not None and not tree.ships(C.MANIFEST_FILE):
            checker.add(f"{C.MANIFEST_FILE} is excluded from the archive by the ignore rules", C.MANIFEST_FILE, code="excluded")
        checker.check_tree(tree)
        if loaded is not None:
            checker.check_manifest(loaded, tree, started)
        else:  # the rest depends on model.yaml; the requirements file can still be checked
            rel = _requirements_path_anyway(root / C.MANIFEST_FILE)
            if rel and (root / rel).is_file():
                text, problems = read_requirements(root / rel, checker.shown(rel))
                checker.problems.extend(problems if text is None else parse_requirements(text, checker.shown(rel))[1])
    finally:
        checker.cleanup()
    report.imported = checker.imported if loaded is not None else None

    problems = checker.problems
    if strict:
        problems = [replace(p, severity="error") if p.severity == "warning" and p.code not in LOCAL_ONLY_CODES else p for p in problems]
    report.problems = _ordered(problems)
    return report


def _requirements_path_anyway(manifest_file: Path) -> Optional[str]:
    """environment.pip_requirements from a model.yaml that failed validation, if it can be read at all."""
    default = "requirements.txt"
    try:
        from allora_gitops.boundedyaml import load_yaml
        from allora_gitops.bundle.text import decode_text

        data = load_yaml(decode_text(manifest_file.read_bytes(), str(manifest_file)), str(manifest_file))
        value = data["environment"]["pip_requirements"]
    except Exception:  # noqa: BLE001 - a best effort on a file already reported as broken
        return default
    if isinstance(value, str) and value and not value.startswith("/") and ".." not in Path(value).parts:
        return value
    return default


def _ordered(problems: list[Problem]) -> list[Problem]:
    """model.yaml first, then by file and position; stable, so equal keys keep their discovery order."""
    def key(p: Problem):
        f = p.file or ""
        return (not f.endswith(C.MANIFEST_FILE), f, p.line or 0, p.col or 0)

    return sorted(problems, key=key)


def require_valid(path: Path, *, strict: bool = False, display: Optional[str] = None, **kwargs) -> ValidationReport:
    """validate_bundle, raising BundleError when the bundle is invalid.

    The error carries every problem and no headline: each line already says
    ``file:line:col: error: …``, which is what callers (render, publish) print.
    """
    from allora_gitops.errors import BundleError

    report = validate_bundle(path, strict, display=display, **kwargs)
    if not report.ok:
        raise BundleError(problems=report.problems)
    return report


__all__ = ["ValidationReport", "validate_bundle", "require_valid"]
