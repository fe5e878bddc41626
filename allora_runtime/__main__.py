"""The runtime's command line: ``python bootstrap.pyz [--dry-run|--check|--print-config|--healthcheck]``.

Modes::

    bootstrap.pyz                      live: AlloraWorker.inferer(...) submits to the chain
    bootstrap.pyz --dry-run [--nonce N ...] [--interval S] [--count K]
                                       same adapter and loop, no wallet, no chain, local nonces
    bootstrap.pyz --check [--nonce N]  import, call once, exit 0 only on a valid prediction
    bootstrap.pyz --print-config       build the worker inside the event loop, print what it
                                       would run with (JSON, no secrets), exit; no network
    bootstrap.pyz --healthcheck        exit 0 when the heartbeat file is fresh (liveness probe)

Every line on stdout is one JSON object (``ts``, ``level``, ``event`` + fields). The exit
codes are the ``EXIT_*`` constants of :mod:`allora_runtime.contract`.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

from allora_runtime.adapter import Adapter
from allora_runtime.contract import (
    DEFAULT_BUNDLE_ROOT,
    EXIT_CONFIG,
    EXIT_CONNECTION,
    EXIT_IMPORT,
    EXIT_INVALID_PREDICTION,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    EVENT_IMPORTED,
    EVENT_IMPORTING,
    EVENT_STOPPED,
    EVENT_STOPPING,
    FALSE_WORDS,
    SAMPLE_NONCE,
    SECRET_ENV,
    STOP_GRACE_SECONDS,
)
from allora_runtime.errors import BootstrapError, ConfigError, ImportFailure, RuntimeFailure
from allora_runtime.heartbeat import StartupHeartbeat, healthcheck, heartbeat_loop
from allora_runtime.live import _import_sdk, build_worker, run_live, worker_summary
from allora_runtime.log import LOG, FdCapture, PrintCapture, _install_logging
from allora_runtime.metrics import ignore_multiprocess_dir, start_metrics
from allora_runtime.reporter import start_reporter, stop_reporter
from allora_runtime.shipper import count_in, start_shipper, stop_shipper
from allora_runtime.settings import _env, forget_wallet_env, load_settings, model_variables, read_wallet
from allora_runtime.user import _where, load_user_function


async def run_dry(adapter: Adapter, nonces: list[int], start: int, interval: float, count: Optional[int]) -> int:
    """Local nonces through the same adapter: the listed ones, or a counter every interval."""
    ok = refused = 0
    if nonces:
        for nonce in nonces:
            outcome = await adapter.predict(nonce)
            ok, refused = ok + outcome.ok, refused + (not outcome.ok)
        LOG.emit("dry_run_finished", predictions=ok, refused=refused)
        return EXIT_OK if refused == 0 else EXIT_INVALID_PREDICTION
    nonce = start
    while count is None or ok + refused < count:
        outcome = await adapter.predict(nonce)
        ok, refused = ok + outcome.ok, refused + (not outcome.ok)
        nonce += 1
        if count is None or ok + refused < count:
            await asyncio.sleep(interval)
    LOG.emit("dry_run_finished", predictions=ok, refused=refused)
    return EXIT_OK if refused == 0 else EXIT_INVALID_PREDICTION


# --- main -------------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bootstrap.pyz",
        description="Run an Allora model bundle: submit predictions, or try them locally.",
        epilog=(
            f"exit codes: {EXIT_OK} ok, {EXIT_UNHEALTHY} unhealthy, {EXIT_USAGE} usage, {EXIT_CONFIG} configuration,"
            f" {EXIT_IMPORT} import, {EXIT_RUNTIME} runtime, {EXIT_CONNECTION} connection,"
            f" {EXIT_INVALID_PREDICTION} invalid prediction"
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="no wallet, no chain: predict on local nonces")
    mode.add_argument("--check", action="store_true", help="import and predict once; exit 0 only on a valid value")
    mode.add_argument("--print-config", action="store_true", help="build the worker, print its settings as JSON, exit")
    mode.add_argument("--healthcheck", action="store_true", help="exit 0 when the heartbeat file is fresh")
    parser.add_argument("--bundle-root", help="the bundle directory (default: $BUNDLE_ROOT or /workspace/bundle)")
    parser.add_argument("--nonce", type=int, action="append", default=[], help="a nonce to predict (repeatable)")
    parser.add_argument("--start-nonce", type=int, default=SAMPLE_NONCE, help="first nonce of the dry-run counter")
    parser.add_argument("--interval", type=float, help="seconds between dry-run windows (default: the polling interval)")
    parser.add_argument("--count", type=int, help="stop the dry-run counter after this many windows")
    parser.add_argument("--timeout", type=float, help="seconds per call (default: model.yaml runtime.max_seconds)")
    return parser.parse_args(argv)


class _Supervisor:
    """Runs one mode as a task; SIGTERM/SIGINT or a fatal condition end it within bounded time."""

    def __init__(self, grace: float, max_runtime: Optional[float] = None) -> None:
        self.grace = grace  # live mode lets the SDK worker wind down; local modes stop at once
        self.max_runtime = max_runtime  # ALLORA_MAX_RUNTIME: a stop like SIGTERM's when reached, exit 0
        self.stop = asyncio.Event()
        self.fatal: Optional[str] = None
        self._fatal_event = asyncio.Event()
        self.holder: dict[str, Any] = {}

    def request_stop(self, signame: str) -> None:
        if not self.stop.is_set():
            LOG.emit(EVENT_STOPPING, signal=signame)
        self.stop.set()
        worker = self.holder.get("worker")
        if worker is not None:
            worker.stop()

    def fail(self, reason: str) -> None:
        self.fatal = reason
        self._fatal_event.set()

    def _runtime_reached(self) -> None:
        LOG.emit("max_runtime_reached", seconds=self.max_runtime)
        self.request_stop("max_runtime")

    async def run(self, coro: Any) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        if self.max_runtime is not None:
            loop.call_later(self.max_runtime, self._runtime_reached)
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        fatal = asyncio.ensure_future(self._fatal_event.wait())
        await asyncio.wait({task, stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            if self.stop.is_set() and self.grace > 0:
                await asyncio.wait({task}, timeout=self.grace)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        for helper in (stopper, fatal):
            helper.cancel()
        if self.fatal is not None:
            raise RuntimeFailure(self.fatal)
        if task.done() and not task.cancelled():
            error = task.exception()
            if error is not None and not (self.stop.is_set() and not isinstance(error, BootstrapError)):
                raise error
            if error is None:
                return task.result()
        return EXIT_OK  # stopped by a signal


def _fail(exc: BaseException, debug: bool) -> int:
    if isinstance(exc, BootstrapError):
        fields: dict[str, Any] = {"message": LOG.scrub(str(exc)), "exit_code": exc.exit_code}
        cause = exc.__cause__
        if cause is not None and isinstance(exc, ImportFailure):
            where = _where(cause)
            if where:
                fields["where"] = where
        if debug and cause is not None:
            fields["traceback"] = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        LOG.emit(exc.event, level="error", **fields)
        return exc.exit_code
    fields = {"error_type": type(exc).__name__, "message": LOG.scrub(str(exc))[:500], "exit_code": EXIT_RUNTIME}
    if debug:
        fields["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    LOG.emit("runtime_error", level="error", **fields)
    return EXIT_RUNTIME


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    if args.healthcheck:
        return healthcheck(env)

    real_stdout = sys.stdout
    capture = FdCapture(LOG)  # from here on, every byte on the real stdout is a JSON line
    LOG.stream = capture.stream
    errors = FdCapture(LOG, fd=2)  # and stderr's lines are JSON too, scrubbed: the pod log has both
    # A crash in native code (faulthandler's report) cannot go through the pipe: its reader thread dies with
    # the process. It goes to the real stderr, where it is the last thing the pod log shows.
    faulthandler.enable(errors.stream)
    LOG.debug = (env.get("DEBUG") or "").strip().lower() not in FALSE_WORDS
    sys.stdout = PrintCapture(LOG)  # type: ignore[assignment]
    _stop_at_once_on_signal(capture, errors)  # before any user code runs: the event loop takes over once it starts
    mode = "dry_run" if args.dry_run else "check" if args.check else "print_config" if args.print_config else "live"
    try:
        return _main(args, env, mode)
    except BaseException as exc:  # noqa: BLE001 - the one place every error becomes a JSON line and an exit code
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_OK
        return _fail(exc, LOG.debug)
    finally:
        sys.stdout.flush()
        sys.stdout = real_stdout
        sys.stderr.flush()
        errors.close()
        capture.close()
        stop_shipper(_SHIPPING.pop() if _SHIPPING else None, LOG)  # the last lines too: an error, `stopped`


def _stop_at_once_on_signal(capture: FdCapture, errors: FdCapture) -> None:
    """SIGTERM/SIGINT before the event loop runs (the model is still importing) end the process at once, exit 0.

    Nothing has been predicted or submitted yet, so there is nothing to wind down. Without
    a handler a SIGTERM is lost when the runtime is PID 1 (the kernel drops signals PID 1
    does not handle: pid_namespaces(7)), and the pod only dies at its grace deadline.
    """

    def stop(signum: int, frame: Any) -> None:
        try:
            LOG.emit_from_signal_handler(EVENT_STOPPING, signal=signal.Signals(signum).name, phase="startup")
            errors.close(timeout=0.1)
            capture.close(timeout=0.2)
        finally:  # whatever the log did: an exception here would surface in the user's import as its error
            os._exit(EXIT_OK)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


_SHIPPING: list = []  # the log shipper _main started (at most one), stopped by main after the last line


def _main(args: argparse.Namespace, env: dict[str, str], mode: str) -> int:
    for key in SECRET_ENV:
        LOG.add_secret(env.get(key))
    bundle_root = Path(args.bundle_root or _env(env, "BUNDLE_ROOT") or DEFAULT_BUNDLE_ROOT).resolve()
    LOG.emit("start", mode=mode, pid=os.getpid(), python=sys.version.split()[0], bundle_root=str(bundle_root))
    if os.getpid() == 1:
        LOG.emit(
            "no_init", level="warning",
            message="the runtime is PID 1: orphaned child processes are never reaped; run it under an init (dumb-init)",
        )
    settings = load_settings(bundle_root, env, timeout=args.timeout)
    if mode != "live":  # local modes open no port and write no file unless asked to
        if not (mode == "dry_run" and settings.metrics_port_explicit):
            settings.metrics_port = 0
        if not (mode == "dry_run" and settings.heartbeat_file_explicit):
            settings.heartbeat_file = ""
    _install_logging(LOG, settings.debug)
    wallet = None
    if mode in ("live", "print_config"):
        wallet = read_wallet(env)
        LOG.add_secret(wallet.value)
    forget_wallet_env()  # in every mode: the user's code never sees a wallet in its environment
    if mode in ("live", "dry_run"):  # before the import: what the model prints while it loads is shipped too
        _SHIPPING.append(start_shipper(settings.results, LOG))
    LOG.emit("config", **settings.summary(), wallet=wallet.source if wallet else None)
    ignore_multiprocess_dir()  # before user code can import prometheus_client
    startup = None
    if settings.heartbeat_file:  # the import may take minutes: the liveness probe must not kill it
        startup = StartupHeartbeat(settings.heartbeat_file, settings.heartbeat_every, settings.startup_limit).start()
    if mode == "check":  # the image smoke test has no Deployment to set model.yaml's environment.variables
        for name, value in model_variables(bundle_root).items():
            os.environ.setdefault(name, value)
    LOG.emit(EVENT_IMPORTING, module=settings.module)
    user = load_user_function(settings)
    LOG.emit(EVENT_IMPORTED, function=user.name, is_async=user.is_async, passes="RunContext" if user.wants_context else "nonce")
    if mode == "check":  # the image smoke test: what live mode needs must be importable too
        _import_sdk()
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ImportFailure("prometheus-client is not installed; live mode serves metrics with it") from None

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    supervisor = _Supervisor(
        grace=STOP_GRACE_SECONDS if mode == "live" else 0.0, max_runtime=settings.max_runtime if mode in ("live", "dry_run") else None
    )
    metrics = start_metrics(settings, required=mode == "live", settle_on_submission=mode == "live")
    adapter = Adapter(user, settings.max_seconds, metrics, LOG, settings.topic_id, settings.max_stuck_calls, supervisor.fail)
    count_in(_SHIPPING[-1] if _SHIPPING else None, metrics)

    async def body() -> int:
        beat = None
        if settings.heartbeat_file or metrics.enabled:
            beat = asyncio.ensure_future(heartbeat_loop(settings.heartbeat_file, settings.heartbeat_every, metrics.beat))
        if startup is not None:
            startup.stop()  # the event loop beats from here on
        try:
            if mode == "check":
                nonce = args.nonce[0] if args.nonce else SAMPLE_NONCE
                outcome = await adapter.predict(nonce)
                LOG.emit("check_passed" if outcome.ok else "check_failed", level="info" if outcome.ok else "error", nonce=nonce)
                return EXIT_OK if outcome.ok else EXIT_INVALID_PREDICTION
            if mode == "dry_run":
                interval = args.interval if args.interval is not None else float(settings.polling_interval)
                if interval <= 0:
                    raise ConfigError(f"--interval must be positive, got {interval:g}")
                return await run_dry(adapter, args.nonce, args.start_nonce, interval, args.count)
            if mode == "print_config":
                worker = build_worker(settings, wallet, adapter)  # type: ignore[arg-type]
                LOG.emit("worker_constructed", **worker_summary(worker, adapter))
                return EXIT_OK
            return await run_live(settings, wallet, adapter, supervisor.stop, supervisor.holder)  # type: ignore[arg-type]
        finally:
            if beat is not None:
                beat.cancel()

    reporter = start_reporter(settings.results, metrics, LOG) if mode in ("live", "dry_run") else None
    try:
        code = loop.run_until_complete(supervisor.run(body()))
    finally:
        stop_reporter(reporter, LOG)  # within the grace Kubernetes gives after SIGTERM, crash or not
    if mode in ("live", "dry_run"):
        LOG.emit(EVENT_STOPPED, exit_code=code)
    return code


def run() -> None:
    """The process entry point: main(), then exit without interpreter shutdown."""
    exit_code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Skip interpreter shutdown: it would join executor threads and wait on a stuck user call.
        os._exit(exit_code)


if __name__ == "__main__":
    run()
