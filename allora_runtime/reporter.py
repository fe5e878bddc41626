"""Results reporting: each result line of the log, POSTed in small batches to the platform API.

When ``ALLORA_RESULTS_URL`` is set, every result event the runtime logs (``RESULT_EVENTS`` of
:mod:`allora_runtime.contract`: prediction, prediction_refused, submission, submission_failed) is also
queued here, as the very JSON object of its log line, and a background thread POSTs them::

    POST {ALLORA_RESULTS_URL}
    Authorization: Bearer <the projected ServiceAccount token, read from ALLORA_RESULTS_TOKEN_FILE for each send>
    Content-Type: application/json

    {"results": [{"ts": ..., "level": ..., "event": "prediction", "nonce": 7, "value": "0.5", ...}, ...]}

so the API reads them with the same reader as ``allora-gitops results import`` (``allora_gitops.result_log``).

- A prediction never waits: ``offer`` appends to an in-memory queue under a lock and returns.
- The queue holds at most ``limit`` results; beyond it the oldest is dropped and counted
  (``allora_results_dropped_total{reason="queue_full"}``).
- A failed send (connection refused, timeout, 5xx, 401/403 while the token rotates) is retried with exponential
  backoff and jitter ("equal jitter": half the delay fixed, half random, so restarted pods do not retry in step);
  the batch goes back to the front of the queue, so order is kept and the oldest are still the first dropped.
- A batch the API refuses whole (any 4xx but 401/403 while the token rotates, 408 and 429) is not retried: it is
  dropped and counted (``reason="rejected"``), so one bad batch cannot hold the queue forever. A line too large
  to fit in any batch is dropped the same way when it is offered.
- The API answers a batch per result (``allora_gitops/api/results.py``): results it refused (a time out of
  range, a value too long) are dropped and counted (``reason="refused"``) and logged once per batch
  (``results_refused``, the first few with their nonce and why); the rest of the batch is stored.
- Nothing a model produces can make ``offer`` raise or the thread stop: result lines are cleaned and bounded
  where they are written (``allora_runtime.log.sendable``), encoded with replacement here, and an unexpected
  error in a send is one failed send.
- The API is idempotent on (deployment, nonce, kind): a batch sent again after a lost response is harmless.
- ``close`` sends what is left for at most a bounded time, then reports what it could not send.

The token is never logged: log lines name the token file, never its content. Standard library only.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from allora_runtime.contract import (
    MAX_RESULTS_RETRY_BACKOFF,
    RESULTS_BATCH_BYTES,
    RESULTS_BATCH_SIZE,
    RESULTS_FLUSH_SECONDS,
    RESULTS_SEND_TIMEOUT,
)
from allora_runtime.log import JsonLog
from allora_runtime.metrics import RESULT_DROP_REASONS, Metrics
from allora_runtime.settings import ResultsSettings, redact_url

# 4xx answers worth another try: the token is rotating (401/403), the server timed out reading (408), or asked us
# to slow down (429). Any other 4xx means the API will never accept this batch: retrying it would block the queue.
RETRIED_CLIENT_STATUSES = (401, 403, 408, 429)
MAX_LOGGED_REFUSALS = 3  # per results_refused line


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would follow a 301/302/303 as a GET without the body (the batch
    counted as sent, its results lost) and carry the bearer token to whatever host ``Location`` names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect)


class _SendFailed(Exception):
    def __init__(self, detail: str, rejected: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.rejected = rejected


class ResultReporter:
    """A bounded queue of result lines and the thread that POSTs them; see the module docstring.

    ``on_drop(reason, count)`` and ``on_sent(count)`` feed the metrics (called from the sending thread or,
    for ``queue_full``, from the thread that logs the result).

    The same machinery ships the model's log lines (``allora_runtime/shipper.py``), configured by: ``name`` (the
    thread's and its own log events' prefix: ``logs_send_failed``), ``body_key`` (``{"lines": [...]}``),
    ``drop_reasons``, ``linger`` (seconds the thread waits for a batch to fill: 1,000 lines a second are a
    few POSTs, not 1,000) and ``rate``/``burst`` (a token bucket in ``offer``: lines beyond ``rate`` a second
    are dropped and counted as ``rate_limited``). An answer's ``dropped`` (lines the API would not take over
    its own rate limit) is counted as ``rate_limited`` too.
    """

    def __init__(
        self,
        url: str,
        token_file: str,
        log: JsonLog,
        *,
        limit: int,
        backoff: float,
        batch_size: int = RESULTS_BATCH_SIZE,
        send_timeout: float = RESULTS_SEND_TIMEOUT,
        on_drop: Optional[Callable[[str, int], None]] = None,
        on_sent: Optional[Callable[[int], None]] = None,
        name: str = "results",
        body_key: str = "results",
        drop_reasons: tuple[str, ...] = RESULT_DROP_REASONS,
        linger: float = 0.0,
        rate: Optional[float] = None,
        burst: Optional[float] = None,
    ):
        self.name, self.body_key, self.linger = name, body_key, linger
        self.rate, self.burst = rate, burst if burst is not None else (rate or 0.0)
        self._tokens, self._refilled = self.burst, time.monotonic()
        self._offering = threading.local()  # set while this thread is inside offer(): see offer()
        self.url = url
        self.token_file = token_file
        self.log = log
        self.limit = limit
        self.backoff = backoff
        self.batch_size = batch_size
        self.send_timeout = send_timeout
        self.on_drop = on_drop or (lambda reason, count: None)
        self.on_sent = on_sent or (lambda count: None)
        self.sent = 0
        self.dropped = dict.fromkeys(drop_reasons, 0)
        self._queue: deque[bytes] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._closing = False
        self._stopping = threading.Event()  # set by close(); a new result does not cut a backoff short, this does
        self._deadline = float("inf")  # monotonic time after which close() stops sending
        self._thread = threading.Thread(target=self._run, name=f"allora-{name}", daemon=True)

    def start(self) -> "ResultReporter":
        self._thread.start()
        return self

    def offer(self, line: str) -> None:
        """Queue one result (its JSON log line); drop the oldest waiting one when the queue is full. Never blocks on
        I/O, never raises: it runs inside the log call of the model's prediction.

        A signal handler that logs runs on the main thread between two bytecodes, possibly while this very thread
        holds the queue's lock inside ``offer``: its line is dropped (counted) rather than waiting forever on it."""
        if getattr(self._offering, "busy", False):
            self.dropped["queue_full"] += 1  # no lock: this thread holds it; a rare, approximate count
            return
        self._offering.busy = True
        try:
            self._offer(line)
        finally:
            self._offering.busy = False

    def _offer(self, line: str) -> None:
        if self.rate is not None:  # first: a line over the rate costs no encoding
            with self._wake:
                limited = not self._take_token()
                if limited:
                    self.dropped["rate_limited"] += 1
            if limited:
                self.on_drop("rate_limited", 1)
                return
        data = line.rstrip("\n").encode("utf-8", "replace")  # a lone surrogate the log missed is a "?", not a crash
        if len(data) > RESULTS_BATCH_BYTES:  # it could never be sent: the API refuses bodies past its limit
            self._count_drop("rejected", 1)
            # never sent, so not the API's refusal: `sent: false` says so, and (for a result) the nonce says which window
            what = "result line" if self.body_key == "results" else "line"
            self.log.emit(f"{self.name}_rejected", level="error", **{self.body_key: 1}, sent=False, nonce=_nonce_of(line),
                          error=f"a {what} of {len(data)} bytes is larger than any batch (at most {RESULTS_BATCH_BYTES}): not sent")  # fmt: skip
            return
        reason = None
        with self._wake:
            if self._closing and time.monotonic() > self._deadline:
                reason = "queue_full"  # too late to be sent: counted, not silently lost
            else:
                if len(self._queue) >= self.limit:
                    self._queue.popleft()
                    reason = "queue_full"
                was_empty = not self._queue
                self._queue.append(data)
                if was_empty:  # the thread waits only on an empty queue (or lingers on a short one: no need to wake it)
                    self._wake.notify()
            if reason:
                self.dropped[reason] += 1
        if reason:
            self.on_drop(reason, 1)

    def _take_token(self) -> bool:
        """One line's worth of the rate (the lock held)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def close(self, timeout: float) -> dict[str, int]:
        """Send what is queued for at most ``timeout`` seconds; return ``sent``, ``dropped``, ``pending`` counts."""
        with self._wake:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._wake.notify()
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        with self._wake:
            return {"sent": self.sent, "dropped": sum(self.dropped.values()), "pending": len(self._queue)}

    # --- the sending thread ----------------------------------------------------------------------
    def _run(self) -> None:
        """The thread: ``_loop`` until it returns (closed); an unexpected error is logged and the loop starts again,
        so the reporter never stops sending while the runtime runs."""
        while True:
            try:
                return self._loop()
            except Exception as exc:  # noqa: BLE001 - a dead thread would leave every later result unsent, silently
                self.log.emit(f"{self.name}_reporter_error", level="error", error_type=type(exc).__name__)
                self._stopping.wait(self.backoff)

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                if self.linger and not self._closing:  # let a batch gather, a bounded wait after its first line
                    until = time.monotonic() + self.linger
                    while len(self._queue) < self.batch_size and not self._closing and (left := until - time.monotonic()) > 0:
                        self._wake.wait(left)
                batch = [self._queue.popleft()]  # bytes: one encoded result each
                size = len(batch[0])
                while self._queue and len(batch) < self.batch_size and size + len(self._queue[0]) <= RESULTS_BATCH_BYTES:
                    size += len(self._queue[0])
                    batch.append(self._queue.popleft())
                remaining = self._deadline - time.monotonic()
            try:
                refused, limited = self._send(batch, min(self.send_timeout, max(remaining, 0.1)))
            except _SendFailed as failed:
                if failed.rejected:
                    self._count_drop("rejected", len(batch))
                    self.log.emit(f"{self.name}_rejected", level="error", **{self.body_key: len(batch)}, error=failed.detail)
                    continue
                failures += 1
                self._requeue(batch)
                delay = min(self.backoff * 2 ** (failures - 1), MAX_RESULTS_RETRY_BACKOFF)
                delay = delay / 2 + random.uniform(0, delay / 2)
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... failure in a row: a bounded log
                    self.log.emit(
                        f"{self.name}_send_failed", level="warning", attempt=failures, error=failed.detail,
                        retry_in_s=round(delay, 3), pending=self.pending(),
                    )  # fmt: skip
                if self._stopping.is_set():  # flushing: keep trying until the deadline, still not in a busy loop
                    time.sleep(max(0.0, min(delay, self._deadline - time.monotonic())))
                else:
                    self._stopping.wait(delay)  # close() ends the wait: one more try within its deadline
                continue
            if failures:
                self.log.emit(f"{self.name}_send_recovered", after_attempts=failures, pending=self.pending())
                failures = 0
            if refused:
                self._count_drop("refused", len(refused))
                key = "nonce" if self.body_key == "results" else "index"
                self.log.emit(
                    f"{self.name}_refused", level="error", **{self.body_key: len(refused)}, of=len(batch),
                    first=[{key: r.get(key), "message": str(r.get("message", ""))[:300]} for r in refused[:MAX_LOGGED_REFUSALS]],
                )  # fmt: skip
            if limited and "rate_limited" in self.dropped:
                self._count_drop("rate_limited", limited)
            delivered = max(len(batch) - len(refused) - limited, 0)
            with self._wake:
                self.sent += delivered
            self.on_sent(delivered)

    def _requeue(self, batch: list[bytes]) -> None:
        """Put an unsent batch back in front, in order; what does not fit is the oldest, and is dropped."""
        lost = 0
        with self._wake:
            for data in reversed(batch):
                if len(self._queue) >= self.limit:
                    lost += 1
                else:
                    self._queue.appendleft(data)
            self.dropped["queue_full"] += lost
        if lost:
            self.on_drop("queue_full", lost)

    def _count_drop(self, reason: str, count: int) -> None:
        with self._wake:
            self.dropped[reason] += count
        self.on_drop(reason, count)

    def _send(self, batch: list[bytes], timeout: float) -> tuple[list[dict], int]:
        """POST one batch; the results the API refused one by one (``refused`` of its answer; none from an older
        API) and how many it dropped over its rate limit (``dropped``). ``_SendFailed`` for a failed send,
        ``rejected`` when the API will never take this batch."""
        try:
            return self._post(batch, timeout)
        except _SendFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever urllib or the answer does, the thread goes on
            raise _SendFailed(self.log.scrub(f"{type(exc).__name__}: {exc}")[:200]) from None

    def _post(self, batch: list[bytes], timeout: float) -> tuple[list[dict], int]:
        token = self._token()
        body = b'{"' + self.body_key.encode() + b'":[' + b",".join(batch) + b"]}"
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                answer = response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                location = redact_url(exc.headers.get("Location") or "?")
                raise _SendFailed(f"HTTP {exc.code}: redirect to {location} not followed; set ALLORA_RESULTS_URL to the final URL") from None
            rejected = 400 <= exc.code < 500 and exc.code not in RETRIED_CLIENT_STATUSES
            raise _SendFailed(f"HTTP {exc.code}{_problem_detail(exc)}", rejected=rejected) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _SendFailed(self.log.scrub(f"{type(exc).__name__}: {reason}")[:200]) from None
        try:
            parsed = json.loads(answer)
            refused, dropped = parsed.get("refused") or [], parsed.get("dropped") or 0
        except (ValueError, AttributeError):
            return [], 0  # not the API's JSON answer (an older API, a proxy's 200): nothing known to be refused
        refused = [r for r in refused if isinstance(r, dict)][: len(batch)] if isinstance(refused, list) else []
        dropped = min(dropped, len(batch) - len(refused)) if isinstance(dropped, int) and dropped > 0 else 0
        return refused, dropped

    def _token(self) -> str:
        """The projected token as the kubelet last wrote it (it rotates the file well before expiry)."""
        try:
            token = Path(self.token_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _SendFailed(f"cannot read the token file {self.token_file} ({type(exc).__name__})") from None
        if not token or any(c.isspace() for c in token):
            raise _SendFailed(f"the token file {self.token_file} does not hold a token")
        return token


def _problem_detail(exc: urllib.error.HTTPError) -> str:
    """``: <detail>`` of the API's problem answer (what was wrong with the batch), or nothing."""
    try:
        detail = json.loads(exc.read(1 << 16)).get("detail")
    except Exception:  # noqa: BLE001 - a body that is not the API's problem: the status says enough
        return ""
    return f": {str(detail)[:200]}" if detail else ""


def start_reporter(settings: Optional[ResultsSettings], metrics: Metrics, log: JsonLog) -> Optional[ResultReporter]:
    """Start reporting when ALLORA_RESULTS_URL is set: every result line ``log`` writes from now on is queued."""
    if settings is None:
        return None
    reporter = ResultReporter(
        settings.url, settings.token_file, log, limit=settings.queue_limit, backoff=settings.retry_backoff,
        on_drop=metrics.result_dropped, on_sent=metrics.result_sent,
    ).start()  # fmt: skip
    log.results_tap = reporter.offer
    log.emit("results_reporting", url=redact_url(settings.url), token_file=settings.token_file, queue_limit=settings.queue_limit)
    return reporter


def stop_reporter(reporter: Optional[ResultReporter], log: JsonLog) -> None:
    """Stop queueing, send the rest within RESULTS_FLUSH_SECONDS, and log what was delivered and what was not."""
    if reporter is None:
        return
    log.results_tap = None
    log.emit("results_reporter_stopped", **reporter.close(RESULTS_FLUSH_SECONDS))


def _nonce_of(line: str) -> Optional[int]:
    """The ``nonce`` of a result line (None when it has none or is not JSON): only for the rare line too large to send."""
    try:
        nonce = json.loads(line).get("nonce")
    except (ValueError, AttributeError):
        return None
    return nonce if isinstance(nonce, int) and not isinstance(nonce, bool) else None
