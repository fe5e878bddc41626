"""Prometheus metrics for predictions and submissions (prometheus-client, imported only when enabled)."""

from __future__ import annotations

import os
import time

from allora_runtime.contract import ENV_PROMETHEUS_MULTIPROC_DIR
from allora_runtime.errors import ConfigError, ImportFailure
from allora_runtime.log import LOG
from allora_runtime.settings import Settings

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



def ignore_multiprocess_dir() -> None:
    """Drop ``PROMETHEUS_MULTIPROC_DIR`` from the environment, with a warning, before prometheus-client is imported.

    One process serves the runtime's metrics, so prometheus-client's multiprocess mode
    (which reads the variable once, at import) has nothing to gather; a directory that a
    volume hid would otherwise crash the first metric update. The model's own child
    processes do not inherit it either.
    """
    value = os.environ.pop(ENV_PROMETHEUS_MULTIPROC_DIR, None)
    if value is not None:
        LOG.emit(
            "multiprocess_metrics_ignored", level="warning", variable=ENV_PROMETHEUS_MULTIPROC_DIR, value=value,
            reason="one process serves the runtime's metrics; prometheus-client multiprocess mode is not used",
        )
