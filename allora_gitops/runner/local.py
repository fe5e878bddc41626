"""Run a bundle's predictions locally through exactly the container's path: ``bootstrap.pyz --dry-run``.

The runtime (the same zipapp the image carries) runs in a subprocess (an isolated virtualenv by default, or the
current interpreter), so a crash, a hang or a stray ``sys.exit`` in the model
cannot take the CLI down; its JSON lines are read back as they come.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from allora_gitops import constants as C
from allora_gitops.errors import RunError
from allora_runtime import contract as R

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
    count of undelivered results reaches ``on_warning`` (a line each) and ``RunReport.reporting``."""
    from allora_gitops.bundle.manifest import load_manifest

    bundle_dir = request.bundle_dir.resolve()
    manifest = load_manifest(bundle_dir / C.MANIFEST_FILE, display=str(request.bundle_dir / C.MANIFEST_FILE)).manifest
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if manifest.python.version != here:
        progress(f"warning: model.yaml asks for Python {manifest.python.version}; this run uses {here} (the image uses {manifest.python.version})")

    if request.here:
        python, environment = sys.executable, "here"
    else:
        from allora_gitops.runner.environment import EnvironmentSpec, ensure_environment

        requirements = _read(bundle_dir, manifest.environment.pip_requirements, "environment.pip_requirements")
        _refuse_bad_requirements(requirements, str(request.bundle_dir / manifest.environment.pip_requirements))
        spec = EnvironmentSpec(
            requirements=requirements,
            requirements_dir=bundle_dir,
            constraints=_read(bundle_dir, manifest.environment.constraints, "environment.constraints")
            if manifest.environment.constraints
            else None,
            extra_index_urls=tuple(manifest.environment.extra_index_urls),
        )
        env_info = ensure_environment(spec, rebuild=request.rebuild, progress=progress, verbose=request.verbose)
        python, environment = str(env_info.python), str(env_info.path)

    with tempfile.TemporaryDirectory(prefix="allora-runtime-") as scratch:
        from allora_gitops.runtime import write_runtime_archive

        runtime = Path(scratch) / C.BUILD_CONTEXT_BOOTSTRAP
        write_runtime_archive(runtime)
        return _run_runtime(
            [python, str(runtime), "--dry-run", "--bundle-root", str(bundle_dir)],
            request,
            RunReport(manifest.name, manifest.version, python, environment),
            on_prediction,
            on_output,
            manifest.environment.pip_requirements,
            on_warning,
        )


def _run_runtime(
    command: list[str],
    request: RunRequest,
    report: RunReport,
    on_prediction: Callable[[Prediction], None],
    on_output: Callable[[str], None],
    requirements_file: str = "requirements.txt",
    on_warning: Callable[[str], None] = lambda line: None,
) -> RunReport:
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
        env=_child_env(keep_pythonpath=request.here),
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
        details = [f"at {error['where']}"] if error.get("where") else []
        if error.get("traceback"):
            details += error["traceback"].rstrip().splitlines()
        message = str(error.get("message", "the bundle failed"))
        raise RunError(message + missing_module_hint(message, error.get("where", ""), requirements_file),
                       details=details)
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


_NO_MODULE = re.compile(r"No module named '([^']+)'")
_ARTIFACT_IN_SOURCE = re.compile(r"""["']([^"'\s]+\.(?:pkl|pickle|joblib|jbl|sav|pt|pth|ckpt|h5|keras|onnx|cbm|ubj|npz|npy|model))["']""")


def missing_module_hint(message: str, where: str, requirements_file: str) -> str:
    """What to do about ``No module named 'X'``: the requirement to add, or a version mismatch to pin away.

    A private module (``_loss``, ``sklearn._loss``) missing while unpickling means the artifact was saved
    by another version of the package than the one installed. ``where`` (``file:line``) names the user's
    line; an artifact path quoted on it is named too.
    """
    m = _NO_MODULE.search(message)
    if not m:
        return ""
    from allora_gitops.bundle.requirements import distribution_for

    missing = m.group(1)
    artifact = _artifact_at(where)
    loading = f" while loading {artifact}" if artifact else ""
    if missing.startswith("_") or "._" in missing:
        return (f"; this looks like a version mismatch{loading}: the artifact was saved with another version of a "
                f"package than the one installed; pin in {requirements_file} the version it was saved with")
    return f"; add {distribution_for(missing)} to {requirements_file}{' (needed' + loading + ')' if artifact else ''}"


def _artifact_at(where: str) -> str:
    path, _, line = where.rpartition(":")
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[int(line) - 1]
    except (OSError, ValueError, IndexError):
        return ""
    m = _ARTIFACT_IN_SOURCE.search(source)
    return m.group(1) if m else ""


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


def _child_env(keep_pythonpath: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV and k != R.ENV_BUNDLE_ROOT}
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
