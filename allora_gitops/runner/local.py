"""Run a bundle's predictions locally through exactly the container's path: ``bootstrap.pyz --dry-run``.

The runtime (the same zipapp the image carries) runs in a subprocess (an isolated virtualenv by default, or the
current interpreter), so a crash, a hang or a stray ``sys.exit`` in the model
cannot take the CLI down; its JSON lines are read back as they come.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from allora_gitops import constants as C
from allora_gitops.errors import RunError
from allora_runtime import contract as R

if TYPE_CHECKING:
    from allora_gitops.bundle.diagnosis import ImportContext

# Never handed to the model's process: a local run needs no wallet.
_SECRET_ENV = (*R.WALLET_ENV, R.ENV_API_KEY)


@dataclass(frozen=True)
class RunRequest:
    bundle_dir: Path
    nonces: tuple[int, ...] = (C.SAMPLE_NONCE,)
    timeout: Optional[float] = None  # seconds per call; default model.yaml runtime.max_seconds
    here: bool = False  # use the current interpreter instead of the cached virtualenv
    rebuild: bool = False  # rebuild the cached virtualenv
    verbose: bool = False  # show pip's progress while the virtualenv builds (the CLI sets it on a terminal)
    allow_private_artifacts: bool = False  # artifacts.remote may come from loopback/private/link-local addresses


@dataclass
class Prediction:
    nonce: int
    ok: bool
    latency_ms: float
    value: Any = None
    reason: str = ""
    message: str = ""
    error_type: str = ""
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None) or k == "value"}


@dataclass
class RunReport:
    bundle: str
    version: str
    python: str
    environment: str  # "here" or the virtualenv directory
    predictions: list[Prediction] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # lines the model printed
    # when ALLORA_RESULTS_URL is set: what the runtime's reporter said (send failures, refusals) and delivered
    reporting_warnings: list[str] = field(default_factory=list)
    reporting: Optional[dict[str, int]] = None  # sent, dropped, pending (results_reporter_stopped)

    @property
    def ok(self) -> bool:
        return bool(self.predictions) and all(p.ok for p in self.predictions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "version": self.version,
            "ok": self.ok,
            "python": self.python,
            "environment": self.environment,
            "predictions": [p.to_dict() for p in self.predictions],
            **({"reporting": {**self.reporting, "warnings": self.reporting_warnings}} if self.reporting is not None else {}),
        }


def run_bundle(
    request: RunRequest,
    *,
    on_prediction: Callable[[Prediction], None] = lambda p: None,
    on_output: Callable[[str], None] = lambda line: None,
    progress: Callable[[str], None] = lambda line: None,
    on_warning: Callable[[str], None] = lambda line: None,
) -> RunReport:
    """Predict ``request.nonces`` with the bundle; each prediction is reported as soon as it is made.

    With ``ALLORA_RESULTS_URL`` set the runtime also reports the results; every send failure, refusal and the final
    count of undelivered results reaches ``on_warning`` (a line each) and ``RunReport.reporting``.

    What runs is what ships: the files the archive would hold (the ignore rules applied), laid out in a
    scratch directory (:mod:`bundle.stage`), so a file the code needs but the archive drops fails here.
    """
    from allora_gitops.bundle.diagnosis import entrypoint_not_found
    from allora_gitops.bundle.manifest import load_manifest

    bundle_dir = request.bundle_dir.resolve()
    loaded = load_manifest(bundle_dir / C.MANIFEST_FILE, display=str(request.bundle_dir / C.MANIFEST_FILE))
    manifest = loaded.manifest
    why = entrypoint_not_found(bundle_dir, manifest.entrypoint.module)
    if why is not None:  # before an environment is built for a bundle that cannot import
        raise RunError(problems=[loaded.problem(why, "entrypoint", "module", code="entrypoint")])
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if manifest.python.version != here:
        progress(f"warning: model.yaml asks for Python {manifest.python.version}; this run uses {here} (the image uses {manifest.python.version})")
    requirements = _read(bundle_dir, manifest.environment.pip_requirements, "environment.pip_requirements")
    _refuse_bad_requirements(requirements, str(request.bundle_dir / manifest.environment.pip_requirements))

    with contextlib.ExitStack() as stack:
        tree, staged = _stage(bundle_dir, stack)
        env_site: Optional[Path] = None
        if request.here:
            python, environment = sys.executable, "here"
        else:
            from allora_gitops.runner.environment import EnvironmentSpec, ensure_environment, site_packages

            spec = EnvironmentSpec(
                requirements=requirements,
                requirements_dir=staged.path,
                constraints=_read(bundle_dir, manifest.environment.constraints, "environment.constraints")
                if manifest.environment.constraints
                else None,
                extra_index_urls=tuple(manifest.environment.extra_index_urls),
            )
            env_info = ensure_environment(spec, rebuild=request.rebuild, progress=progress, verbose=request.verbose)
            python, environment = str(env_info.python), str(env_info.path)
            env_site = site_packages(env_info.path)

        from allora_gitops.bundle.diagnosis import ImportContext
        from allora_gitops.bundle.requirements import parse_requirements

        context = ImportContext(
            root=bundle_dir, module=manifest.entrypoint.module, workdir=manifest.entrypoint.workdir, ships=tree.ships,
            requirements=parse_requirements(requirements, manifest.environment.pip_requirements)[0],
            requirements_file=manifest.environment.pip_requirements, env_site=env_site, staged_root=staged.path,
        )
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="allora-runtime-"))
        from allora_gitops.runtime import write_runtime_archive

        runtime = Path(scratch) / C.BUILD_CONTEXT_BOOTSTRAP
        write_runtime_archive(runtime)
        if manifest.remote_artifacts:  # fetched (cached by digest) into what ships, as the image holds them
            from allora_gitops.storage.remote import FetchPolicy, fetch_artifacts, place_artifacts

            policy = FetchPolicy(
                allow_private=request.allow_private_artifacts,
                allow_private_hint="`allora-bundle run --allow-private-artifacts` allows it",
            )
            place_artifacts(fetch_artifacts(manifest.remote_artifacts, policy, say=progress), staged.path)
        return _run_runtime(
            [python, str(runtime), "--dry-run", "--bundle-root", str(staged.path)],
            request,
            RunReport(manifest.name, manifest.version, python, environment),
            on_prediction,
            on_output,
            on_warning,
            context,
            staged.original,
            dict(manifest.environment.variables),
        )


def _stage(bundle_dir: Path, stack: contextlib.ExitStack):
    """(tree, staged copy) of what the archive of ``bundle_dir`` would hold; RunError when it cannot be laid out."""
    from allora_gitops.bundle.ignore import walk_bundle
    from allora_gitops.bundle.stage import StagedBundle
    from allora_gitops.bundle.text import BundleTextError

    try:
        tree = walk_bundle(bundle_dir)
        return tree, stack.enter_context(StagedBundle(tree))
    except BundleTextError as exc:
        raise RunError(problems=exc.problems) from None
    except OSError as exc:
        raise RunError(f"cannot lay out the bundle's shipped files: {exc.strerror} ({exc.filename})") from None


def _run_runtime(
    command: list[str],
    request: RunRequest,
    report: RunReport,
    on_prediction: Callable[[Prediction], None],
    on_output: Callable[[str], None],
    on_warning: Callable[[str], None] = lambda line: None,
    context: "Optional[ImportContext]" = None,
    original: Callable[[str], str] = lambda path: path,
    variables: Optional[dict[str, str]] = None,
) -> RunReport:
    """Run the runtime; ``original`` maps a staged path in its messages back to the user's bundle.

    ``variables`` (model.yaml ``environment.variables``) are set as the container sets them; a declared
    ``environment.secrets`` name comes from the caller's environment, as it would from its Secret.
    """
    for nonce in request.nonces:
        command += ["--nonce", str(nonce)]
    if request.timeout is not None:
        command += ["--timeout", repr(float(request.timeout))]
    error: Optional[dict[str, Any]] = None
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_child_env(keep_pythonpath=request.here, variables=variables),
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:
            event = _parse(line)
            if event is None:
                if line.strip():
                    on_output(line.rstrip("\n"))
                continue
            kind = event.get("event")
            if kind in (R.EVENT_PREDICTION, R.EVENT_PREDICTION_REFUSED):
                prediction = _prediction(event)
                prediction.where = original(prediction.where)
                report.predictions.append(prediction)
                on_prediction(prediction)
            elif kind == R.EVENT_PRINT:
                report.output.append(str(event.get("message", "")))
                on_output(str(event.get("message", "")))
            elif kind in R.ERROR_EVENTS:
                error = event
            elif kind in _REPORTING_EVENTS:
                warning = _reporting_warning(event, report)
                if warning:
                    report.reporting_warnings.append(warning)
                    on_warning(warning)
        stderr = proc.stderr.read()
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=15)
        raise
    if code in (R.EXIT_OK, R.EXIT_INVALID_PREDICTION) and error is None:
        return report
    if error is not None:
        where = original(str(error.get("where", "")))
        details = [f"at {where}"] if where else []
        if error.get("traceback"):
            details += original(error["traceback"]).rstrip().splitlines()
        message = original(str(error.get("message", "the bundle failed")))
        raise RunError(message + import_hint(message, where, context), details=details)
    tail = [line for line in stderr.splitlines() if line.strip()][-12:]
    raise RunError(f"the runtime ({C.BUILD_CONTEXT_BOOTSTRAP}) exited with code {code}", details=tail)


_REPORTING_EVENTS = ("results_reporting", "results_send_failed", "results_rejected", "results_refused", "results_reporter_stopped")


def _reporting_warning(event: dict[str, Any], report: RunReport) -> Optional[str]:
    """One line for the user about the results reporter's ``event`` (None when there is nothing wrong to say)."""
    kind = event.get("event")
    if kind == "results_reporting":
        report.reporting = {"sent": 0, "dropped": 0, "pending": 0}
        return None
    if kind == "results_send_failed":
        return f"results: sending to ALLORA_RESULTS_URL failed (attempt {event.get('attempt')}): {event.get('error')}"
    if kind == "results_rejected":
        if event.get("sent") is False:  # dropped by the runtime before any send: the API never saw it
            return f"results: nonce {event.get('nonce')}: {event.get('error')}"
        return f"results: the API refused {event.get('results')} result(s): {event.get('error')}"
    if kind == "results_refused":
        first = event.get("first") or [{}]
        return (f"results: the API refused {event.get('results')} of {event.get('of')} result(s)"
                f" (nonce {first[0].get('nonce')}: {first[0].get('message')})")
    counts = {key: int(event.get(key) or 0) for key in ("sent", "dropped", "pending")}
    report.reporting = counts
    lost = counts["dropped"] + counts["pending"]
    if lost:
        return f"results: {lost} of {lost + counts['sent']} result(s) were not delivered to ALLORA_RESULTS_URL"
    return None


def import_hint(message: str, where: str, context: "Optional[ImportContext]") -> str:
    """``; what to do`` for a failed import, from the diagnosis validate uses too; "" when it has nothing to add."""
    from allora_gitops.bundle.diagnosis import FailedImport, diagnose_import

    if context is None:
        return ""
    path, _, line = where.rpartition(":")
    file: Optional[str] = None
    try:
        file = Path(path).resolve().relative_to(context.root).as_posix() if path else None
    except ValueError:
        pass
    failure = FailedImport.from_message(message, file, int(line) if file and line.isdigit() else None)
    found = diagnose_import(failure, context)
    if found is None:
        return ""
    if found.code == "not-installed":  # --here: the requirement is listed, this interpreter lacks it
        return (f"; {found.missing_top} is in {context.requirements_file} but not installed in this interpreter; "
                "drop --here to run in the bundle's own environment")
    return "; " + found.message


def _read(bundle_dir: Path, relative: str, field_name: str) -> str:
    from allora_gitops.bundle.text import BundleTextError, decode_text

    path = bundle_dir / relative
    try:
        return decode_text(path.read_bytes(), relative)  # as validate and pip read it: a BOM-marked UTF-16 file installs
    except FileNotFoundError:
        raise RunError(f"{relative} not found (model.yaml {field_name})") from None
    except BundleTextError as exc:
        raise RunError(problems=exc.problems) from None


def _refuse_bad_requirements(text: str, display: str) -> None:
    """Raise :class:`RunError` naming ``display``:line for each line validate refuses, before pip runs.

    pip would refuse most of them too, but naming the cached copy it installs from, not the user's file.
    """
    from allora_gitops.bundle.requirements import parse_requirements

    _, problems = parse_requirements(text, display)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RunError(problems=errors)


def _child_env(keep_pythonpath: bool, variables: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV and k != R.ENV_BUNDLE_ROOT}
    env.update(variables or {})  # model.yaml's values, as in the container (validate refused reserved names)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of the user's bundle
    if not keep_pythonpath:
        env.pop("PYTHONPATH", None)  # the isolated environment sees the bundle root only
    return env


def _parse(line: str) -> Optional[dict[str, Any]]:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _prediction(event: dict[str, Any]) -> Prediction:
    ok = event["event"] == R.EVENT_PREDICTION
    return Prediction(
        nonce=int(event["nonce"]),
        ok=ok,
        latency_ms=float(event.get("latency_ms", 0.0)),
        value=event.get("value") if ok else None,
        reason="" if ok else str(event.get("reason", "")),
        message="" if ok else str(event.get("message", "")),
        error_type="" if ok else str(event.get("error_type", "")),
        where=str(event.get("where", "")),
    )


def format_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{label}={format_value(item)}" for label, item in value.items())
    return str(value)


def format_latency(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def format_prediction(prediction: Prediction) -> str:
    """``nonce → value (latency)``; a refused one says why."""
    if prediction.ok:
        return f"{prediction.nonce} → {format_value(prediction.value)} ({format_latency(prediction.latency_ms)})"
    return f"{prediction.nonce} → invalid: {prediction.message} ({format_latency(prediction.latency_ms)})"
