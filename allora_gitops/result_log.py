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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from allora_gitops.db.results import MAX_MESSAGE_CHARS, RECORD_BATCH_MAX, ResultRow, utc, value_text
from allora_gitops.errors import Problem, ResultsError

from allora_runtime.contract import (
    EVENT_PREDICTION,
    EVENT_PREDICTION_REFUSED,
    EVENT_SUBMISSION,
    EVENT_SUBMISSION_FAILED,
    RESULT_EVENTS,
)

MAX_REPORTED_PROBLEMS = 100  # lines named one by one; the rest are counted


class _Malformed(ValueError):
    pass


@dataclass
class ResultLog:
    """Reads one log; ``source`` names it in problems (a path, or ``<stdin>``). Counts fill in as rows are read."""

    source: str
    lines: int = 0
    results: int = 0
    skipped: int = 0  # not JSON, or not a result event
    unattributed: int = 0  # result events without a nonce (submission_failed from an older runtime)
    malformed: int = 0
    problems: list[Problem] = field(default_factory=list)

    def rows(self, text_lines: Iterable[str]) -> Iterator[ResultRow]:
        """Yield a ``ResultRow`` per good result line; at the end raise ``ResultsError`` if any line was malformed."""
        for number, line in enumerate(text_lines, start=1):
            self.lines = number
            event = _event(line)
            if event is None:
                self.skipped += 1
                continue
            try:
                row = result_row(event)
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


def report_rows(report: Any) -> tuple[list[ResultRow], int]:
    """A reporter's POST body (``{"results": [<result event object>, ...]}``, see allora_runtime/reporter.py) →
    (rows for ``record_results``, how many carried no nonce and were skipped).

    All or nothing: every malformed result is one ``Problem`` naming its index (``results[3]: nonce is missing``)
    in one ``ResultsError``; so is a body of another shape or with more than ``RECORD_BATCH_MAX`` results.
    """
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list):
        raise ResultsError('the body must be a JSON object {"results": [...]}')
    if len(results) > RECORD_BATCH_MAX:
        raise ResultsError(f"{len(results)} results in one report; send at most {RECORD_BATCH_MAX}")
    rows: list[ResultRow] = []
    problems: list[Problem] = []
    unattributed = 0
    for index, event in enumerate(results):
        where = f"results[{index}]"
        if not isinstance(event, dict) or event.get("event") not in RESULT_EVENTS:
            problems.append(Problem(f"{where}: not a result event ({', '.join(RESULT_EVENTS)})", code="result"))
            continue
        try:
            row = result_row(event)
        except _Malformed as exc:
            problems.append(Problem(f"{where}: {exc}", code="result"))
            continue
        if row is None:
            unattributed += 1
            continue
        found = row.problems()
        if found:
            problems.append(Problem(f"{where}: {'; '.join(found)}", code="result"))
            continue
        rows.append(row)
    if problems:
        raise ResultsError(f"{len(problems)} of {len(results)} results are malformed; none was stored", problems[:MAX_REPORTED_PROBLEMS])
    return rows, unattributed


def _event(line: str) -> dict[str, Any] | None:
    """The line's object when it is a result event, else None."""
    if '"event"' not in line:  # cheap: most noise never reaches the JSON parser
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("event") in RESULT_EVENTS:
        return event
    return None


def result_row(event: dict[str, Any]) -> ResultRow | None:
    """One result event → ``ResultRow`` (None when it carries no nonce and cannot be attributed);
    ``ValueError`` naming the field when a field has the wrong shape. Validation of ranges is ``ResultRow.problems``."""
    kind = event["event"]
    nonce = event.get("nonce")
    if nonce is None:
        if kind == EVENT_SUBMISSION_FAILED:
            return None
        raise _Malformed("nonce is missing")
    if not isinstance(nonce, int) or isinstance(nonce, bool):
        raise _Malformed(f"nonce must be a whole number, not {nonce!r}")
    ts = event.get("ts")
    try:
        observed_at = utc(ts) if ts is not None else None
    except (TypeError, ValueError):
        raise _Malformed(f"ts must be an ISO 8601 time with a zone, not {ts!r}") from None
    latency = _number(event, "latency_ms")
    if kind == EVENT_PREDICTION:
        if event.get("value") is None:
            raise _Malformed("value is missing")
        return ResultRow("prediction", nonce, "success", observed_at, value=_value(event), latency_ms=latency)
    if kind == EVENT_PREDICTION_REFUSED:
        reason = _text(event, "reason") or "exception"
        return ResultRow(
            "prediction", nonce, "timeout" if reason == "timeout" else "error", observed_at,
            reason=reason, error_type=_text(event, "error_type"), error_message=_message(event) or reason,
            error_where=_text(event, "where"), latency_ms=latency,
        )  # fmt: skip
    tx_hash = _text(event, "tx_hash")
    gas_used = event.get("gas_used")
    if gas_used is not None and (not isinstance(gas_used, int) or isinstance(gas_used, bool)):
        raise _Malformed(f"gas_used must be a whole number, not {gas_used!r}")
    common = dict(
        tx_hash=tx_hash.upper() if tx_hash else None, gas_used=gas_used, fee=_text(event, "fee"),
        latency_ms=latency, value=_value(event),
    )  # fmt: skip
    if kind == EVENT_SUBMISSION:
        code = event.get("code")
        if code in (None, 0):
            return ResultRow("submission", nonce, "success", observed_at, **common)
        return ResultRow(
            "submission", nonce, "error", observed_at, reason="tx_failed",
            error_message=f"the chain rejected the transaction with code {code}", **common,
        )  # fmt: skip
    return ResultRow(
        "submission", nonce, "error", observed_at, reason=_text(event, "reason") or "submit_failed",
        error_type=_text(event, "error_type"), error_message=_message(event) or "the submission failed", **common,
    )  # fmt: skip


def _value(event: dict[str, Any]) -> str | None:
    """The event's ``value`` as stored (``value_text``); ``_Malformed`` when it holds NaN or ±Infinity.

    Python's JSON reader accepts ``NaN``, ``Infinity`` and ``1e400`` (→ inf), but the runtime never reports
    such a value as a prediction (it refuses it: ``prediction_refused``, reason ``invalid_value``), and
    counted as a success it would raise the success rate with a value no topic accepts.
    """
    value = event.get("value")
    if type(value) is float:  # the common case, on the import's hot path: no encoder call
        finite = math.isfinite(value)
    elif isinstance(value, (dict, list)):
        try:
            json.dumps(value, allow_nan=False)
            finite = True
        except ValueError:
            finite = False
    else:
        finite = True
    if not finite:
        raise _Malformed(f"value must be finite, not {json.dumps(value)}"[:200])
    return value_text(value)


def _text(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{key} must be text, not {value!r}"[:200])
    return value


def _message(event: dict[str, Any]) -> str | None:
    text = _text(event, "message")
    return text[:MAX_MESSAGE_CHARS] if text else None


def _number(event: dict[str, Any], key: str) -> float | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _Malformed(f"{key} must be a number, not {value!r}"[:200])
    return float(value)
