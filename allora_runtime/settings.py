"""Settings: model.yaml overridden by the environment, and the wallet. Every bad value is a ConfigError naming its field."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from allora_runtime.contract import (
    ENV_BUNDLE_SHA256,
    DEFAULT_CONNECT_RETRIES,
    DEFAULT_FEE_TIER,
    DEFAULT_HEARTBEAT_FILE,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_MAX_AGE,
    ENV_HEARTBEAT_MAX_AGE,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_STUCK_CALLS,
    DEFAULT_METRICS_ADDRESS,
    DEFAULT_METRICS_PORT,
    DEFAULT_NETWORK,
    DEFAULT_POLLING_INTERVAL,
    DEFAULT_RESULTS_QUEUE_LIMIT,
    DEFAULT_RESULTS_RETRY_BACKOFF,
    DEFAULT_RESULTS_TOKEN_FILE,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_STARTUP_LIMIT,
    ENV_STARTUP_LIMIT,
    DEFAULT_WALLET_DIR,
    ENV_RESULTS_QUEUE_LIMIT,
    ENV_RESULTS_RETRY_BACKOFF,
    ENV_RESULTS_TOKEN_FILE,
    ENV_RESULTS_URL,
    ENV_LOGS_RATE,
    ENV_LOGS_URL,
    DEFAULT_LOGS_RATE,
    ENV_MAX_RUNTIME,
    FALSE_WORDS,
    FEE_TIERS,
)
from allora_runtime.errors import ConfigError, ImportFailure

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
    heartbeat_max_age: float
    startup_limit: float
    connect_retries: int
    retry_backoff: float
    max_stuck_calls: int
    bundle_sha256: str = ""  # ALLORA_BUNDLE_SHA256: the archive digest, for allora_model_info (the Deployment sets it)
    results: Optional["ResultsSettings"] = None  # ALLORA_RESULTS_URL set: results are also POSTed to the platform API
    max_runtime: Optional[float] = None  # ALLORA_MAX_RUNTIME seconds: stop and exit 0 when reached (None: run until stopped)

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats: the configured interval, but at least three beats per probe max age."""
        return min(self.heartbeat_interval, self.heartbeat_max_age / 3)

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
            "max_runtime": self.max_runtime,
            "api_key": "set" if self.api_key else "unset",
            "metrics_port": self.metrics_port,
            "heartbeat_file": self.heartbeat_file,
            "startup_limit": self.startup_limit,
            "connect_retries": self.connect_retries,
            "max_stuck_calls": self.max_stuck_calls,
            "results_url": redact_url(self.results.url) if self.results else None,
        }


@dataclass
class ResultsSettings:
    """Where results are reported (allora_runtime/reporter.py); the token file is read at each send, never here.

    ``token_file`` is absolute: a relative ALLORA_RESULTS_TOKEN_FILE is resolved against the directory the runtime
    starts in, here, before it changes to the bundle's workdir (read after that, it would name another file)."""

    url: str
    token_file: str
    queue_limit: int
    retry_backoff: float
    logs_url: Optional[str] = None  # POST /api/v1/logs (allora_runtime/shipper.py); None: the model's lines are not shipped
    logs_rate: float = 0.0  # lines per second at most


def logs_url_for(results_url: str) -> Optional[str]:
    """``https://platform/api/v1/results`` → ``https://platform/api/v1/logs``: the same API, beside the results."""
    base, slash, last = results_url.partition("?")[0].rstrip("/").rpartition("/")
    return f"{base}/logs" if slash and last == "results" else None


def results_settings(env: dict[str, str]) -> Optional[ResultsSettings]:
    """None when ALLORA_RESULTS_URL is unset; ConfigError naming the variable when a value is wrong."""
    url = _env(env, ENV_RESULTS_URL)
    if url is None:
        return None
    if not re.match(r"^https?://[^/?#\s]+(/\S*)?$", url):
        raise ConfigError(f"{ENV_RESULTS_URL} must be an http:// or https:// URL, got {redact_url(url)!r}")
    logs_url = _env(env, ENV_LOGS_URL) or logs_url_for(url)
    if logs_url is not None and not re.match(r"^https?://[^/?#\s]+(/\S*)?$", logs_url):
        raise ConfigError(f"{ENV_LOGS_URL} must be an http:// or https:// URL, got {redact_url(logs_url)!r}")
    logs_rate = _number(_env(env, ENV_LOGS_RATE) or DEFAULT_LOGS_RATE, ENV_LOGS_RATE, allow_zero=True)
    return ResultsSettings(
        url=url,
        token_file=os.path.abspath(_env(env, ENV_RESULTS_TOKEN_FILE) or DEFAULT_RESULTS_TOKEN_FILE),
        queue_limit=_positive_int(_env(env, ENV_RESULTS_QUEUE_LIMIT) or DEFAULT_RESULTS_QUEUE_LIMIT, ENV_RESULTS_QUEUE_LIMIT),
        retry_backoff=_number(_env(env, ENV_RESULTS_RETRY_BACKOFF) or DEFAULT_RESULTS_RETRY_BACKOFF, ENV_RESULTS_RETRY_BACKOFF),
        logs_url=logs_url if logs_rate > 0 else None,
        logs_rate=logs_rate,
    )


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
    """model.yaml as `allora-bundle validate` reads it (allora_gitops/bundle/text.py, which this package
    cannot import): a UTF-8/16/32 byte-order mark decides, else UTF-8."""
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


def model_variables(bundle_root: Path) -> dict[str, str]:
    """model.yaml's ``environment.variables`` as text ({} when absent; ``allora-bundle validate`` checked the names).

    The Deployment sets them in the container; the image's smoke test (``--check``) has no Deployment, so the
    runtime sets the ones the environment lacks before the import.
    """
    environment = load_manifest(bundle_root).get("environment")
    variables = environment.get("variables") if isinstance(environment, dict) else None
    if not isinstance(variables, dict):
        return {}
    return {str(k): str(v) for k, v in variables.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}


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
        heartbeat_max_age=_number(_env(env, ENV_HEARTBEAT_MAX_AGE) or DEFAULT_HEARTBEAT_MAX_AGE, ENV_HEARTBEAT_MAX_AGE),
        startup_limit=_number(_env(env, ENV_STARTUP_LIMIT) or DEFAULT_STARTUP_LIMIT, ENV_STARTUP_LIMIT),
        connect_retries=_positive_int(_env(env, "ALLORA_CONNECT_RETRIES") or DEFAULT_CONNECT_RETRIES, "ALLORA_CONNECT_RETRIES"),
        retry_backoff=_number(_env(env, "ALLORA_RETRY_BACKOFF") or DEFAULT_RETRY_BACKOFF, "ALLORA_RETRY_BACKOFF"),
        max_stuck_calls=_positive_int(_env(env, "ALLORA_MAX_STUCK_CALLS") or DEFAULT_MAX_STUCK_CALLS, "ALLORA_MAX_STUCK_CALLS"),
        bundle_sha256=_sha256(_env(env, ENV_BUNDLE_SHA256)),
        results=results_settings(env),
        max_runtime=_number(_env(env, ENV_MAX_RUNTIME), ENV_MAX_RUNTIME) if _env(env, ENV_MAX_RUNTIME) is not None else None,
    )


def _sha256(value: Optional[str]) -> str:
    if value is None:
        return ""
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{ENV_BUNDLE_SHA256} must be 64 lowercase hex digits, got {value[:80]!r}")
    return value


URL_SCHEMES = ("grpc+https", "grpc+http")
REST_SCHEMES = ("rest+https", "rest+http")
# Why a REST endpoint is refused wherever a network is set (runtime, model.yaml, render, publish): checked
# against allora-sdk 1.3.0 (tests/test_rest_network.py keeps both facts under test).
REST_UNSUPPORTED = (
    "allora-sdk 1.3.0 cannot run a worker over REST: its REST clients never open their HTTP session"
    ' (every query fails with "Session not initialized") and they send Simulate and BroadcastTx as GET,'
    " which a Cosmos REST gateway answers only with POST, so no payload could be submitted;"
    " use the network's gRPC endpoint (grpc+https://HOST:PORT)"
)


def rest_network_problem(value: Any) -> Optional[str]:
    """The reason ``value`` (a network setting) cannot be used when it is a REST URL (``rest+https://…``,
    ``rest+http://…``), else None. The URL is not repeated: it may carry credentials."""
    if isinstance(value, str) and value.split("://", 1)[0].strip().lower() in REST_SCHEMES and "://" in value:
        return f"a REST network URL cannot be used: {REST_UNSUPPORTED}"
    return None


def _network_settings(env: dict[str, str], manifest_network: Any, file: str) -> NetworkSettings:
    raw = _env(env, "ALLORA_NETWORK")
    what = "ALLORA_NETWORK"
    if raw is None:
        raw, what = manifest_network, f"{file}: allora.network"
        if raw not in ("testnet", "mainnet"):
            raise ConfigError(f"{what} must be testnet or mainnet, got {raw!r}")
    if raw in ("testnet", "mainnet"):
        return NetworkSettings(name=raw)
    rest = rest_network_problem(raw)
    if rest is not None:
        raise ConfigError(f"{what}: {rest}")
    scheme = raw.split("://", 1)[0] if "://" in raw else None
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{what} must be testnet, mainnet or a gRPC URL ({', '.join(s + '://…' for s in URL_SCHEMES)}),"
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

