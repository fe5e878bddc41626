"""JSON log lines on stdout: one object per line, secrets scrubbed, other output wrapped as ``print`` events."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

from allora_runtime.contract import EVENT_PRINT, RESULT_EVENTS
from allora_runtime.errors import PredictionRefused

# What the results channel can carry (the platform's allora_gitops.untrusted is the authority; the runtime imports
# nothing from it, so it keeps its own small copy): no NUL (PostgreSQL text refuses it), no lone surrogate (an
# os.fsdecode file name in an exception: no encoder writes it), each text field of a result bounded.
REPLACEMENT = "\ufffd"
MAX_RESULT_TEXT = 4000  # characters of one text field of a result line; the API keeps 4000 of a message
MAX_RESULT_TRACEBACK = 16000  # the traceback a DEBUG run adds to a refused prediction
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")  # in a str, a code point in D800-DFFF is always a lone surrogate
_SURROGATE = re.compile("[\ud800-\udfff]")


def sendable(value: Any, limit: Optional[int] = MAX_RESULT_TEXT, scrub: Callable[[str], str] = lambda text: text) -> Any:
    """``value`` as a result line carries it: in every string (dict keys and list items too) NUL and lone
    surrogates become U+FFFD, and a string longer than ``limit`` is cut, ending in ``… [N more characters]``.
    ``limit=None`` cleans without cutting (a prediction's value: what is reported is what was submitted).
    ``scrub`` runs on each string before it is cut, so a cut never leaves half a secret unrecognised."""
    if isinstance(value, str):
        value = scrub(value)
        if _UNSENDABLE.search(value) is not None:
            value = _UNSENDABLE.sub(REPLACEMENT, value)
        if limit is not None and len(value) > limit:
            keep = max(limit - len(f" … [{len(value)} more characters]"), 0)
            value = value[:keep] + f" … [{len(value) - keep} more characters]"
        return value
    if isinstance(value, dict):
        return {sendable(k, limit, scrub): sendable(v, limit, scrub) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sendable(v, limit, scrub) for v in value]
    return value


def _loggable(value: Any) -> Any:
    """``value`` if JSON can write it, else a short text saying what it was (never its digits or contents)."""
    try:
        json.dumps(value, default=str)
        return value
    except (ValueError, TypeError, RecursionError):
        return f"<{type(value).__name__} that cannot be written as JSON>"


class JsonLog:
    """One JSON object per line, written under a lock; registered secrets are scrubbed from every line.

    A Python signal handler runs on the main thread between two bytecodes, possibly in the middle of this
    thread's own write — and the SDK's SIGTERM handler (``AlloraWorker._setup_signal_handlers``) logs. So the
    lock is reentrant, and a line emitted while this thread is already writing is held (``_pending``) and
    written right after the interrupted line: never spliced into it, never waiting on a lock this very
    thread holds (that wait was a deadlock: the process hung on SIGTERM until Kubernetes killed it).
    """

    def __init__(self, stream: Any):
        self.stream = stream
        self.debug = False
        self._lock = threading.RLock()
        self._depth = 0  # > 0 while this log is writing (on the thread that holds the lock)
        self._pending: list[str] = []  # lines emitted by a signal handler that interrupted a write
        self._secrets: list[str] = []
        # Called with each result line (RESULT_EVENTS) once written: the results reporter's queue, when on.
        self.results_tap: Optional[Callable[[str], None]] = None
        # Called with every line once written: the log shipper's queue (allora_runtime/shipper.py), when on.
        self.logs_tap: Optional[Callable[[str], None]] = None

    def add_secret(self, value: Optional[str]) -> None:
        """Scrub ``value`` (8 characters or more) from every later line, in each form it can take there.

        Besides the value as given: stripped, with its whitespace runs made single spaces (a
        mnemonic's words are the same wallet however they are spaced, and code that handles
        it prints it normalized), and as JSON escapes it (lines are scrubbed after encoding,
        so a newline or quote inside the secret would otherwise never match).
        """
        if not value or len(value) < 8:
            return
        forms = {value, value.strip(), " ".join(value.split())}
        forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in forms}
        for form in sorted(forms, key=len, reverse=True):  # longest first: a shorter form may sit inside it
            if len(form) >= 8 and form not in self._secrets:
                self._secrets.append(form)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def format(self, event: str, level: str = "info", **fields: Any) -> str:
        """One scrubbed JSON line (with its newline): ``ts`` (UTC, ms), ``level``, ``event``, then ``fields``."""
        now = time.time()
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": level,
            "event": event,
        }
        if event in RESULT_EVENTS:  # what the reporter sends: cleaned and bounded here, once, for log and API alike
            fields = {
                k: sendable(v, None if k == "value" else MAX_RESULT_TRACEBACK if k == "traceback" else MAX_RESULT_TEXT, self.scrub)
                for k, v in fields.items()
            }
        record.update(fields)
        try:
            line = json.dumps(record, default=str, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):  # an int of 5,000 digits, a circular dict: the line still goes out
            line = json.dumps({k: _loggable(v) for k, v in record.items()}, default=str, ensure_ascii=False)
        if not line.isascii() and _SURROGATE.search(line) is not None:  # any event: a line must always encode as UTF-8
            line = _SURROGATE.sub(REPLACEMENT, line)
        return self.scrub(line) + "\n"

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        line = self.format(event, level, **fields)
        with self._lock:
            self._write_in_turn(line)
        tap = self.results_tap
        if tap is not None and event in RESULT_EVENTS:
            try:
                tap(line)  # outside the lock: the reporter's own log lines must not wait on it
            except Exception:  # noqa: BLE001 - reporting must never cost the prediction that logged this line
                pass
        tap = self.logs_tap
        if tap is not None:
            try:
                tap(line)  # the line as written: scrubbed; a signal handler's lines (emit_from_signal_handler) are not shipped
            except Exception:  # noqa: BLE001 - shipping must never cost the prediction that printed this line
                pass

    def emit_from_signal_handler(self, event: str, level: str = "info", **fields: Any) -> None:
        """emit() for a signal handler: the interrupted code may hold the lock, so never wait for it.

        When the interrupted code is itself a write to the stream (blocked on a full pipe: a slow
        log reader), writing again is a reentrant call, so the line is dropped rather than
        spliced into the middle of the interrupted one.
        """
        line = self.format(event, level, **fields)
        locked = self._lock.acquire(blocking=False)
        try:
            if locked:
                self._write_in_turn(line)
            else:
                self._write(line)
        except RuntimeError:
            pass  # "reentrant call inside <_io.BufferedWriter>": see above
        finally:
            if locked:
                self._lock.release()

    def _write_in_turn(self, line: str) -> None:
        """Write ``line`` (the lock held), or, when it interrupted this thread's own write, leave it to that write."""
        if self._depth:
            self._pending.append(line)
            return
        self._depth += 1
        try:
            while self._pending:  # held lines whose writer had finished its loop when they came
                self._write(self._pending.pop(0))
            self._write(line)
            while self._pending:
                self._write(self._pending.pop(0))
        finally:
            self._depth -= 1

    def _write(self, line: str) -> None:
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
        """File descriptor 1: while a :class:`FdCapture` is installed, a pipe whose lines become print events."""
        return 1


class FdCapture:
    """File descriptor ``fd`` becomes a pipe; every line written to it becomes a ``print`` event.

    On fd 1, Python's ``print`` is wrapped by :class:`PrintCapture`; this catches what bypasses
    ``sys.stdout``: child processes (``subprocess.run(["echo", …])``), native code and
    ``os.write(1, …)``. The log itself writes to a duplicate of the original descriptor
    (``stream``), so every byte on the real stdout is a JSON line. On fd 2 (stderr: warnings,
    a child's error output, library chatter) the lines become ``print`` events with
    ``"stream": "stderr"`` and level ``warning``, scrubbed like every other line; nothing the
    model's process writes reaches the pod log unscrubbed. Lines longer than ``max_line``
    bytes are split; bytes that are not UTF-8 are replaced (U+FFFD).
    """

    def __init__(self, log: JsonLog, fd: int = 1, max_line: int = 16384):
        self._log = log
        self._fd = fd
        self._max_line = max_line
        self._fields = {} if fd == 1 else {"level": "warning", "stream": "stderr"}  # fd 1 or 2: what a process writes to
        (sys.stdout if fd == 1 else sys.stderr).flush()
        self._saved = os.dup(fd)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self._read_end = read_end
        # The original descriptor, behind our pipe: where the log goes from now on (fd 1).
        self.stream = os.fdopen(self._saved, "w", encoding="utf-8", errors="replace", closefd=False)
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"allora-fd{fd}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
            while len(pending) > self._max_line:
                self._emit(pending[: self._max_line])
                pending = pending[self._max_line :]
        if pending:
            self._emit(pending)
        os.close(self._read_end)

    def _emit(self, raw: bytes) -> None:
        for start in range(0, max(len(raw), 1), self._max_line):
            text = raw[start : start + self._max_line].decode("utf-8", "replace").rstrip()
            if text.strip():
                self._log.emit(EVENT_PRINT, message=text, **self._fields)

    def close(self, timeout: float = 1.0) -> None:
        """Give the file descriptor back and wait (at most ``timeout`` s) for the lines already written.

        Bounded because a child that outlives us (``sleep 600 &``) keeps the pipe open.
        """
        if self._closed:
            return
        self._closed = True
        try:
            os.dup2(self._saved, self._fd)  # closes our write end of the pipe
        except OSError:
            return
        self._thread.join(timeout)


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

