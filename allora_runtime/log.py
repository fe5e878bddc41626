"""JSON log lines on stdout: one object per line, secrets scrubbed, other output wrapped as ``print`` events."""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

from allora_runtime.contract import EVENT_PRINT, RESULT_EVENTS
from allora_runtime.errors import PredictionRefused

class JsonLog:
    """One JSON object per line, written under a lock; registered secrets are scrubbed from every line."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.debug = False
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        # Called with each result line (RESULT_EVENTS) once written: the results reporter's queue, when on.
        self.results_tap: Optional[Callable[[str], None]] = None

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
        tap = self.results_tap
        if tap is not None and event in RESULT_EVENTS:
            tap(line)  # outside the lock: the reporter's own log lines must not wait on it


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
                self._log.emit(EVENT_PRINT, message=line.rstrip())
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._buffer = self._buffer, ""
        if rest.strip():
            self._log.emit(EVENT_PRINT, message=rest.rstrip())

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

