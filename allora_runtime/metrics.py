"""Prometheus metrics for predictions and submissions (prometheus-client, imported only when enabled)."""

from __future__ import annotations

import os
import time
from typing import Optional

from allora_runtime.contract import ENV_PROMETHEUS_MULTIPROC_DIR
from allora_runtime.errors import ConfigError, ImportFailure
from allora_runtime.log import LOG
from allora_runtime.settings import Settings

# 1 ms to the 25 s timeout in 1-2-5 steps (and 15/20 s below the timeout), so p50/p95/p99 land in a bucket
# at most 2.5x wide anywhere in that range; 30 and 60 s catch sync calls that overran their deadline.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0,
)  # fmt: skip
FAILURE_REASONS = ("timeout", "exception", "invalid_value")
SUBMISSION_RESULTS = ("ok", "error", "already_submitted")  # already_submitted: the chain had our payload for that nonce
RESULT_DROP_REASONS = ("queue_full", "rejected", "refused")  # allora_runtime.reporter
LOG_DROP_REASONS = ("queue_full", "rate_limited", "rejected", "refused")  # allora_runtime.shipper
MAX_ERROR_TYPES = 20  # distinct `error_type` label values; any further type is counted as "other"
OTHER = "other"


class Metrics:
    """Prometheus metrics in a registry of their own; every method is a no-op when disabled.

    Cardinality is bounded by construction: labels carry only fixed sets (reason,
    result), exception class names (at most ``MAX_ERROR_TYPES``) and the model's
    identity (``allora_model_info``, one series). No value, nonce or secret is a
    label. ``settle_on_submission``: in live mode a round counts as failed or
    successful when its submission does (a refused prediction is also a failed
    submission, and must not be counted twice); locally, when the prediction does.
    """

    def __init__(self, enabled: bool, settle_on_submission: bool = False):
        self.enabled = False
        self.registry = None
        self.settle_on_submission = settle_on_submission
        self._error_types: set[str] = set()
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
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        self.latency = Histogram(
            "allora_prediction_latency_seconds", "Time spent in the model's run()", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.consecutive = Gauge(
            "allora_consecutive_failures", "Failed rounds since the last successful one (reset to 0 by a success)", registry=registry
        )
        self.last_success = Gauge(
            "allora_last_success_timestamp_seconds", "Unix time of the last valid prediction", registry=registry
        )
        self.submissions = Counter(
            "allora_submissions", "Chain submissions, by result and exception type", ["result", "error_type"], registry=registry
        )
        self.submissions.labels("ok", "")
        self.submissions.labels("already_submitted", "")
        self.gas_used = Counter("allora_gas_used", "Gas used by successful submissions (from the transaction response)", registry=registry)
        self.fees = Counter("allora_fees_paid_uallo", "Fees paid by successful submissions, in uallo", registry=registry)
        self.balance = None  # registered on the first read: no series (and no low-balance alert) before the worker knows it
        self.heartbeat = Gauge("allora_heartbeat_timestamp_seconds", "Unix time the event loop last beat", registry=registry)
        self.stuck = Gauge("allora_stuck_calls", "Timed-out sync calls still running in their thread", registry=registry)
        self.info = Gauge(
            "allora_model_info", "The model this runtime serves (always 1)", ["name", "version", "sha256", "network", "topic"], registry=registry
        )
        self.results_sent = Counter(
            "allora_results_sent", "Results delivered to the platform API (ALLORA_RESULTS_URL)", registry=registry
        )
        self.results_dropped = Counter(
            "allora_results_dropped",
            "Results never stored: queue_full (the oldest, beyond ALLORA_RESULTS_QUEUE_LIMIT), rejected (a batch or line the API"
            " refuses whole) or refused (one result the API refused in a batch it stored)",
            ["reason"], registry=registry,
        )  # fmt: skip
        for reason in RESULT_DROP_REASONS:
            self.results_dropped.labels(reason)
        self.log_lines_sent = Counter(
            "allora_log_lines_sent", "Log lines delivered to the platform API (POST /api/v1/logs)", registry=registry
        )
        self.log_lines_dropped = Counter(
            "allora_log_lines_dropped",
            "Log lines never stored: queue_full (the oldest, beyond the queue), rate_limited (over the pod's lines per"
            " second, here or at the API), rejected (a batch the API refuses whole) or refused (one line the API refused)",
            ["reason"], registry=registry,
        )  # fmt: skip
        self._log_dropped = {reason: self.log_lines_dropped.labels(reason) for reason in LOG_DROP_REASONS}  # per line: no lookup
        self.enabled = True

    def serve(self, port: int, address: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=address, registry=self.registry)

    def model_info(self, name: str, version: str, sha256: str, network: str, topic: object) -> None:
        if self.enabled:
            self.info.labels(name, version, sha256, network, "" if topic is None else str(topic)).set(1)

    def prediction(self, latency: float) -> None:
        if self.enabled:
            self.predictions.inc()
            self.latency.observe(latency)
            self.last_success.set(time.time())
            if not self.settle_on_submission:
                self.consecutive.set(0)

    def failure(self, reason: str, latency: float) -> None:
        if self.enabled:
            self.failures.labels(reason if reason in FAILURE_REASONS else OTHER).inc()
            self.latency.observe(latency)
            if not self.settle_on_submission:
                self.consecutive.inc()

    def submission(self, result: str, error_type: str = "", gas_used: Optional[int] = None, fee_uallo: Optional[int] = None) -> None:
        """One submission's outcome (``result`` in SUBMISSION_RESULTS); gas and fee are counted when the SDK's transaction response has them.

        ``already_submitted`` (the SDK's AlreadySubmittedError: the chain already holds this worker's payload
        for the nonce, e.g. after a restart) is counted but leaves ``allora_consecutive_failures`` alone.
        """
        if not self.enabled:
            return
        if result == "already_submitted":  # the nonce is fulfilled, by an earlier submission: neither a failure nor a new success
            self.submissions.labels(result, "").inc()
            return
        ok = result == "ok"
        self.submissions.labels("ok" if ok else "error", "" if ok else self._error_type(error_type)).inc()
        if gas_used:
            self.gas_used.inc(gas_used)
        if fee_uallo:
            self.fees.inc(fee_uallo)
        if self.settle_on_submission:
            if ok:
                self.consecutive.set(0)
            else:
                self.consecutive.inc()

    def result_sent(self, count: int) -> None:
        if self.enabled:
            self.results_sent.inc(count)

    def result_dropped(self, reason: str, count: int) -> None:
        if self.enabled:
            self.results_dropped.labels(reason if reason in RESULT_DROP_REASONS else OTHER).inc(count)

    def log_lines_shipped(self, count: int) -> None:
        if self.enabled:
            self.log_lines_sent.inc(count)

    def log_lines_lost(self, reason: str, count: int) -> None:
        if self.enabled:
            child = self._log_dropped.get(reason)
            (child if child is not None else self.log_lines_dropped.labels(OTHER)).inc(count)

    def wallet_balance(self, uallo: int) -> None:
        if not self.enabled:
            return
        if self.balance is None:
            from prometheus_client import Gauge

            self.balance = Gauge("allora_wallet_balance_uallo", "The wallet's balance when last read, in uallo", registry=self.registry)
        self.balance.set(uallo)

    def beat(self) -> None:
        if self.enabled:
            self.heartbeat.set(time.time())

    def stuck_calls(self, count: int) -> None:
        if self.enabled:
            self.stuck.set(count)

    def _error_type(self, name: str) -> str:
        name = name or "Exception"
        if name in self._error_types:
            return name
        if len(self._error_types) >= MAX_ERROR_TYPES:
            return OTHER
        self._error_types.add(name)
        return name


def start_metrics(settings: Settings, required: bool, settle_on_submission: bool = False) -> Metrics:
    """Serve the metrics on ``settings.metrics_port`` (0: disabled); ``allora_model_info`` is set at once."""
    if settings.metrics_port == 0:
        return Metrics(False)
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        if required:
            raise ImportFailure("prometheus-client is not installed; install it or set ALLORA_METRICS_PORT=0") from None
        LOG.emit("metrics_disabled", level="warning", reason="prometheus-client is not installed")
        return Metrics(False)
    metrics = Metrics(True, settle_on_submission)
    metrics.model_info(settings.name, settings.version, settings.bundle_sha256, settings.network.name, settings.topic_id)
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
