#!/usr/bin/env python3
"""The Allora model runtime: runs a bundle's ``run(nonce)`` for every submission window.

Copied alone into every model image (``/workspace/bootstrap.py``), so it imports
nothing from allora_gitops; its only third-party imports are PyYAML, allora-sdk
(live mode only) and prometheus-client (optional: metrics are skipped with a
warning when it is missing, except in live mode where it is required).

Modes::

    bootstrap.py                      live: AlloraWorker.inferer(...) submits to the chain
    bootstrap.py --dry-run [--nonce N ...] [--interval S] [--count K]
                                      same adapter and loop, no wallet, no chain, local nonces
    bootstrap.py --check [--nonce N]  import, call once, exit 0 only on a valid prediction
    bootstrap.py --print-config       build the worker inside the event loop, print what it
                                      would run with (JSON, no secrets), exit; no network
    bootstrap.py --healthcheck        exit 0 when the heartbeat file is fresh (liveness probe)

Every line on stdout is one JSON object (``ts``, ``level``, ``event`` + fields);
output that other code prints is wrapped into ``{"event": "print"}`` lines.
The exit codes are the ``EXIT_*`` constants below.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Optional

# --- exit codes ------------------------------------------------------------------
EXIT_OK = 0  # clean stop (SIGTERM/SIGINT), or every prediction valid
EXIT_UNHEALTHY = 1  # --healthcheck: the heartbeat is missing or too old
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_CONFIG = 3  # model.yaml, environment variable or wallet is wrong
EXIT_IMPORT = 4  # the entrypoint module or function cannot be imported (or the SDK is missing)
EXIT_RUNTIME = 5  # the loop crashed, the SDK worker stopped on its own, or too many calls are stuck
EXIT_CONNECTION = 6  # the chain stayed unreachable after the bounded retries
EXIT_INVALID_PREDICTION = 7  # --check / --dry-run --nonce: a prediction was refused

# --- defaults (each can be changed by the environment variable beside it) --------
DEFAULT_BUNDLE_ROOT = "/workspace/bundle"  # BUNDLE_ROOT
DEFAULT_MAX_SECONDS = 25.0  # model.yaml runtime.max_seconds, or --timeout
DEFAULT_POLLING_INTERVAL = 120  # model.yaml allora.polling_interval, ALLORA_POLLING_INTERVAL
DEFAULT_FEE_TIER = "STANDARD"
FEE_TIERS = ("ECO", "STANDARD", "PRIORITY")
DEFAULT_NETWORK = "testnet"
DEFAULT_METRICS_PORT = 9090  # ALLORA_METRICS_PORT (0 disables)
DEFAULT_METRICS_ADDRESS = "0.0.0.0"  # ALLORA_METRICS_ADDRESS
DEFAULT_HEARTBEAT_FILE = "/tmp/allora-heartbeat"  # ALLORA_HEARTBEAT_FILE
DEFAULT_HEARTBEAT_INTERVAL = 10.0  # ALLORA_HEARTBEAT_INTERVAL
DEFAULT_HEARTBEAT_MAX_AGE = 120.0  # ALLORA_HEARTBEAT_MAX_AGE (--healthcheck)
DEFAULT_WALLET_DIR = "/var/run/secrets/allora/wallet"  # ALLORA_WALLET_DIR
DEFAULT_CONNECT_RETRIES = 5  # ALLORA_CONNECT_RETRIES: consecutive failures before EXIT_CONNECTION
DEFAULT_RETRY_BACKOFF = 2.0  # ALLORA_RETRY_BACKOFF: first delay (s), doubled each time, capped below
MAX_RETRY_BACKOFF = 60.0
STABLE_RUN_SECONDS = 300.0  # a worker that ran this long resets the retry count
DEFAULT_MAX_STUCK_CALLS = 3  # ALLORA_MAX_STUCK_CALLS: timed-out sync calls still running → restart
CONNECT_TIMEOUT = 30.0  # first query to the chain
STOP_GRACE_SECONDS = 5.0  # after SIGTERM, how long the worker gets to wind down (Kubernetes waits 30)
SAMPLE_NONCE = 1000  # --check and --dry-run default nonce
CONTEXT_PARAMETER_NAMES = ("ctx", "context", "run_context")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


# --- errors ------------------------------------------------------------------------
class BootstrapError(Exception):
    exit_code = EXIT_RUNTIME
    event = "runtime_error"


class ConfigError(BootstrapError):
    exit_code = EXIT_CONFIG
    event = "config_error"


class ImportFailure(BootstrapError):
    exit_code = EXIT_IMPORT
    event = "import_error"


class ConnectionFailure(BootstrapError):
    exit_code = EXIT_CONNECTION
    event = "connection_error"


class RuntimeFailure(BootstrapError):
    exit_code = EXIT_RUNTIME
    event = "runtime_error"


class PredictionRefused(Exception):
    """Raised to the SDK instead of a bad value, so nothing is submitted (already logged by us)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- JSON log lines ----------------------------------------------------------------
class JsonLog:
    """One JSON object per line, written under a lock; registered secrets are scrubbed from every line."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.debug = False
        self._lock = threading.Lock()
        self._secrets: list[str] = []

    def add_secret(self, value: Optional[str]) -> None:
        if value and len(value) >= 8:
            self._secrets.append(value)
            stripped = value.strip()
            if stripped != value and len(stripped) >= 8:
                self._secrets.append(stripped)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        now = time.time()
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": level,
            "event": event,
        }
        record.update(fields)
        line = self.scrub(json.dumps(record, default=str, ensure_ascii=False)) + "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed: nothing sensible left to do with a log line


LOG = JsonLog(sys.stdout)


class PrintCapture:
    """Stands in for sys.stdout: whatever other code prints becomes ``{"event": "print"}`` lines."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, log: JsonLog):
        self._log = log
        self._buffer = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            lines = self._buffer.split("\n")
            self._buffer = lines.pop()
        for line in lines:
            if line.strip():
                self._log.emit("print", message=line.rstrip())
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._buffer = self._buffer, ""
        if rest.strip():
            self._log.emit("print", message=rest.rstrip())

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("stdout is captured into JSON log lines")


def _install_logging(log: JsonLog, debug: bool) -> None:
    """Route every ``logging`` record (the SDK's included) into JSON lines before the SDK adds its own handler."""
    import logging

    class Bridge(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, PredictionRefused):
                return  # the adapter already logged this refusal with its reason
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
            if exc is not None:
                fields["error_type"] = type(exc).__name__
                if log.debug:
                    fields["traceback"] = "".join(traceback.format_exception(*record.exc_info))
            log.emit("log", level=record.levelname.lower(), **fields)

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(Bridge())
    root.setLevel(logging.DEBUG if debug else logging.INFO)


# --- configuration ---------------------------------------------------------------------
@dataclass
class NetworkSettings:
    name: str  # testnet | mainnet | custom
    url: Optional[str] = None
    websocket_url: Optional[str] = None
    chain_id: Optional[str] = None
    faucet_url: Optional[str] = None


@dataclass
class WalletSecret:
    kind: str  # mnemonic | private_key
    source: str  # where it came from (never the value)
    value: str = field(repr=False)


@dataclass
class Settings:
    bundle_root: Path
    name: str
    version: str
    module: str
    function: str
    workdir: str
    topic_id: Optional[int]
    network: NetworkSettings
    fee_tier: str
    polling_interval: int
    max_seconds: float
    api_key: Optional[str] = field(repr=False)
    debug: bool
    metrics_port: int
    metrics_port_explicit: bool
    metrics_address: str
    heartbeat_file: str
    heartbeat_file_explicit: bool
    heartbeat_interval: float
    connect_retries: int
    retry_backoff: float
    max_stuck_calls: int

    def summary(self) -> dict[str, Any]:
        return {
            "bundle": self.name,
            "version": self.version,
            "bundle_root": str(self.bundle_root),
            "entrypoint": f"{self.module}.{self.function}",
            "workdir": self.workdir,
            "topic_id": self.topic_id,
            "network": self.network.name,
            "chain_id": self.network.chain_id,
            "grpc_url": redact_url(self.network.url),
            "websocket_url": redact_url(self.network.websocket_url),
            "fee_tier": self.fee_tier,
            "polling_interval": self.polling_interval,
            "max_seconds": self.max_seconds,
            "api_key": "set" if self.api_key else "unset",
            "metrics_port": self.metrics_port,
            "heartbeat_file": self.heartbeat_file,
            "connect_retries": self.connect_retries,
            "max_stuck_calls": self.max_stuck_calls,
        }


def redact_url(url: Optional[str]) -> Optional[str]:
    """Drop credentials and query strings from a URL before it is logged."""
    if not url:
        return url
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1[redacted]@", url)
    return re.sub(r"\?.*$", "?[redacted]", url)


def _env(env: dict[str, str], name: str) -> Optional[str]:
    """An environment variable, with empty values treated as unset (Kubernetes renders unset values as '')."""
    value = env.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def _positive_int(text: Any, what: str) -> int:
    if isinstance(text, bool):
        raise ConfigError(f"{what} must be a positive integer, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise ConfigError(f"{what} must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {text!r}")
    return value


def _number(text: Any, what: str, minimum: float = 0.0, allow_zero: bool = False) -> float:
    try:
        if isinstance(text, bool):
            raise ValueError
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (value == 0 and not allow_zero):
        raise ConfigError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number, got {text!r}")
    return value


def _fee_tier(text: Any, what: str) -> str:
    value = str(text).strip().upper() if isinstance(text, str) else None
    if value not in FEE_TIERS:
        raise ConfigError(f"{what} must be one of {', '.join(FEE_TIERS)}, got {text!r}")
    return value


def _section(data: dict, key: str, file: str) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: '{key}' must be a mapping")
    return value


def _decode(raw: bytes) -> str:
    """model.yaml as `allora-bundle validate` reads it: a UTF-8/16/32 byte-order mark decides, else UTF-8."""
    import codecs

    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
                       (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(codec)
    return raw.decode("utf-8")


def load_manifest(bundle_root: Path) -> dict:
    path = bundle_root / "model.yaml"
    try:
        import yaml
    except ImportError:
        raise ImportFailure("PyYAML is not installed; the runtime needs it to read model.yaml") from None
    try:
        text = _decode(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found (BUNDLE_ROOT={bundle_root})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_settings(bundle_root: Path, env: dict[str, str], timeout: Optional[float] = None) -> Settings:
    """model.yaml, overridden by the environment. Every bad value is a ConfigError naming its field."""
    manifest = load_manifest(bundle_root)
    file = "model.yaml"
    schema = manifest.get("schema_version")
    if str(schema) != "0.1":
        raise ConfigError(f"{file}: schema_version must be \"0.1\", got {schema!r}")
    entry = _section(manifest, "entrypoint", file)
    module = entry.get("module")
    if not isinstance(module, str) or not re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", module):
        raise ConfigError(f"{file}: entrypoint.module must be a dotted module path like src.my_model.runner, got {module!r}")
    function = entry.get("function", "run")
    if not isinstance(function, str) or not re.match(r"^[A-Za-z_]\w*$", function):
        raise ConfigError(f"{file}: entrypoint.function must be a Python identifier, got {function!r}")
    kind = entry.get("kind", "python_function")
    if kind != "python_function":
        raise ConfigError(f"{file}: entrypoint.kind must be python_function, got {kind!r}")
    workdir = entry.get("workdir", ".")
    if not isinstance(workdir, str) or Path(workdir).is_absolute() or ".." in Path(workdir).parts:
        raise ConfigError(f"{file}: entrypoint.workdir must be a relative path inside the bundle, got {workdir!r}")
    if not (bundle_root / workdir).is_dir():
        raise ConfigError(f"{file}: entrypoint.workdir {workdir!r} is not a directory in the bundle")

    allora = _section(manifest, "allora", file)
    runtime = _section(manifest, "runtime", file)

    topic_id: Optional[int] = None
    if _env(env, "ALLORA_TOPIC_ID") is not None:
        topic_id = _positive_int(_env(env, "ALLORA_TOPIC_ID"), "ALLORA_TOPIC_ID")
    elif allora.get("topic_id") is not None:
        topic_id = _positive_int(allora["topic_id"], f"{file}: allora.topic_id")

    if _env(env, "ALLORA_POLLING_INTERVAL") is not None:
        polling = _positive_int(_env(env, "ALLORA_POLLING_INTERVAL"), "ALLORA_POLLING_INTERVAL")
    else:
        polling = _positive_int(allora.get("polling_interval", DEFAULT_POLLING_INTERVAL), f"{file}: allora.polling_interval")

    if _env(env, "ALLORA_FEE_TIER") is not None:
        fee_tier = _fee_tier(_env(env, "ALLORA_FEE_TIER"), "ALLORA_FEE_TIER")
    else:
        raw_tier = allora.get("fee_tier", DEFAULT_FEE_TIER)
        if raw_tier not in FEE_TIERS:
            raise ConfigError(f"{file}: allora.fee_tier must be one of {', '.join(FEE_TIERS)}, got {raw_tier!r}")
        fee_tier = raw_tier

    network = _network_settings(env, allora.get("network", DEFAULT_NETWORK), file)

    if timeout is not None:
        max_seconds = _number(timeout, "--timeout")
    else:
        max_seconds = _number(runtime.get("max_seconds", DEFAULT_MAX_SECONDS), f"{file}: runtime.max_seconds")

    metrics_raw = _env(env, "ALLORA_METRICS_PORT")
    metrics_port = DEFAULT_METRICS_PORT
    if metrics_raw is not None:
        try:
            metrics_port = int(metrics_raw)
        except ValueError:
            metrics_port = -1
        if not 0 <= metrics_port <= 65535:
            raise ConfigError(f"ALLORA_METRICS_PORT must be a port number (0 disables metrics), got {metrics_raw!r}")

    debug_raw = (env.get("DEBUG") or "").strip().lower()
    return Settings(
        bundle_root=bundle_root,
        name=str(manifest.get("name", "?")),
        version=str(manifest.get("version", "?")),
        module=module,
        function=function,
        workdir=workdir,
        topic_id=topic_id,
        network=network,
        fee_tier=fee_tier,
        polling_interval=polling,
        max_seconds=max_seconds,
        api_key=_env(env, "ALLORA_API_KEY"),
        debug=debug_raw not in FALSE_WORDS,
        metrics_port=metrics_port,
        metrics_port_explicit=metrics_raw is not None,
        metrics_address=_env(env, "ALLORA_METRICS_ADDRESS") or DEFAULT_METRICS_ADDRESS,
        heartbeat_file=_env(env, "ALLORA_HEARTBEAT_FILE") or DEFAULT_HEARTBEAT_FILE,
        heartbeat_file_explicit=_env(env, "ALLORA_HEARTBEAT_FILE") is not None,
        heartbeat_interval=_number(_env(env, "ALLORA_HEARTBEAT_INTERVAL") or DEFAULT_HEARTBEAT_INTERVAL, "ALLORA_HEARTBEAT_INTERVAL"),
        connect_retries=_positive_int(_env(env, "ALLORA_CONNECT_RETRIES") or DEFAULT_CONNECT_RETRIES, "ALLORA_CONNECT_RETRIES"),
        retry_backoff=_number(_env(env, "ALLORA_RETRY_BACKOFF") or DEFAULT_RETRY_BACKOFF, "ALLORA_RETRY_BACKOFF"),
        max_stuck_calls=_positive_int(_env(env, "ALLORA_MAX_STUCK_CALLS") or DEFAULT_MAX_STUCK_CALLS, "ALLORA_MAX_STUCK_CALLS"),
    )


URL_SCHEMES = ("grpc+https", "grpc+http", "rest+https", "rest+http")


def _network_settings(env: dict[str, str], manifest_network: Any, file: str) -> NetworkSettings:
    raw = _env(env, "ALLORA_NETWORK")
    what = "ALLORA_NETWORK"
    if raw is None:
        raw, what = manifest_network, f"{file}: allora.network"
        if raw not in ("testnet", "mainnet"):
            raise ConfigError(f"{what} must be testnet or mainnet, got {raw!r}")
    if raw in ("testnet", "mainnet"):
        return NetworkSettings(name=raw)
    scheme = raw.split("://", 1)[0] if "://" in raw else None
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{what} must be testnet, mainnet or a gRPC/REST URL ({', '.join(s + '://…' for s in URL_SCHEMES)}),"
            f" got {redact_url(raw)!r}"
        )
    chain_id = _env(env, "ALLORA_CHAIN_ID")
    websocket = _env(env, "ALLORA_WEBSOCKET_URL")
    missing = [n for n, v in (("ALLORA_CHAIN_ID", chain_id), ("ALLORA_WEBSOCKET_URL", websocket)) if v is None]
    if missing:
        raise ConfigError(f"ALLORA_NETWORK is a custom URL: {' and '.join(missing)} must be set too")
    assert websocket is not None
    if not re.match(r"^wss?://", websocket):
        raise ConfigError(f"ALLORA_WEBSOCKET_URL must be a ws:// or wss:// URL, got {redact_url(websocket)!r}")
    return NetworkSettings(
        name="custom", url=raw, websocket_url=websocket, chain_id=chain_id, faucet_url=_env(env, "ALLORA_FAUCET_URL")
    )


def read_wallet(env: dict[str, str]) -> WalletSecret:
    """The wallet from the environment or mounted files. Missing or ambiguous is a ConfigError, never a prompt."""
    found: list[WalletSecret] = []
    for kind, var in (("mnemonic", "ALLORA_MNEMONIC"), ("private_key", "ALLORA_PRIVATE_KEY")):
        if _env(env, var) is not None:
            found.append(WalletSecret(kind, f"env:{var}", _env(env, var) or ""))
    if not found:
        for kind, var in (("mnemonic", "ALLORA_MNEMONIC_FILE"), ("private_key", "ALLORA_PRIVATE_KEY_FILE")):
            path = _env(env, var)
            if path is not None:
                found.append(WalletSecret(kind, f"file:{path}", _read_secret_file(Path(path), var)))
    if not found:
        wallet_dir = Path(_env(env, "ALLORA_WALLET_DIR") or DEFAULT_WALLET_DIR)
        for kind in ("mnemonic", "private_key"):
            path = wallet_dir / kind
            if path.is_file():
                found.append(WalletSecret(kind, f"file:{path}", _read_secret_file(path, "ALLORA_WALLET_DIR")))
    if not found:
        raise ConfigError(
            "no wallet: set ALLORA_MNEMONIC or ALLORA_PRIVATE_KEY, or mount a 'mnemonic' or 'private_key' file"
            " in ALLORA_WALLET_DIR (default /var/run/secrets/allora/wallet)"
        )
    if len(found) > 1:
        raise ConfigError(f"two wallets given ({found[0].source} and {found[1].source}); keep exactly one")
    secret = found[0]
    if not secret.value:
        raise ConfigError(f"the wallet {secret.kind} from {secret.source} is empty")
    return secret


def _read_secret_file(path: Path, var: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{var}: cannot read {path} ({type(exc).__name__})") from None


def forget_wallet_env() -> None:
    """Take the wallet out of os.environ so user code and anything it spawns never see it."""
    for var in ("ALLORA_MNEMONIC", "ALLORA_PRIVATE_KEY"):
        os.environ.pop(var, None)


# --- the user's function ------------------------------------------------------------------
@dataclass
class UserFunction:
    fn: Callable[[Any], Any]
    name: str
    is_async: bool
    wants_context: bool


_USER_ROOT: Optional[str] = None  # the bundle root, once load_user_function has put it on sys.path


def _where(exc: BaseException) -> Optional[str]:
    """file:line of the innermost frame inside the bundle (the user's line, not sklearn/base.py or pickle.py).

    The innermost frame of all when no frame is in the bundle.
    """
    tb = exc.__traceback__
    frame = inside = None
    prefix = os.path.join(_USER_ROOT, "") if _USER_ROOT else None
    while tb is not None:
        frame, tb = tb, tb.tb_next
        if prefix and os.path.abspath(frame.tb_frame.f_code.co_filename).startswith(prefix):
            inside = frame
    frame = inside or frame
    if frame is None:
        return None
    return f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"


def _wants_context(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    if isinstance(annotation, str):
        if "RunContext" in annotation:
            return True
    elif getattr(annotation, "__name__", "") == "RunContext":
        return True
    return parameter.name in CONTEXT_PARAMETER_NAMES


def load_user_function(settings: Settings) -> UserFunction:
    """Put the bundle root on sys.path, chdir to the workdir, import module.function and check its shape."""
    global _USER_ROOT
    root = str(settings.bundle_root)
    _USER_ROOT = os.path.abspath(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.chdir(settings.bundle_root / settings.workdir)
    target = f"{settings.module}.{settings.function}"
    try:
        module = importlib.import_module(settings.module)
    except ModuleNotFoundError as exc:
        what = "the entrypoint module" if exc.name and settings.module.startswith(exc.name) else "a module it imports"
        raise ImportFailure(f"cannot import {settings.module}: {what} is missing ({exc})") from exc
    except BaseException as exc:  # noqa: BLE001 - user code at import time can raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ImportFailure(f"importing {settings.module} raised {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, settings.function, None)
    if fn is None:
        raise ImportFailure(f"{settings.module} has no attribute {settings.function!r} (model.yaml entrypoint.function)")
    if not callable(fn):
        raise ImportFailure(f"{target} is a {type(fn).__name__}, not a function")
    wants_context = False
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in positional if p.default is p.empty]
        required_kw = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
        var_positional = any(p.kind == p.VAR_POSITIONAL for p in params)
        if len(required) > 1 or required_kw or not (positional or var_positional):
            raise ImportFailure(f"{target}{signature} must take exactly one argument: the nonce (block height)")
        if positional:
            wants_context = _wants_context(positional[0])
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
    return UserFunction(fn=fn, name=target, is_async=is_async, wants_context=wants_context)


# --- checking a prediction -------------------------------------------------------------------
def check_prediction(value: Any) -> Any:
    """Return the JSON form of a valid prediction; raise PredictionRefused for anything the chain must not get."""
    if isinstance(value, dict):
        if not value:
            raise PredictionRefused("invalid_value", "returned an empty dict; a multi-output topic needs label → value")
        shown = {}
        for label, item in value.items():
            if not isinstance(label, str) or not label:
                raise PredictionRefused("invalid_value", f"dict keys must be non-empty label strings, got {label!r}")
            shown[label] = _check_scalar(item, f"the value for label {label!r}")
        return shown
    return _check_scalar(value, "the prediction")


def _check_scalar(value: Any, what: str) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise PredictionRefused("invalid_value", f"{what} is {value!r}; NaN and infinity cannot be submitted")
    if value is None:
        raise PredictionRefused("invalid_value", f"{what} is None; return a number")
    if isinstance(value, bool):
        raise PredictionRefused("invalid_value", f"{what} is a bool ({value}); return a number")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        raise PredictionRefused("invalid_value", f"{what} is Decimal({str(value)!r}); it must be finite")
    if isinstance(value, str):
        try:
            if Decimal(value).is_finite():
                return value
        except InvalidOperation:
            pass
        raise PredictionRefused("invalid_value", f"{what} is the string {value[:40]!r}, not a finite decimal number")
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if getattr(value, "shape", None) == ():
            raise PredictionRefused("invalid_value", f"{what} is a {name}; return float(value)")
        raise PredictionRefused("invalid_value", f"{what} is an array ({name}); return one scalar, e.g. float(values[0])")
    if isinstance(value, (list, tuple, set, frozenset)):
        raise PredictionRefused("invalid_value", f"{what} is a {name}; return one scalar, e.g. float(values[0])")
    raise PredictionRefused("invalid_value", f"{what} has type {name}; return a float, int, str or Decimal")


def _plain(value: Any) -> Any:
    """Float subclasses (numpy.float64) as plain floats, so the SDK signs exactly what was checked."""
    if isinstance(value, float) and type(value) is not float:
        return float(value)
    if isinstance(value, dict):
        return {label: _plain(item) for label, item in value.items()}
    return value


# --- metrics --------------------------------------------------------------------------------
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)


class Metrics:
    """Prometheus metrics in a registry of their own; every method is a no-op when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = False
        self.registry = None
        if not enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client import PlatformCollector, ProcessCollector

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.predictions = Counter("allora_predictions", "Valid predictions returned by the model", registry=registry)
        self.failures = Counter(
            "allora_prediction_failures", "Prediction calls refused, by reason", ["reason"], registry=registry
        )
        for reason in ("timeout", "exception", "invalid_value"):
            self.failures.labels(reason)
        self.latency = Histogram(
            "allora_prediction_latency_seconds", "Time spent in the model's run()", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.last_success = Gauge(
            "allora_last_success_timestamp_seconds", "Unix time of the last valid prediction", registry=registry
        )
        self.submissions = Counter("allora_submissions", "Chain submissions, by result", ["result"], registry=registry)
        self.stuck = Gauge("allora_stuck_calls", "Timed-out sync calls still running in their thread", registry=registry)
        self.enabled = True

    def serve(self, port: int, address: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=address, registry=self.registry)

    def prediction(self, latency: float) -> None:
        if self.enabled:
            self.predictions.inc()
            self.latency.observe(latency)
            self.last_success.set(time.time())

    def failure(self, reason: str, latency: float) -> None:
        if self.enabled:
            self.failures.labels(reason).inc()
            self.latency.observe(latency)

    def submission(self, result: str) -> None:
        if self.enabled:
            self.submissions.labels(result).inc()

    def stuck_calls(self, count: int) -> None:
        if self.enabled:
            self.stuck.set(count)


def start_metrics(settings: Settings, required: bool) -> Metrics:
    if settings.metrics_port == 0:
        return Metrics(False)
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        if required:
            raise ImportFailure("prometheus-client is not installed; install it or set ALLORA_METRICS_PORT=0") from None
        LOG.emit("metrics_disabled", level="warning", reason="prometheus-client is not installed")
        return Metrics(False)
    metrics = Metrics(True)
    try:
        metrics.serve(settings.metrics_port, settings.metrics_address)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port} ({exc.strerror or exc});"
            " set ALLORA_METRICS_PORT to a free port or 0"
        ) from None
    LOG.emit("metrics_serving", port=settings.metrics_port, address=settings.metrics_address)
    return metrics


# --- the adapter: what the SDK calls ------------------------------------------------------------
@dataclass
class LocalRunContext:
    """What a context-taking function gets in --dry-run/--check: the SDK's RunContext fields, without a client."""

    nonce: int
    topic_id: Optional[int]
    client: Any = None


@dataclass
class Outcome:
    nonce: int
    ok: bool
    latency: float
    value: Any = None  # what the model returned (submitted as is when ok)
    shown: Any = None  # JSON form of the value
    reason: str = ""  # timeout | exception | invalid_value
    message: str = ""
    error_type: str = ""


_TIMED_OUT = object()


class CallThread(threading.Thread):
    """A daemon thread that runs sync calls one after the other; abandoned (not killed) when a call times out."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(name="allora-predict", daemon=True)
        import queue

        self._loop = loop
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.start()

    def submit(self, fn: Callable[[Any], Any], arg: Any, future: "asyncio.Future[Any]") -> None:
        self._jobs.put((fn, arg, future))

    def retire(self) -> None:
        self._jobs.put(None)

    def run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, arg, future = job
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as the call's outcome
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:
                return  # the loop is closed: the process is exiting


def _settle(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_from_task(future: "asyncio.Future[Any]", task: "asyncio.Future[Any]") -> None:
    if task.cancelled():
        _settle(future, None, RuntimeError("run() was cancelled"))
    else:
        error = task.exception()
        _settle(future, None if error is not None else task.result(), error)


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


class Adapter:
    """Calls the user's function with a timeout, checks the value, logs one line and updates the metrics."""

    def __init__(
        self,
        user: UserFunction,
        timeout: float,
        metrics: Metrics,
        log: JsonLog,
        topic_id: Optional[int],
        max_stuck_calls: int = DEFAULT_MAX_STUCK_CALLS,
        on_fatal: Optional[Callable[[str], None]] = None,
    ):
        self.user = user
        self.timeout = timeout
        self.metrics = metrics
        self.log = log
        self.topic_id = topic_id
        self.max_stuck_calls = max_stuck_calls
        self.on_fatal = on_fatal
        self._thread: Optional[CallThread] = None
        self._stuck: list[CallThread] = []
        self.failed: Optional[str] = None
        self.last_nonce: Optional[int] = None  # the SDK submits right after each prediction, one at a time

    async def __call__(self, context: Any) -> Any:
        """The SDK's callback: RunContext in, a checked value out (or PredictionRefused: nothing is submitted)."""
        try:
            outcome = await self.predict(context.nonce, context)
        except RuntimeFailure as exc:
            raise PredictionRefused("stopping", str(exc)) from None
        if outcome.ok:
            return outcome.value
        raise PredictionRefused(outcome.reason, outcome.message)

    async def predict(self, nonce: int, context: Any = None) -> Outcome:
        if self.failed is not None:
            raise RuntimeFailure(self.failed)  # the process is on its way out: start nothing new
        if self.user.wants_context:
            arg = context if context is not None else LocalRunContext(nonce=nonce, topic_id=self.topic_id)
        else:
            arg = nonce
        started = time.perf_counter()
        try:
            value = await self._call(arg, started + self.timeout)
        except PredictionRefused as refused:
            return self._refused(nonce, started, refused.reason, refused.message, "TimeoutError")
        except Exception as exc:  # noqa: BLE001 - any user error is one refused prediction, the worker goes on
            outcome = self._refused(nonce, started, "exception", str(exc)[:500], type(exc).__name__, exc)
            return outcome
        try:
            shown = check_prediction(value)
        except PredictionRefused as refused:
            return self._refused(nonce, started, refused.reason, refused.message, type(value).__name__)
        latency = time.perf_counter() - started
        value = _plain(value)
        self.metrics.prediction(latency)
        self.last_nonce = nonce
        self.log.emit("prediction", nonce=nonce, value=shown, latency_ms=round(latency * 1000, 3))
        return Outcome(nonce=nonce, ok=True, latency=latency, value=value, shown=shown)

    def _refused(
        self, nonce: int, started: float, reason: str, message: str, error_type: str, exc: Optional[BaseException] = None
    ) -> Outcome:
        latency = time.perf_counter() - started
        self.metrics.failure(reason, latency)
        fields: dict[str, Any] = {}
        if exc is not None:
            where = _where(exc)
            if where:
                fields["where"] = where
            if self.log.debug:
                fields["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.log.emit(
            "prediction_refused",
            level="error" if reason != "invalid_value" else "warning",
            nonce=nonce,
            reason=reason,
            error_type=error_type,
            message=message,
            latency_ms=round(latency * 1000, 3),
            **fields,
        )
        return Outcome(nonce=nonce, ok=False, latency=latency, reason=reason, message=message, error_type=error_type)

    async def _call(self, arg: Any, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        if self.user.is_async:
            return await self._await(loop, self.user.fn(arg), deadline)
        self._reap_stuck()
        if self._thread is None:
            self._thread = CallThread(loop)
        future = loop.create_future()
        timer = loop.call_later(max(0.0, deadline - time.perf_counter()), _expire, future)
        self._thread.submit(self.user.fn, arg, future)
        try:
            result = await future
        finally:
            timer.cancel()
        if result is _TIMED_OUT:
            self._abandon_thread()
            raise PredictionRefused("timeout", f"run() did not return within {self.timeout:g} s")
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            return await self._await(loop, result, deadline)
        return result

    async def _await(self, loop: asyncio.AbstractEventLoop, awaitable: Any, deadline: float) -> Any:
        task = asyncio.ensure_future(awaitable)
        future = loop.create_future()
        task.add_done_callback(lambda done: _settle_from_task(future, done))
        timer = loop.call_later(max(0.0, deadline - time.perf_counter()), _expire, future)
        try:
            result = await future
        finally:
            timer.cancel()
        if result is _TIMED_OUT:
            task.cancel()  # not awaited: a coroutine that swallows the cancellation must not hold us
            raise PredictionRefused("timeout", f"run() did not return within {self.timeout:g} s")
        return result

    def _reap_stuck(self) -> None:
        if self._stuck:
            self._stuck = [t for t in self._stuck if t.is_alive()]
            self.metrics.stuck_calls(len(self._stuck))

    def _abandon_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.retire()  # it exits once the stuck call returns, if it ever does
        self._stuck.append(thread)
        self._reap_stuck()
        if len(self._stuck) >= self.max_stuck_calls:
            self.failed = (
                f"{len(self._stuck)} timed-out calls are still running in their threads (a thread cannot be killed);"
                " exiting so the container restarts with a fresh process"
            )
            if self.on_fatal is not None:
                self.on_fatal(self.failed)

    def stuck_count(self) -> int:
        self._reap_stuck()
        return len(self._stuck)


# --- heartbeat ---------------------------------------------------------------------------------
def touch_heartbeat(path: str) -> bool:
    try:
        with open(path, "a", encoding="utf-8"):
            pass
        os.utime(path, None)
        return True
    except OSError:
        return False


async def heartbeat_loop(path: str, interval: float) -> None:
    warned = False
    while True:
        if not touch_heartbeat(path) and not warned:
            LOG.emit("heartbeat_failed", level="warning", file=path)
            warned = True
        await asyncio.sleep(interval)


def healthcheck(env: dict[str, str]) -> int:
    path = _env(env, "ALLORA_HEARTBEAT_FILE") or DEFAULT_HEARTBEAT_FILE
    try:
        max_age = _number(_env(env, "ALLORA_HEARTBEAT_MAX_AGE") or DEFAULT_HEARTBEAT_MAX_AGE, "ALLORA_HEARTBEAT_MAX_AGE")
    except ConfigError as exc:
        sys.stderr.write(f"unhealthy: {exc}\n")
        return EXIT_UNHEALTHY
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        sys.stderr.write(f"unhealthy: no heartbeat file {path}\n")
        return EXIT_UNHEALTHY
    if age > max_age:
        sys.stderr.write(f"unhealthy: heartbeat is {age:.0f} s old (max {max_age:g} s)\n")
        return EXIT_UNHEALTHY
    return EXIT_OK


# --- the live worker ----------------------------------------------------------------------------
def _import_sdk() -> Any:
    try:
        import allora_sdk
    except ImportError as exc:
        raise ImportFailure(f"allora-sdk cannot be imported ({exc}); the image must install allora-sdk==1.3.0") from None
    return allora_sdk


def _sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("allora-sdk")
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def build_worker(settings: Settings, wallet: WalletSecret, adapter: Adapter) -> Any:
    """AlloraWorker.inferer(...). Must run inside the event loop; makes no network connection."""
    sdk = _import_sdk()
    from allora_sdk import AlloraNetworkConfig, AlloraWalletConfig, AlloraWorker, FeeTier

    if settings.topic_id is None:
        raise ConfigError("no topic: set allora.topic_id in model.yaml or ALLORA_TOPIC_ID")
    net = settings.network
    if net.name == "testnet":
        network = AlloraNetworkConfig.testnet()
    elif net.name == "mainnet":
        network = AlloraNetworkConfig.mainnet()
    else:
        network = AlloraNetworkConfig(
            chain_id=net.chain_id or "", url=net.url or "", websocket_url=net.websocket_url, faucet_url=net.faucet_url
        )
    try:
        if wallet.kind == "mnemonic":
            local = sdk.LocalWallet.from_mnemonic(wallet.value, "allo")
        else:
            key = wallet.value[2:] if wallet.value.startswith("0x") else wallet.value
            local = sdk.LocalWallet(sdk.PrivateKey(bytes.fromhex(key)), prefix="allo")
    except Exception:  # noqa: BLE001 - the exception text may quote the secret
        words = len(wallet.value.split())
        detail = f"{words} words" if wallet.kind == "mnemonic" else f"{len(wallet.value)} characters"
        raise ConfigError(f"the wallet {wallet.kind} from {wallet.source} is not valid ({detail})") from None
    try:
        return AlloraWorker.inferer(
            run=adapter,
            wallet=AlloraWalletConfig(wallet=local),
            network=network,
            api_key=settings.api_key,
            topic_id=settings.topic_id,
            fee_tier=FeeTier[settings.fee_tier],
            polling_interval=settings.polling_interval,
            debug=settings.debug,
            show_banner=False,
        )
    except (ValueError, RuntimeError) as exc:  # e.g. cosmpy: "Unsupported url scheme"
        raise ConfigError(f"the SDK refused the configuration: {LOG.scrub(str(exc))}") from None


def worker_summary(worker: Any, adapter: Adapter) -> dict[str, Any]:
    network = worker.client.network
    return {
        "sdk_version": _sdk_version(),
        "role": worker.use_case.name(),
        "topic_id": worker.topic_id,
        "fee_tier": worker.fee_tier.name,
        "polling_interval": worker.polling_interval,
        "address": worker.address,
        "chain_id": network.chain_id,
        "grpc_url": redact_url(network.url),
        "websocket_url": redact_url(network.websocket_url),
        "faucet_url": redact_url(network.faucet_url),
        "api_key": "set" if worker.api_key else "unset",
        "callback": "adapter" if worker.use_case.predict_fn is adapter else "other",
        "function": adapter.user.name,
        "passes": "RunContext" if adapter.user.wants_context else "nonce",
    }


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"StreamTerminatedError", "WebSocketException", "ConnectionClosed", "InvalidHandshake", "ProtocolError"}:
        return True
    if "GRPCError" in names:
        status = getattr(getattr(exc, "status", None), "name", "")
        return status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL", "RESOURCE_EXHAUSTED")
    return False


async def _close_worker(worker: Any) -> None:
    try:
        await asyncio.wait_for(worker.client.close(), 5)
    except Exception:  # noqa: BLE001 - best effort on the way to a retry or exit
        pass


async def run_live(settings: Settings, wallet: WalletSecret, adapter: Adapter, stop: asyncio.Event, holder: dict) -> int:
    """Build the worker, check the chain, run; transient failures retry with backoff up to a bound."""
    failures = 0
    worker = None
    while True:
        if worker is None:
            worker = build_worker(settings, wallet, adapter)
            holder["worker"] = worker
            LOG.emit("worker_constructed", **worker_summary(worker, adapter))
        started = time.monotonic()
        ran = False
        try:
            try:
                chain_id = await asyncio.wait_for(worker.client.raise_for_chain_id_mismatch(), CONNECT_TIMEOUT)
            except ValueError as exc:
                raise ConfigError(f"chain id mismatch: {exc}") from None
            LOG.emit("connected", chain_id=chain_id)
            ran = True
            async for result in worker.run():
                if isinstance(result, Exception):
                    adapter.metrics.submission("error")
                    LOG.emit("submission_failed", level="error", error_type=type(result).__name__, message=LOG.scrub(str(result))[:500])
                else:
                    adapter.metrics.submission("ok")
                    tx = getattr(result, "tx_result", None)
                    LOG.emit(
                        "submission", nonce=adapter.last_nonce, value=check_prediction(result.submission) if result.submission is not None else None,
                        tx_hash=getattr(tx, "txhash", None), code=getattr(tx, "code", None),
                    )
            if stop.is_set():
                return EXIT_OK
            raise RuntimeFailure("the SDK worker stopped on its own (see its log lines above)")
        except BootstrapError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retry or crash below
            if stop.is_set():
                return EXIT_OK
            if not _is_transient(exc):
                raise RuntimeFailure(f"the worker failed: {type(exc).__name__}: {LOG.scrub(str(exc))[:500]}") from exc
            if time.monotonic() - started > STABLE_RUN_SECONDS:
                failures = 0
            failures += 1
            error = {"error_type": type(exc).__name__, "message": LOG.scrub(str(exc))[:300]}
            if failures > settings.connect_retries:
                await _close_worker(worker)
                raise ConnectionFailure(
                    f"the chain is unreachable after {settings.connect_retries} retries"
                    f" ({error['error_type']}: {error['message']})"
                ) from None
            delay = min(settings.retry_backoff * 2 ** (failures - 1), MAX_RETRY_BACKOFF)
            LOG.emit("connection_retry", level="warning", attempt=failures, of=settings.connect_retries, delay_s=delay, **error)
            if ran:  # run() leaves the SDK worker half-initialised: build a fresh one
                await _close_worker(worker)
                worker = None
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return EXIT_OK
            except asyncio.TimeoutError:
                pass


# --- dry run and check ----------------------------------------------------------------------------
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
        prog="bootstrap.py",
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

    def __init__(self, grace: float) -> None:
        self.grace = grace  # live mode lets the SDK worker wind down; local modes stop at once
        self.stop = asyncio.Event()
        self.fatal: Optional[str] = None
        self._fatal_event = asyncio.Event()
        self.holder: dict[str, Any] = {}

    def request_stop(self, signame: str) -> None:
        if not self.stop.is_set():
            LOG.emit("stopping", signal=signame)
        self.stop.set()
        worker = self.holder.get("worker")
        if worker is not None:
            worker.stop()

    def fail(self, reason: str) -> None:
        self.fatal = reason
        self._fatal_event.set()

    async def run(self, coro: Any) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
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
    LOG.stream = real_stdout
    LOG.debug = (env.get("DEBUG") or "").strip().lower() not in FALSE_WORDS
    sys.stdout = PrintCapture(LOG)  # type: ignore[assignment]
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


def _main(args: argparse.Namespace, env: dict[str, str], mode: str) -> int:
    for key in ("ALLORA_MNEMONIC", "ALLORA_PRIVATE_KEY", "ALLORA_API_KEY"):
        LOG.add_secret(env.get(key))
    bundle_root = Path(args.bundle_root or _env(env, "BUNDLE_ROOT") or DEFAULT_BUNDLE_ROOT).resolve()
    LOG.emit("start", mode=mode, pid=os.getpid(), python=sys.version.split()[0], bundle_root=str(bundle_root))
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
    LOG.emit("config", **settings.summary(), wallet=wallet.source if wallet else None)
    if mode == "live":
        touch_heartbeat(settings.heartbeat_file)  # the import may take a while; the probe allows max-age seconds
    user = load_user_function(settings)
    LOG.emit("imported", function=user.name, is_async=user.is_async, passes="RunContext" if user.wants_context else "nonce")
    if mode == "check":  # the image smoke test: what live mode needs must be importable too
        _import_sdk()
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ImportFailure("prometheus-client is not installed; live mode serves metrics with it") from None

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    supervisor = _Supervisor(grace=STOP_GRACE_SECONDS if mode == "live" else 0.0)
    metrics = start_metrics(settings, required=mode == "live")
    adapter = Adapter(user, settings.max_seconds, metrics, LOG, settings.topic_id, settings.max_stuck_calls, supervisor.fail)

    async def body() -> int:
        beat = None
        if settings.heartbeat_file:
            beat = asyncio.ensure_future(heartbeat_loop(settings.heartbeat_file, settings.heartbeat_interval))
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

    code = loop.run_until_complete(supervisor.run(body()))
    if mode in ("live", "dry_run"):
        LOG.emit("stopped", exit_code=code)
    return code


if __name__ == "__main__":
    exit_code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Skip interpreter shutdown: it would join executor threads and wait on a stuck user call.
        os._exit(exit_code)
