"""A deployment's resource usage read from Prometheus' HTTP API: CPU and memory against the limits, restarts.

Two requests per read, both bounded by one deadline (:data:`TIMEOUT_SECONDS`): an instant query
(``/api/v1/query``) for the current values and a range query (``/api/v1/query_range``) for the CPU and
memory series. Each quantity is one PromQL expression that prefers the cluster's sources and falls back to
the runtime's own process metrics (``a or on() b``: ``b`` only when ``a`` has no series):

* CPU cores: cAdvisor's ``rate(container_cpu_usage_seconds_total[2m])`` of the ``model`` container, else
  the runtime's ``rate(process_cpu_seconds_total[2m])`` (the runtime process alone, not a model worker);
* memory: cAdvisor's ``container_memory_working_set_bytes`` (what the OOM killer compares with the
  limit), else ``process_resident_memory_bytes``;
* restarts in 24 h: kube-state-metrics' ``increase(kube_pod_container_status_restarts_total[24h])``, else
  ``changes(process_start_time_seconds[24h])`` (a restarted container keeps its pod's scrape labels, so a
  new start time is a restart);
* limits: kube-state-metrics' ``kube_pod_container_resource_limits`` (what the cluster enforces), else
  what the caller knows (the rendered overlay in the GitOps repository).

cAdvisor and kube-state-metrics series are selected by ``namespace``, ``pod`` and ``container``; the
runtime's by the labels the rendered PodMonitor gives them (``namespace``, ``allora_deployment``), see
:mod:`allora_gitops.render.monitoring`. Nothing here raises: an unreachable, slow or failing Prometheus
becomes one line in :attr:`ResourceUsage.error`.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from allora_gitops.errors import UsageError
from allora_gitops.redact import display_url, redact_urls_in_text

PROMETHEUS_URL_ENV = "ALLORA_PROMETHEUS_URL"
TIMEOUT_SECONDS = 1.5  # the whole read: a page that shows resources waits no longer for them
RATE_WINDOW = "2m"  # four scrapes at the PodMonitor's 30 s interval (rate() needs two samples)
RESTARTS_WINDOW = "24h"
SERIES_SECONDS = 3600  # the series: the last hour…
SERIES_STEP_SECONDS = 60  # …one point a minute
QUERY_LABEL = "allora_query"  # tags each quantity in the combined answers
# Deployment states (allora_gitops.db.records) in which no pod runs this deployment: not on the base branch
# yet, or gone. The pods' series belong to the name on the network, whichever version runs.
NOT_RUNNING = ("pending", "committed", "abandoned", "retired")


def check_prometheus_url(url: str) -> str:
    """``url`` (the server's base URL, ``http(s)://host[:port][/prefix]``) without a trailing ``/``.

    Raises UsageError naming the setting, with the URL shown as :func:`~allora_gitops.redact.display_url`
    shows it (credentials in it — basic auth — are used, never printed).
    """
    text = url.strip()
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(
            f"the Prometheus URL must be http(s)://host[:port][/path] without a query (--prometheus-url or "
            f"${PROMETHEUS_URL_ENV}), not {display_url(text)}"
        )
    return text.rstrip("/")


def prometheus_url_setting(flag: Optional[str]) -> Optional[str]:
    """The ``--prometheus-url`` flag, else ``$ALLORA_PROMETHEUS_URL``, checked; None: metrics not configured."""
    value = (flag or "").strip() or os.environ.get(PROMETHEUS_URL_ENV, "").strip()
    return check_prometheus_url(value) if value else None


@dataclass(frozen=True)
class Limits:
    """A container's limits: CPU in cores, memory in bytes (None: not set or not known)."""

    cpu_cores: Optional[float] = None
    memory_bytes: Optional[float] = None

    @classmethod
    def from_quantities(cls, cpu: Optional[str], memory: Optional[str]) -> "Limits":
        """From Kubernetes quantities (``500m``, ``512Mi``), as the rendered overlay states them."""
        from allora_gitops.render.spec import quantity_value

        return cls(quantity_value(cpu) if cpu else None, quantity_value(memory) if memory else None)


@dataclass
class ResourceUsage:
    """What Prometheus says about one deployment's containers now and over the last hour.

    ``configured`` False: no Prometheus URL (nothing else is set). ``error``: one line saying why some or
    all of it could not be read. Series are ``[(unix seconds, value)]``; CPU in cores, memory in bytes.
    """

    configured: bool
    prometheus: Optional[str] = None  # the URL as it may be printed
    error: Optional[str] = None
    not_read: Optional[str] = None  # why Prometheus was not asked (the deployment does not run)
    source: Optional[str] = None  # where CPU and memory came from: "cadvisor" or "process"
    cpu_cores: Optional[float] = None
    memory_bytes: Optional[float] = None
    restarts: Optional[int] = None  # within RESTARTS_WINDOW
    restarts_source: Optional[str] = None  # "kube-state-metrics" or "process"
    cpu_limit_cores: Optional[float] = None
    memory_limit_bytes: Optional[float] = None
    limits_source: Optional[str] = None  # "kube-state-metrics" or "repository"
    cpu_series: list[tuple[float, float]] = field(default_factory=list)
    memory_series: list[tuple[float, float]] = field(default_factory=list)
    series_seconds: int = SERIES_SECONDS

    @property
    def cpu_ratio(self) -> Optional[float]:
        return _ratio(self.cpu_cores, self.cpu_limit_cores)

    @property
    def memory_ratio(self) -> Optional[float]:
        return _ratio(self.memory_bytes, self.memory_limit_bytes)

    @property
    def has_values(self) -> bool:
        return self.cpu_cores is not None or self.memory_bytes is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_series"] = [[t, v] for t, v in self.cpu_series]
        d["memory_series"] = [[t, v] for t, v in self.memory_series]
        d["cpu_ratio"], d["memory_ratio"] = self.cpu_ratio, self.memory_ratio
        return d

    def summary_line(self) -> str:
        """One line for a terminal: ``cpu 0.012 of 1 cores (1.2 %), memory 48.1 MiB of 512 MiB (9.4 %), 0 restarts in 24h``."""
        if not self.configured:
            return "metrics not configured (no Prometheus URL)"
        if self.not_read:
            return self.not_read
        if not self.has_values and self.restarts is None:
            return self.error or f"no series for this deployment in Prometheus at {self.prometheus}"
        parts = [
            f"cpu {_cores(self.cpu_cores)}" + (f" of {_cores(self.cpu_limit_cores)} cores" if self.cpu_limit_cores else " cores")
            + (f" ({self.cpu_ratio:.1%})" if self.cpu_ratio is not None else ""),
            f"memory {_mib(self.memory_bytes)}" + (f" of {_mib(self.memory_limit_bytes)}" if self.memory_limit_bytes else "")
            + (f" ({self.memory_ratio:.1%})" if self.memory_ratio is not None else ""),
            f"{self.restarts if self.restarts is not None else '-'} restarts in {RESTARTS_WINDOW}",
        ]  # fmt: skip
        return ", ".join(parts) + (f" ({self.error})" if self.error else "")


def _ratio(value: Optional[float], limit: Optional[float]) -> Optional[float]:
    return value / limit if value is not None and limit else None


def _cores(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3g}"


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


# --- the queries --------------------------------------------------------------------------------


def _tagged(name: str, expr: str) -> str:
    return f'label_replace({expr}, "{QUERY_LABEL}", "{name}", "", "")'


def _sourced(source: str, expr: str) -> str:
    return f'label_replace({expr}, "source", "{source}", "", "")'


def resource_queries(namespace: str, instance: str) -> dict[str, str]:
    """Quantity → PromQL for one deployment (``instance``: ``<name>-<network>``), each falling back as the
    module docstring says; the ``source`` label of an answer names the series that answered."""
    from allora_gitops.render.monitoring import pod_selector, runtime_selector

    pod, rt = pod_selector(namespace, instance), runtime_selector(namespace, instance)
    return {
        "cpu": f"{_sourced('cadvisor', f'sum(rate(container_cpu_usage_seconds_total{{{pod}}}[{RATE_WINDOW}]))')}"
               f" or on() {_sourced('process', f'sum(rate(process_cpu_seconds_total{{{rt}}}[{RATE_WINDOW}]))')}",
        "memory": f"{_sourced('cadvisor', f'sum(container_memory_working_set_bytes{{{pod}}})')}"
                  f" or on() {_sourced('process', f'sum(process_resident_memory_bytes{{{rt}}})')}",
        "restarts": f"{_sourced('kube-state-metrics', f'sum(increase(kube_pod_container_status_restarts_total{{{pod}}}[{RESTARTS_WINDOW}]))')}"
                    f" or on() {_sourced('process', f'sum(changes(process_start_time_seconds{{{rt}}}[{RESTARTS_WINDOW}]))')}",
        "cpu_limit": f'max(kube_pod_container_resource_limits{{{pod},resource="cpu"}})',
        "memory_limit": f'max(kube_pod_container_resource_limits{{{pod},resource="memory"}})',
    }  # fmt: skip


def instant_query(queries: dict[str, str]) -> str:
    """Every quantity in one expression, each answer tagged with ``allora_query="<quantity>"``."""
    return " or ".join(_tagged(name, f"({expr})") for name, expr in queries.items())


def series_query(queries: dict[str, str]) -> str:
    return " or ".join(_tagged(name, f"({queries[name]})") for name in ("cpu", "memory"))


# --- reading --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _client():
    """One client per process, kept alive between reads: a new one loads the CA bundle (tens of ms)."""
    import httpx

    return httpx.Client(headers={"Accept": "application/json"}, follow_redirects=False)


class _Unanswered(Exception):
    """One line for the user: why Prometheus gave no answer."""


def _get(client, url: str, path: str, params: dict, deadline: float, timeout: float) -> list[dict]:
    import httpx

    late = _Unanswered(f"Prometheus at {display_url(url)} did not answer within {timeout:g} s")
    left = deadline - time.monotonic()
    if left <= 0:
        raise late
    try:
        response = client.get(url + path, params=params, timeout=left)
    except httpx.TimeoutException:
        raise late from None
    except httpx.HTTPError as exc:
        reason = redact_urls_in_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise _Unanswered(f"Prometheus at {display_url(url)} is unreachable: {reason}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        detail = f": {str(error).splitlines()[0][:200]}" if error else ""
        raise _Unanswered(f"Prometheus at {display_url(url)} answered HTTP {response.status_code}{detail}")
    return (body.get("data") or {}).get("result") or []


def _number(text: Any) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_resources(
    url: Optional[str],
    namespace: str,
    instance: str,
    *,
    limits: Optional[Callable[[], Optional[Limits]]] = None,
    timeout: float = TIMEOUT_SECONDS,
    series_seconds: int = SERIES_SECONDS,
    step_seconds: int = SERIES_STEP_SECONDS,
    now: Optional[float] = None,
) -> ResourceUsage:
    """The resource usage of deployment ``instance`` in ``namespace`` from the Prometheus at ``url``
    (None: ``ResourceUsage(configured=False)``).

    ``limits`` is called only when Prometheus has no kube-state-metrics limits (it may be slow: it gets
    what is left of ``timeout``, in a thread). Never raises for Prometheus' sake: failures land in
    ``error``, and the whole read takes at most about ``timeout`` seconds.
    """
    if not url:
        return ResourceUsage(configured=False)
    deadline = time.monotonic() + timeout
    usage = ResourceUsage(configured=True, prometheus=display_url(url), series_seconds=series_seconds)
    queries = resource_queries(namespace, instance)
    end = now if now is not None else time.time()
    client = _client()
    try:
        answers = _get(client, url, "/api/v1/query", {"query": instant_query(queries), "time": f"{end:.3f}"}, deadline, timeout)
    except _Unanswered as exc:
        usage.error = str(exc)
        return usage
    for a in answers:
        name, source = a.get("metric", {}).get(QUERY_LABEL), a.get("metric", {}).get("source")
        value = _number((a.get("value") or [None, None])[1])
        if name == "cpu":
            usage.cpu_cores, usage.source = value, source
        elif name == "memory":
            usage.memory_bytes, usage.source = value, usage.source or source
        elif name == "restarts" and value is not None:
            usage.restarts, usage.restarts_source = int(round(value)), source
        elif name in ("cpu_limit", "memory_limit") and value:
            setattr(usage, "cpu_limit_cores" if name == "cpu_limit" else "memory_limit_bytes", value)
            usage.limits_source = "kube-state-metrics"
    if usage.has_values:
        try:
            params = {"query": series_query(queries), "start": f"{end - series_seconds:.3f}", "end": f"{end:.3f}", "step": str(step_seconds)}
            for a in _get(client, url, "/api/v1/query_range", params, deadline, timeout):
                points = [(float(t), v) for t, raw in a.get("values") or [] if (v := _number(raw)) is not None]
                name = a.get("metric", {}).get(QUERY_LABEL)
                if name == "cpu":
                    usage.cpu_series = points
                elif name == "memory":
                    usage.memory_series = points
        except _Unanswered as exc:
            usage.error = f"{exc} (series not shown)"
    if limits is not None and usage.limits_source is None and usage.has_values:
        known = _within(limits, deadline)
        if known is not None and (known.cpu_cores or known.memory_bytes):
            usage.cpu_limit_cores, usage.memory_limit_bytes, usage.limits_source = known.cpu_cores, known.memory_bytes, "repository"
    return usage


def _within(fn: Callable[[], Optional[Limits]], deadline: float) -> Optional[Limits]:
    """``fn()`` when it returns before ``deadline`` (and does not fail); None otherwise (it finishes alone)."""
    from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="limits")
    try:
        return pool.submit(fn).result(timeout=max(0.05, deadline - time.monotonic()))
    except FutureTimeout:
        return None
    except Exception:  # noqa: BLE001 - limits are an extra: the usage is shown without them
        return None
    finally:
        pool.shutdown(wait=False)


LIMITS_TTL_SECONDS = 60.0  # a merged change of limits shows within a minute; a page view never waits on git twice in one


@functools.cache
def _limits_cache():
    """Process-wide (repo, ref, name, network) → Limits, each kept LIMITS_TTL_SECONDS (cachetools.TTLCache), and its lock."""
    import threading

    from cachetools import TTLCache

    return TTLCache(maxsize=4096, ttl=LIMITS_TTL_SECONDS), threading.Lock()


def repository_limits(repo: str, ref: str, name: str, network: str) -> Optional[Limits]:
    """The limits the base branch's overlay of ``name`` on ``network`` declares (None: not deployed there).

    Read from git (a fetch of ``ref``) at most once per :data:`LIMITS_TTL_SECONDS` per deployment: without
    kube-state-metrics every page view and ``GET /api/deployments/{id}`` asks, and a fetch from a Git
    server costs a round trip or more. An answer that failed (git unreachable) is not kept.
    """
    key = (repo, ref, name, network)
    cache, lock = _limits_cache()
    with lock:  # a TTLCache is not thread-safe; the git read itself runs outside the lock
        if key in cache:
            return cache[key]
    found = _repository_limits(repo, ref, name, network)
    with lock:
        cache[key] = found
    return found


def _repository_limits(repo: str, ref: str, name: str, network: str) -> Optional[Limits]:
    from allora_gitops.gitops.inventory import repo_deployments

    for row in repo_deployments(repo, ref, name, full=True):
        if row.get("network") == network:
            return Limits.from_quantities(row.get("cpu_limit"), row.get("memory_limit"))
    return None


def deployment_resources(
    prometheus_url: Optional[str], namespace: str, name: str, network: str, status: str, *, repo: Optional[str] = None, ref: str = "main"
) -> ResourceUsage:
    """:func:`read_resources` of the deployment ``name`` on ``network`` (its pods: ``<name>-<network>-…``),
    with the limits of ``repo``'s overlay at ``ref`` when Prometheus has none (no kube-state-metrics).
    A deployment in a :data:`NOT_RUNNING` ``status`` is not looked up: the pods there run another version."""
    if prometheus_url and status in NOT_RUNNING:
        return ResourceUsage(configured=True, prometheus=display_url(prometheus_url), not_read=f"not read: the deployment is {status}, so no pod runs it")
    limits = (lambda: repository_limits(repo, ref, name, network)) if repo else None
    return read_resources(prometheus_url, namespace, f"{name}-{network}", limits=limits)
