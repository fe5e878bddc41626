"""The runtime's JSON-lines log (``kubectl logs``, ``python -m allora_runtime --dry-run``) read as submission results.

Every stdout line of the runtime is one JSON object with ``ts``, ``level`` and ``event``. Four events are
results; each becomes one ``ResultRow``:

- ``prediction``          nonce, value, latency_ms               → kind prediction, success
- ``prediction_refused``  nonce, reason, error_type, message,    → kind prediction, timeout when the reason
                          latency_ms, where                        is timeout, else error
- ``submission``          nonce, value, tx_hash, code,           → kind submission, success (error when the
                          latency_ms (gas_used, fee when known)    chain's code is not 0)
- ``submission_failed``   nonce, error_type, message, reason,    → kind submission, error
                          value, latency_ms, tx_hash when known

Anything else (other events, lines that are not JSON: pip output, a shell's noise) is skipped and counted.
A result line with a missing or wrong field is a problem naming its line; ``ResultLog.rows`` yields the
good rows and, once the input is exhausted, raises ``ResultsError`` listing every problem, so a caller
writing inside a transaction (``db.results.import_results``) writes nothing.

The runtime writes each submission line with the nonce its transaction carries (``allora_runtime.live.attribute``);
runtimes before that could name the next window after a catch-up poll, and older ones wrote ``submission_failed``
without a nonce: such a line cannot be tied to a result, so it is counted as ``unattributed`` and
skipped rather than refused.

Every field passes ``allora_gitops.untrusted`` on its way in: NUL and lone surrogates become U+FFFD, messages
and places are cut to their bounds, a class name is folded to ASCII, a time that has no UTC value refuses its
result and one too far in the future is clamped to the receive time (reported as ``adjusted``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Optional

from allora_gitops.db.results import MAX_MESSAGE_CHARS, MAX_WHERE_CHARS, RECORD_BATCH_MAX, ResultRow, value_text
from allora_gitops.errors import Problem, ResultsError
from allora_gitops.untrusted import UntrustedValue, ascii_identifier, bound_text, check_time, clean_json, clean_text

from allora_runtime.contract import (
    EVENT_PREDICTION,
    EVENT_PREDICTION_REFUSED,
    EVENT_SUBMISSION,
    EVENT_SUBMISSION_FAILED,
    RESULT_EVENTS,
)
from allora_runtime.errors import PredictionRefused
from allora_runtime.user import check_prediction

MAX_REPORTED_PROBLEMS = 100  # lines named one by one; the rest are counted
# a line that names a result event but is not JSON (a NUL byte, a line cut short): refused, never skipped as noise
_NAMES_RESULT_EVENT = re.compile(r'"event"\s*:\s*"(?:%s)"' % "|".join(RESULT_EVENTS))


class _Malformed(ValueError):
    pass


@dataclass
class ResultLog:
    """Reads one log; ``source`` names it in problems (a path, or ``<stdin>``). Counts fill in as rows are read.

    ``received_at``: the clock a reported time is checked against (``untrusted.check_time``; default: now, when
    ``rows`` starts). ``adjusted`` counts results whose time was in the future and is recorded as ``received_at``.
    """

    source: str
    lines: int = 0
    results: int = 0
    skipped: int = 0  # not JSON, or not a result event
    unattributed: int = 0  # result events without a nonce (submission_failed from an older runtime)
    malformed: int = 0
    adjusted: int = 0
    problems: list[Problem] = field(default_factory=list)
    received_at: Optional[datetime] = None

    def rows(self, text_lines: Iterable[str]) -> Iterator[ResultRow]:
        """Yield a ``ResultRow`` per good result line; at the end raise ``ResultsError`` if any line was malformed."""
        received_at = self.received_at or datetime.now(timezone.utc)
        for number, line in enumerate(text_lines, start=1):
            self.lines = number
            try:
                event = _event(line)
            except _Malformed as exc:
                self._problem(number, str(exc))
                continue
            if event is None:
                self.skipped += 1
                continue
            try:
                row, adjusted = read_result(event, received_at)
            except _Malformed as exc:
                self._problem(number, f"{event['event']} line: {exc}")
                continue
            if row is None:
                self.unattributed += 1
                continue
            found = row.problems()
            if found:
                self._problem(number, f"{event['event']} line: {'; '.join(found)}")
                continue
            self.adjusted += adjusted is not None
            self.results += 1
            yield row
        if self.malformed:
            more = self.malformed - len(self.problems)
            raise ResultsError(
                f"{self.source}: {self.malformed} malformed result line(s); nothing was imported"
                + (f" ({more} more not shown)" if more else ""),
                self.problems,
            )

    def _problem(self, number: int, message: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(Problem(message, file=self.source, line=number, code="result"))


@dataclass(frozen=True)
class ItemNote:
    """What happened to one result of a report that was not simply stored: refused (and why), or adjusted."""

    index: int  # its position in the report's ``results``
    nonce: Optional[int]  # as sent, when it was a whole number
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "nonce": self.nonce, "message": self.message}


@dataclass
class ReportReading:
    """``report_rows``' answer: the rows to store, and per result what was refused or adjusted."""

    received: int
    rows: list[ResultRow] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # each row's position in the report's ``results``
    refused: list[ItemNote] = field(default_factory=list)
    adjusted: list[ItemNote] = field(default_factory=list)  # stored, with its time clamped to the receive time
    unattributed: int = 0  # submission failures without a nonce: skipped, not refused


def report_rows(report: Any, *, received_at: Optional[datetime] = None) -> ReportReading:
    """A reporter's POST body (``{"results": [<result event object>, ...]}``, see allora_runtime/reporter.py) →
    the rows for ``record_results`` and one note per result refused (index, nonce, why) or adjusted.

    One bad result never costs the others: each is read on its own. Only a body of another shape, or with more than
    ``RECORD_BATCH_MAX`` results, raises ``ResultsError`` (the whole report is refused).
    """
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list):
        raise ResultsError('the body must be a JSON object {"results": [...]}')
    if len(results) > RECORD_BATCH_MAX:
        raise ResultsError(f"{len(results)} results in one report; send at most {RECORD_BATCH_MAX}")
    received_at = received_at or datetime.now(timezone.utc)
    reading = ReportReading(received=len(results))
    for index, event in enumerate(results):
        nonce = event.get("nonce") if isinstance(event, dict) else None
        nonce = nonce if isinstance(nonce, int) and not isinstance(nonce, bool) else None

        def refuse(message: str) -> None:
            reading.refused.append(ItemNote(index, nonce, message[:500]))

        if not isinstance(event, dict) or event.get("event") not in RESULT_EVENTS:
            refuse(f"not a result event ({', '.join(RESULT_EVENTS)})")
            continue
        try:
            row, adjusted = read_result(event, received_at)
        except _Malformed as exc:
            refuse(str(exc))
            continue
        if row is None:
            reading.unattributed += 1
            continue
        found = row.problems()
        if found:
            refuse("; ".join(found))
            continue
        if adjusted is not None:
            reading.adjusted.append(ItemNote(index, nonce, adjusted))
        reading.rows.append(row)
        reading.indices.append(index)
    return reading


def _event(line: str) -> dict[str, Any] | None:
    """The line's object when it is a result event, else None; ``_Malformed`` for a line that names a result
    event but is not JSON (a NUL byte inside, a line cut short), so it is refused with its line, not skipped."""
    if '"event"' not in line:  # cheap: most noise never reaches the JSON parser
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: [[[[… nested deeper than the parser goes
        if _NAMES_RESULT_EVENT.search(line):
            raise _Malformed("a result line that is not valid JSON (cut short, or holding a control character such as NUL)") from None
        return None
    if isinstance(event, dict) and event.get("event") in RESULT_EVENTS:
        return event
    return None


def result_row(event: dict[str, Any]) -> ResultRow | None:
    """``read_result``'s row, times checked against the clock now; for callers that need no note."""
    return read_result(event, datetime.now(timezone.utc))[0]


def read_result(event: dict[str, Any], received_at: datetime) -> tuple[ResultRow | None, str | None]:
    """One result event → (``ResultRow``, None or why it was adjusted); the row is None when the event carries no
    nonce and cannot be attributed. ``_Malformed`` naming the field when a field has the wrong shape or a value
    that cannot be stored (``untrusted``); ranges are ``ResultRow.problems``."""
    kind = event["event"]
    nonce = event.get("nonce")
    if nonce is None:
        if kind == EVENT_SUBMISSION_FAILED:
            return None, None
        raise _Malformed("nonce is missing")
    if not isinstance(nonce, int) or isinstance(nonce, bool):
        raise _Malformed(f"nonce must be a whole number, not {clean_text(repr(nonce))}"[:200])
    ts = event.get("ts")
    adjusted = None
    if ts is None:
        observed_at = None
    else:
        try:
            observed_at, adjusted = check_time(ts, received_at=received_at)  # its messages show ts as repr: escaped
        except UntrustedValue as exc:
            raise _Malformed(str(exc)) from None
    latency = _number(event, "latency_ms")
    if kind == EVENT_PREDICTION:
        if event.get("value") is None:
            raise _Malformed("value is missing")
        return ResultRow("prediction", nonce, "success", observed_at, value=_value(event), latency_ms=latency), adjusted
    if kind == EVENT_PREDICTION_REFUSED:
        reason = _text(event, "reason") or "exception"
        return ResultRow(
            "prediction", nonce, "timeout" if reason == "timeout" else "error", observed_at,
            reason=reason, error_type=_class_name(event), error_message=_message(event) or reason,
            error_where=_where(event), latency_ms=latency,
        ), adjusted  # fmt: skip
    tx_hash = _text(event, "tx_hash")
    gas_used = event.get("gas_used")
    if gas_used is not None and (not isinstance(gas_used, int) or isinstance(gas_used, bool)):
        raise _Malformed(f"gas_used must be a whole number, not {clean_text(repr(gas_used))}"[:200])
    common = dict(
        tx_hash=tx_hash.upper() if tx_hash else None, gas_used=gas_used, fee=_text(event, "fee"),
        latency_ms=latency, value=_value(event),
    )  # fmt: skip
    if kind == EVENT_SUBMISSION:
        code = event.get("code")
        if code in (None, 0):
            return ResultRow("submission", nonce, "success", observed_at, **common), adjusted
        return ResultRow(
            "submission", nonce, "error", observed_at, reason="tx_failed",
            error_message=bound_text(clean_text(f"the chain rejected the transaction with code {code}"), MAX_MESSAGE_CHARS), **common,
        ), adjusted  # fmt: skip
    return ResultRow(
        "submission", nonce, "error", observed_at, reason=_text(event, "reason") or "submit_failed",
        error_type=_class_name(event), error_message=_message(event) or "the submission failed", **common,
    ), adjusted  # fmt: skip


def _value(event: dict[str, Any]) -> str | None:
    """The event's ``value`` as stored (``value_text``), its text cleaned; ``_Malformed`` when it holds NaN or ±Infinity.

    Python's JSON reader accepts ``NaN``, ``Infinity`` and ``1e400`` (→ inf), but the runtime never reports
    such a value as a prediction (it refuses it: ``prediction_refused``, reason ``invalid_value``), and
    counted as a success it would raise the success rate with a value no topic accepts. A value longer than
    ``MAX_VALUE_CHARS`` is refused by ``ResultRow.problems``, never cut: it is the prediction itself.

    For the same reason every other value the runtime would refuse is refused here, by the runtime's own check
    (``allora_runtime.user.check_prediction``): a string that is not a finite decimal number (``"NaN"``,
    ``"abc"``), a boolean, a list, an empty dict, an empty label.
    """
    value = event.get("value")
    if value is None:  # a failed submission of a refused window: nothing was sent
        return None
    if type(value) is float:  # the common case, on the import's hot path: no encoder call
        finite = math.isfinite(value)
    elif isinstance(value, (dict, list)):
        value = clean_json(value)
        try:
            json.dumps(value, allow_nan=False)
            finite = True
        except ValueError:
            finite = False
    else:
        if isinstance(value, str):
            value = clean_text(value)
        finite = True
    if not finite:
        raise _Malformed(f"value must be finite, not {json.dumps(value)}"[:200])
    if type(value) is not float:
        try:
            check_prediction(value)
        except PredictionRefused as refused:
            raise _Malformed(clean_text(f"value: {refused.message}")[:200]) from None
    try:
        return value_text(value)
    except ValueError:  # an int of more digits than Python converts (sys.get_int_max_str_digits)
        raise _Malformed("value is a number too long to store") from None


def _text(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{key} must be text, not {clean_text(repr(value))}"[:200])
    return clean_text(value)


def _message(event: dict[str, Any]) -> str | None:
    text = _text(event, "message")
    return bound_text(text, MAX_MESSAGE_CHARS) if text else None


def _where(event: dict[str, Any]) -> str | None:
    text = _text(event, "where")
    return bound_text(text, MAX_WHERE_CHARS) if text else None


def _class_name(event: dict[str, Any]) -> str | None:
    text = _text(event, "error_type")
    return ascii_identifier(text) if text else None


def _number(event: dict[str, Any], key: str) -> float | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _Malformed(f"{key} must be a number, not {clean_text(repr(value))}"[:200])
    try:
        return float(value)
    except OverflowError:  # an int beyond a float's range
        raise _Malformed(f"{key} must be a number of milliseconds from 0 to one day") from None
