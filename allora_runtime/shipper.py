"""Log shipping: every line the runtime writes — what the model printed on stdout and stderr, warnings, tracebacks,
the runtime's own events — also POSTed in batches to the platform (``POST /api/v1/logs``), so a model developer
without access to the cluster reads them (``allora-bundle logs``, the deployment page's live tail).

It is the results reporter's machinery (:class:`allora_runtime.reporter.ResultReporter`: a bounded queue, a thread,
retries with backoff and jitter, the projected ServiceAccount token read at each send, no redirects) with the
settings of a busier stream:

- on whenever results reporting is (``ALLORA_RESULTS_URL``), to ``ALLORA_LOGS_URL`` (default: the results URL
  with ``results`` made ``logs``); ``ALLORA_LOGS_RATE=0`` turns it off;
- at most ``ALLORA_LOGS_RATE`` lines a second (a token bucket of ``LOGS_BURST_SECONDS`` of it): beyond it lines
  are dropped and counted, ``allora_log_lines_dropped_total{reason="rate_limited"}``; so are the lines the API
  drops over its own per-pod limit. The pod log (stdout) keeps every line;
- batches gather for ``LOGS_LINGER_SECONDS`` (a model printing 1,000 lines a second makes a few POSTs a second);
- a line is the JSON log line as written, so it is already scrubbed of the wallet's secrets and bounded
  (``JsonLog``); a line over ``MAX_LOG_LINE_BYTES`` has its message cut here before it is queued;
- ``offer`` appends to a deque under a lock held for microseconds and returns: a prediction never waits on the
  network (``benchmarks/bench_log_shipping.py`` measures the cost per printed line).

Standard library only.
"""

from __future__ import annotations

import json
from typing import Optional

from allora_runtime.contract import (
    DEFAULT_LOGS_QUEUE_LIMIT,
    LOGS_BATCH_SIZE,
    LOGS_BURST_SECONDS,
    LOGS_LINGER_SECONDS,
    MAX_LOG_LINE_BYTES,
    RESULTS_FLUSH_SECONDS,
)
from allora_runtime.log import JsonLog, sendable
from allora_runtime.metrics import LOG_DROP_REASONS, Metrics
from allora_runtime.reporter import ResultReporter, _SendFailed
from allora_runtime.settings import ResultsSettings, redact_url


def bounded_line(line: str, limit: int = MAX_LOG_LINE_BYTES) -> str:
    """``line`` when it has at most ``limit`` bytes, else the same JSON object with its long strings cut
    (``… [N more characters]``) until it fits."""
    if len(line) <= limit // 4 or len(line.encode("utf-8", "replace")) <= limit:
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return json.dumps({"event": "print", "message": sendable(line, limit // 8)})
    for cut in (limit // 2, limit // 8, 200):
        shrunk = json.dumps(sendable(record, cut), ensure_ascii=False, default=str)
        if len(shrunk.encode("utf-8", "replace")) <= limit:
            return shrunk
    return json.dumps({k: record.get(k) for k in ("ts", "level", "event")} | {"message": "[a line too large to ship]"})


class LogShipper(ResultReporter):
    """The reporter, shipping log lines: ``offer(line)`` for every line the log writes.

    A platform without the logs endpoint (404/405: older than log shipping) turns shipping off, said once
    (``logs_shipping_off``): otherwise each refused batch's own ``logs_rejected`` line would be shipped, refused
    and logged again, a few lines a second for ever."""

    def offer(self, line: str) -> None:
        super().offer(bounded_line(line))

    def _send(self, batch: list[bytes], timeout: float):
        try:
            return super()._send(batch, timeout)
        except _SendFailed as failed:
            if failed.rejected and failed.detail.startswith(("HTTP 404", "HTTP 405")) and self.log.logs_tap == self.offer:
                self.log.logs_tap = None
                with self._wake:
                    lost, self._queue = len(self._queue), type(self._queue)()
                if lost:
                    self._count_drop("rejected", lost)
                self.log.emit("logs_shipping_off", level="warning", url=redact_url(self.url), error=failed.detail,
                              message="the platform has no logs endpoint: the model's log stays in the pod log only")  # fmt: skip
            raise


def start_shipper(settings: Optional[ResultsSettings], log: JsonLog) -> Optional[LogShipper]:
    """Start shipping when results reporting is on and ALLORA_LOGS_RATE is not 0: every line ``log`` writes from now
    on. It starts before the model is imported (what an import prints is shipped too), so before the metrics:
    :func:`count_in` connects them once they exist."""
    if settings is None or settings.logs_url is None:
        return None
    shipper = LogShipper(
        settings.logs_url, settings.token_file, log, limit=DEFAULT_LOGS_QUEUE_LIMIT, backoff=settings.retry_backoff,
        batch_size=LOGS_BATCH_SIZE, name="logs",
        body_key="lines", drop_reasons=LOG_DROP_REASONS, linger=LOGS_LINGER_SECONDS, rate=settings.logs_rate,
        burst=settings.logs_rate * LOGS_BURST_SECONDS,
    ).start()  # fmt: skip
    log.logs_tap = shipper.offer
    log.emit("logs_shipping", url=redact_url(settings.logs_url), lines_per_second=settings.logs_rate)
    return shipper


def count_in(shipper: Optional[LogShipper], metrics: Metrics) -> None:
    """Count the shipper's deliveries and drops in ``metrics`` from now on, and what it counted before."""
    if shipper is None:
        return
    shipper.on_sent, shipper.on_drop = metrics.log_lines_shipped, metrics.log_lines_lost
    metrics.log_lines_shipped(shipper.sent)
    for reason, count in shipper.dropped.items():
        if count:
            metrics.log_lines_lost(reason, count)


def stop_shipper(shipper: Optional[LogShipper], log: JsonLog) -> None:
    """Stop shipping, send the rest within RESULTS_FLUSH_SECONDS, and log what was delivered (that line is not shipped)."""
    if shipper is None:
        return
    log.logs_tap = None
    log.emit("logs_shipper_stopped", **shipper.close(RESULTS_FLUSH_SECONDS))
