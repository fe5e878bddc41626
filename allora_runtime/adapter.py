"""The adapter: what the SDK (and --dry-run/--check) calls for each window: timeout, value check, one log line."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from allora_runtime.contract import DEFAULT_MAX_STUCK_CALLS
from allora_runtime.errors import PredictionRefused, RuntimeFailure
from allora_runtime.log import JsonLog
from allora_runtime.metrics import Metrics
from allora_runtime.user import UserFunction, _plain, _where, check_prediction

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


@dataclass(frozen=True)
class SdkCall:
    """One call the SDK worker made of the adapter in live mode: the window, and what the model gave for it.

    Kept (``Adapter.calls``) until the runtime reads that window's result from ``worker.run()``: the SDK
    calls the model for the next window before the runtime reads this one's result (see ``live.attribute``).
    """

    nonce: int
    ok: bool
    value: Any = None  # JSON form of the value the SDK was handed (None when refused)
    latency: float = 0.0  # seconds run() took


MAX_PENDING_CALLS = 1000  # calls whose result is not read yet; far above the SDK's 10 windows per poll


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
        # The SDK's calls, oldest first, whose results the runtime has not read yet: the SDK queues each
        # window's result and calls the model for the next window before the runtime reads it, so "the
        # latest call" is not the window of the result being read. live.attribute pairs them.
        self.calls: "deque[SdkCall]" = deque(maxlen=MAX_PENDING_CALLS)

    async def __call__(self, context: Any) -> Any:
        """The SDK's callback: RunContext in, a checked value out (or PredictionRefused naming the window:
        nothing is submitted). Each call is recorded in ``calls``."""
        nonce = context.nonce
        try:
            outcome = await self.predict(nonce, context)
        except RuntimeFailure as exc:
            self.calls.append(SdkCall(nonce, ok=False))
            raise PredictionRefused("stopping", str(exc), nonce) from None
        self.calls.append(SdkCall(nonce, outcome.ok, outcome.shown, outcome.latency))
        if outcome.ok:
            return outcome.value
        raise PredictionRefused(outcome.reason, outcome.message, nonce)

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

