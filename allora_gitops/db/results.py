"""Submission results: what each deployment's runtime predicted and submitted, stored once per nonce and kind.

The functions take an open psycopg connection (``Records.connection``, autocommit) so the CLI, the
platform API and tests share them:

- ``record_results(conn, deployment_id, rows)``: a small batch (the runtime reporter's POST), validated,
  one statement, idempotent on (deployment, nonce, kind); ``record_each`` the same, but a row the database
  refuses is refused alone;
- ``import_results(conn, deployment_id, rows)``: a stream of any length (a log file), staged with COPY
  in one transaction: all of it or nothing;
- ``deployment_result_summary(conn, deployment_id)``: the last N results, success rate and latency
  percentiles over 1 h / 24 h / 7 d, error types: all computed by PostgreSQL;
- ``deployment_overviews(conn, deployment_ids)``: the deployments page's columns (newest result, newest
  success, 24 h rate and latency) of many deployments in one statement;
- ``prune_results(conn, older_than)``: retention, by dropping partitions (``result_partitions``).

The first report of a (deployment, nonce, kind) wins: a row is never overwritten by a later report, and a
report of the same key at another time adds nothing (the writers of one deployment take its advisory lock
and skip keys any partition holds: the table's key includes the time, migration 0016).
Free text (value, error message, where) is stored with secret-looking parts redacted by the database's
``allora_redact_secrets`` (0001); the CHECK constraints stay the last line of defence.
"""

from __future__ import annotations

import json
import math
import operator
import re
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Iterable


from allora_gitops.errors import DatabaseError, RecordRefused, Problem, ResultsError, UsageError

RESULT_KINDS = ("prediction", "submission")
RESULT_STATUSES = ("success", "error", "timeout")  # the CHECK of 0001's submission_results.status
# (label, span) of the summary's windows
WINDOWS: tuple[tuple[str, timedelta], ...] = (("1h", timedelta(hours=1)), ("24h", timedelta(days=1)), ("7d", timedelta(days=7)))
PERCENTILES = (0.5, 0.95, 0.99)
RECORD_BATCH_MAX = 5000  # rows per record_results call: the API's batch bound
MAX_VALUE_CHARS = 10000
MAX_MESSAGE_CHARS = 4000
MAX_WHERE_CHARS = 1000
MAX_NONCE = 2**63 - 1  # bigint; the chain's block heights fit

# Mirrors of 0006's CHECK constraints, so a bad row is refused with a clear message before the database sees it.
_TX_HASH = re.compile(r"^[0-9A-F]{64}$")
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ERROR_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,199}$")
_FEE = re.compile(r"^[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127}(,[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127})*$")
_TEXT_LIMITS = (("value", MAX_VALUE_CHARS), ("error_message", MAX_MESSAGE_CHARS), ("error_where", MAX_WHERE_CHARS))
_TEXT_FORMATS = (
    ("tx_hash", _TX_HASH, "64 upper-case hex digits"),
    ("reason", _REASON, "lower-case letters, digits and _ (e.g. timeout)"),
    ("error_type", _ERROR_TYPE, "a Python class name (e.g. ValueError)"),
    ("fee", _FEE, "Cosmos coins (e.g. 1250uallo)"),
)
# 0006's allora_may_hold_secret, the cheap necessary condition of its secret test: the class name is stored as it
# is (free text is redacted instead), so one that may be a key or a mnemonic is refused here, with its line or index,
# before the CHECK refuses the whole statement
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{64}")
_WORD_RUN = re.compile(r"([a-z]+[^a-z]+){11}[a-z]")


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One reported result. ``observed_at`` (timezone-aware) is when the runtime saw it; None means now.

    ``kind``: prediction (the model's value or refusal) or submission (its transaction).
    ``status``: success, error or timeout; error and timeout carry ``error_message``.
    ``value``: the prediction as text (JSON for numbers and dicts). ``tx_hash``: 64 upper-case hex.
    ``reason``: the runtime's category (exception, timeout, invalid_value, tx_failed…); ``error_type``:
    the exception class; ``error_where``: the user-code ``file:line`` that raised.
    ``latency_ms``: how long the model took. ``gas_used``, ``fee`` (Cosmos coins, ``1250uallo``): when known.
    """

    kind: str
    nonce: int
    status: str
    observed_at: datetime | None = None
    value: str | None = None
    tx_hash: str | None = None
    reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_where: str | None = None
    latency_ms: float | None = None
    gas_used: int | None = None
    fee: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this row, as messages (empty when it can be stored)."""
        out = []
        if self.kind not in RESULT_KINDS:
            out.append(f"kind must be one of {', '.join(RESULT_KINDS)}, not {self.kind!r}")
        if not isinstance(self.nonce, int) or isinstance(self.nonce, bool) or not 0 <= self.nonce <= MAX_NONCE:
            out.append(f"nonce must be a whole number from 0 to {MAX_NONCE}, not {self.nonce!r}")
        if self.status not in RESULT_STATUSES:
            out.append(f"status must be one of {', '.join(RESULT_STATUSES)}, not {self.status!r}")
        elif self.status == "success" and self.kind == "prediction" and self.value is None:
            out.append("a successful prediction needs its value")
        elif self.status == "success" and self.value is None and self.tx_hash is None:
            out.append("a successful submission needs its value or tx hash")
        elif self.status != "success" and not self.error_message:
            out.append(f"a result with status {self.status} needs an error message")
        if self.observed_at is not None and self.observed_at.tzinfo is None:
            out.append("the time must carry a timezone (e.g. 2026-01-31T12:00:00Z)")
        for name, limit in _TEXT_LIMITS:
            text = getattr(self, name)
            if text is not None and not (isinstance(text, str) and 0 < len(text) <= limit):
                out.append(f"{name} must be text of 1 to {limit} characters")
        for name, pattern, shape in _TEXT_FORMATS:
            text = getattr(self, name)
            if text is not None and not (isinstance(text, str) and pattern.match(text)):
                out.append(f"{name} must be {shape}, not {text!r}"[:300])
        if isinstance(self.error_type, str) and len(self.error_type) >= 47 and (
            _HEX_RUN.search(self.error_type) or _WORD_RUN.search(self.error_type.lower())
        ):
            out.append("error_type looks like it may hold a wallet secret (a 64-digit hex run, or 12 words); it is not stored")
        if self.latency_ms is not None and not (
            isinstance(self.latency_ms, (int, float)) and not isinstance(self.latency_ms, bool)
            and math.isfinite(self.latency_ms) and 0 <= self.latency_ms < 86_400_000
        ):  # fmt: skip
            out.append(f"latency_ms must be a number of milliseconds from 0 to one day, not {self.latency_ms!r}")
        if self.gas_used is not None and not (isinstance(self.gas_used, int) and not isinstance(self.gas_used, bool) and 0 <= self.gas_used <= MAX_NONCE):
            out.append(f"gas_used must be a whole number ≥ 0, not {self.gas_used!r}")
        return out


_COLUMNS = tuple(f.name for f in fields(ResultRow))
_values = operator.attrgetter(*_COLUMNS)  # a row's values in column order (dataclasses.astuple deep-copies: ~20x slower)
# the table's names for ResultRow's fields: observed_at is created_at, value is prediction
_TABLE_COLUMNS = ", ".join({"observed_at": "created_at", "value": "prediction"}.get(c, c) for c in _COLUMNS)
_STAGE_TYPES = {
    "kind": "text", "nonce": "bigint", "status": "text", "observed_at": "timestamptz", "value": "text", "tx_hash": "text",
    "reason": "text", "error_type": "text", "error_message": "text", "error_where": "text", "latency_ms": "double precision",
    "gas_used": "bigint", "fee": "text",
}  # fmt: skip
# staged (or unnested) columns → the stored row, with free text redacted and a missing time meaning now
# (length first: allora_may_hold_secret's search_path is pinned, so PostgreSQL cannot inline it, and a call costs a
# SQL-function invocation; below 47 characters it answers false anyway, see 0006 and 0016)
_REDACTED = "CASE WHEN length({0}) >= 47 AND allora_may_hold_secret({0}) THEN allora_redact_secrets({0}) ELSE {0} END"
_STORED_EXPRESSIONS = (
    f"kind, nonce, status, coalesce(observed_at, now()), {_REDACTED.format('value')}, tx_hash, reason, error_type, "
    f"{_REDACTED.format('error_message')}, {_REDACTED.format('error_where')}, latency_ms, gas_used, fee"
)


def record_results(conn, deployment_id: str, rows: Iterable[ResultRow]) -> int:
    """Store a batch of results for one deployment; return how many were new (the rest were already recorded).

    Every row is validated first: any problem raises ``ResultsError`` (one problem per bad row, naming its
    index and nonce) and nothing is written. At most ``RECORD_BATCH_MAX`` rows per call (``ResultsError``
    beyond). A deployment that does not exist raises ``DatabaseError``. One INSERT … WHERE NOT EXISTS under the
    deployment's results lock.
    """
    batch = list(rows)
    if len(batch) > RECORD_BATCH_MAX:
        raise ResultsError(f"{len(batch)} results in one batch; send at most {RECORD_BATCH_MAX}")
    bad = [(i, row, found) for i, row in enumerate(batch) if (found := row.problems())]
    if bad:
        raise ResultsError(
            f"{len(bad)} of {len(batch)} results are malformed; none was stored",
            [Problem(f"result {i} (nonce {row.nonce!r}): {message}", code="result") for i, row, found in bad for message in found],
        )
    if not batch:
        return 0
    columns = list(zip(*(_values(row) for row in batch)))
    unnest = ", ".join(f"%s::{_STAGE_TYPES[c]}[]" for c in _COLUMNS)
    with _refusal("record the results"):
        with conn.transaction():
            _require_deployment(conn, deployment_id)
            _lock_results(conn, deployment_id)
            # the first of each (nonce, kind) in the batch, unless some partition already holds it (see 0016)
            cur = conn.execute(
                f"""INSERT INTO submission_results (deployment_id, {_TABLE_COLUMNS})
                    SELECT DISTINCT ON (r.nonce, r.kind) %s, {_STORED_EXPRESSIONS}
                    FROM unnest({unnest}) WITH ORDINALITY AS r({", ".join(_COLUMNS)}, ord)
                    WHERE NOT EXISTS (SELECT 1 FROM submission_results s
                                      WHERE s.deployment_id = %s AND s.nonce = r.nonce AND s.kind = r.kind)
                    ORDER BY r.nonce, r.kind, r.ord""",
                (deployment_id, *[list(c) for c in columns], deployment_id),
            )
            return cur.rowcount


def record_each(conn, deployment_id: str, rows: list[ResultRow]) -> tuple[int, list[tuple[int, str]]]:
    """``record_results`` of a batch whose rows were validated one by one, where one row the database still refuses
    (``RecordRefused``: a CHECK constraint, e.g. a class name that looks like a wallet key, which is stored unredacted
    and so refused) must not cost the others: the batch is one statement, and only when the database refuses it are
    its rows written one by one. Returns (rows new, [(index in ``rows``, why) of each refused row])."""
    try:
        return record_results(conn, deployment_id, rows), []
    except RecordRefused as exc:
        if len(rows) == 1:
            return 0, [(0, exc.message)]
    stored, refused = 0, []
    for index, row in enumerate(rows):
        try:
            stored += record_results(conn, deployment_id, [row])
        except RecordRefused as exc:
            refused.append((index, exc.message))
    return stored, refused


@dataclass(frozen=True)
class ImportCounts:
    """What ``import_results`` did: ``staged`` rows read, ``inserted`` of them new, the rest already recorded."""

    staged: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.staged - self.inserted


def import_results(conn, deployment_id: str, rows: Iterable[ResultRow]) -> ImportCounts:
    """Store a stream of results for one deployment in one transaction: all of them, or none.

    Rows go through a binary COPY into a temporary table, then one INSERT … SELECT … WHERE NOT EXISTS, so
    a million rows cost one statement, not a million. Rows are not validated here one by one (that is
    the producer's job, e.g. ``result_log.ResultLog``): if ``rows`` raises, or the database refuses a row
    (a CHECK constraint), the transaction rolls back and nothing is written. Within the stream, the
    first (nonce, kind) wins. Raises ``DatabaseError`` for an unknown deployment or a refused row.
    """
    with _refusal("import the results"):
        with conn.transaction():
            _require_deployment(conn, deployment_id)
            columns = ", ".join(f"{c} {_STAGE_TYPES[c]}" for c in _COLUMNS)
            conn.execute(f"CREATE TEMPORARY TABLE allora_results_import ({columns}) ON COMMIT DROP")
            staged = 0
            with conn.cursor() as cur:
                # binary: neither side formats or parses text (a quarter less CPU to stage, bench_results.py)
                with cur.copy(f"COPY allora_results_import ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types([_STAGE_TYPES[c] for c in _COLUMNS])
                    for row in rows:
                        copy.write_row(_values(row))
                        staged += 1
            # a temp table has no statistics until asked; with them, rows already recorded (a log imported
            # again, overlapping kubectl logs) are dropped by one hash anti-join instead of an index probe each
            conn.execute("ANALYZE allora_results_import")
            _lock_results(conn, deployment_id)
            conn.execute("SET LOCAL work_mem = '64MB'")  # DISTINCT ON sorts the stream: in memory up to ~500,000 rows
            # the first of each (nonce, kind) in the stream (the temp table's physical order is the stream's), unless
            # some partition already holds it: the key of 0016 holds the time, so this keeps exactly-once storage
            cur = conn.execute(
                f"""INSERT INTO submission_results (deployment_id, {_TABLE_COLUMNS})
                    SELECT DISTINCT ON (i.nonce, i.kind) %s, {_STORED_EXPRESSIONS} FROM allora_results_import i
                    WHERE NOT EXISTS (SELECT 1 FROM submission_results r
                                      WHERE r.deployment_id = %s AND r.nonce = i.nonce AND r.kind = i.kind)
                    ORDER BY i.nonce, i.kind, i.ctid""",
                (deployment_id, deployment_id),
            )
            return ImportCounts(staged=staged, inserted=cur.rowcount)


@dataclass(frozen=True)
class WindowStats:
    """Results of one kind within one window. ``success_rate`` is None when there were none;
    ``latency_ms`` maps p50/p95/p99 to milliseconds (continuous percentiles of every result with a latency)."""

    window: str
    kind: str
    total: int
    success: int
    error: int
    timeout: int
    success_rate: float | None
    latency_ms: dict[str, float | None]


@dataclass(frozen=True)
class ErrorCount:
    """One kind of failure within the longest window: how often (``count``; per window in ``by_window``), and
    the latest message and place."""

    kind: str
    status: str
    reason: str | None
    error_type: str | None
    count: int
    last_at: datetime
    last_message: str | None
    last_where: str | None
    by_window: dict[str, int] = field(default_factory=dict)  # window label (1h, 24h, 7d) → count within it


@dataclass(frozen=True)
class RecentResult:
    kind: str
    nonce: int
    status: str
    at: datetime
    value: str | None
    tx_hash: str | None
    reason: str | None
    error_type: str | None
    error_message: str | None
    error_where: str | None
    latency_ms: float | None
    gas_used: int | None
    fee: str | None


@dataclass(frozen=True)
class ResultSummary:
    """``deployment_result_summary``'s answer. ``windows`` lists every (window, kind) with results."""

    deployment_id: str
    as_of: datetime
    last_result_at: datetime | None
    last_success_at: dict[str, datetime | None]  # kind → newest success
    recent: list[RecentResult]
    windows: list[WindowStats]
    errors: list[ErrorCount]
    extra: dict[str, Any] = field(default_factory=dict)

    def window(self, label: str, kind: str) -> WindowStats | None:
        return next((w for w in self.windows if w.window == label and w.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings."""

        def plain(value):
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            if hasattr(value, "__dataclass_fields__"):
                return {f: plain(getattr(value, f)) for f in value.__dataclass_fields__}
            return value

        return plain({f: getattr(self, f) for f in ("deployment_id", "as_of", "last_result_at", "last_success_at", "recent", "windows", "errors")})


_PERCENTILE_KEYS = tuple(f"p{round(p * 100)}" for p in PERCENTILES)
_NO_PERCENTILES = (None,) * len(PERCENTILES)


def _window_stats(label: str, kind: str, total: int, ok: int, err: int, timeout: int, pct: list[float | None] | None) -> WindowStats:
    """One aggregate row (counts by status, ``percentile_cont`` of PERCENTILES) → ``WindowStats``."""
    latency = {key: (None if v is None else round(v, 3)) for key, v in zip(_PERCENTILE_KEYS, pct or _NO_PERCENTILES)}
    return WindowStats(label, kind, total, ok, err, timeout, round(ok / total, 6) if total else None, latency)


def deployment_result_summary(conn, deployment_id: str, *, recent: int = 10, now: datetime | None = None) -> ResultSummary:
    """The monitoring view of one deployment, as of ``now`` (default: the database's clock).

    - ``recent``: the newest ``recent`` results (both kinds), newest first;
    - ``windows``: per window (1 h, 24 h, 7 d back from ``now``) and kind: counts by status, success rate,
      p50/p95/p99 latency (``percentile_cont``, over every result that reported a latency);
    - ``errors``: failures within 7 d grouped by kind, status, reason and error type, most frequent first.
    Reads only the (deployment_id, created_at) window index; raises ``DatabaseError`` if the database fails.
    """
    longest = max(span for _, span in WINDOWS)
    with _refusal("read the results"):
        as_of = now or conn.execute("SELECT now()").fetchone()[0]
        since = as_of - longest
        recent_rows = conn.execute(
            """SELECT kind, nonce, status, created_at, prediction, tx_hash, reason, error_type, error_message,
                      error_where, latency_ms, gas_used, fee
               FROM submission_results WHERE deployment_id = %s AND created_at <= %s
               ORDER BY created_at DESC, nonce DESC, kind LIMIT %s""",
            (deployment_id, as_of, recent),
        ).fetchall()
        values = ", ".join("(%s, %s::interval)" for _ in WINDOWS)
        window_rows = conn.execute(
            f"""SELECT w.label, r.kind, count(*),
                       count(*) FILTER (WHERE r.status = 'success'),
                       count(*) FILTER (WHERE r.status = 'error'),
                       count(*) FILTER (WHERE r.status = 'timeout'),
                       percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY r.latency_ms)
                FROM submission_results r
                JOIN (VALUES {values}) AS w(label, span) ON r.created_at > %s - w.span
                WHERE r.deployment_id = %s AND r.created_at > %s AND r.created_at <= %s
                GROUP BY w.label, r.kind""",
            (list(PERCENTILES), *[x for label, span in WINDOWS for x in (label, span)], as_of, deployment_id, since, as_of),
        ).fetchall()
        error_rows = conn.execute(
            f"""SELECT kind, status, reason, error_type, count(*), max(created_at),
                      (array_agg(error_message ORDER BY created_at DESC))[1],
                      (array_agg(error_where ORDER BY created_at DESC))[1],
                      ARRAY[{", ".join("count(*) FILTER (WHERE created_at > %s)" for _ in WINDOWS)}]
               FROM submission_results
               WHERE deployment_id = %s AND created_at > %s AND created_at <= %s AND status <> 'success'
               GROUP BY kind, status, reason, error_type
               ORDER BY count(*) DESC, max(created_at) DESC""",
            (*[as_of - span for _, span in WINDOWS], deployment_id, since, as_of),
        ).fetchall()
        last = conn.execute(
            """SELECT max(created_at), max(created_at) FILTER (WHERE kind = 'prediction' AND status = 'success'),
                      max(created_at) FILTER (WHERE kind = 'submission' AND status = 'success')
               FROM submission_results WHERE deployment_id = %s AND created_at <= %s""",
            (deployment_id, as_of),
        ).fetchone()
    order = {label: i for i, (label, _) in enumerate(WINDOWS)}
    windows = sorted((_window_stats(*row) for row in window_rows), key=lambda w: (order[w.window], RESULT_KINDS.index(w.kind)))
    return ResultSummary(
        deployment_id=str(deployment_id),
        as_of=as_of,
        last_result_at=last[0],
        last_success_at={"prediction": last[1], "submission": last[2]},
        recent=[RecentResult(*r) for r in recent_rows],
        windows=windows,
        errors=[ErrorCount(*r[:-1], by_window=dict(zip((label for label, _ in WINDOWS), r[-1]))) for r in error_rows],
    )


@dataclass(frozen=True)
class DeploymentOverview:
    """One row of the deployments page, from ``deployment_overviews``: as of ``as_of``, the newest result of any
    kind (``last_result_at``), the newest success per kind (``last_success_at``: kind → time or None) and, per
    kind with results in the 24 h before ``as_of``, the same ``WindowStats`` as ``deployment_result_summary``'s
    ``24h`` window (``day``: kind → stats; a kind without results there is absent)."""

    deployment_id: str
    as_of: datetime
    last_result_at: datetime | None
    last_success_at: dict[str, datetime | None]
    day: dict[str, WindowStats]

    def window(self, kind: str) -> WindowStats | None:
        return self.day.get(kind)


OVERVIEW_WINDOW = "24h"


def deployment_overviews(
    conn, deployment_ids: Iterable[str], *, kinds: Iterable[str] = RESULT_KINDS, now: datetime | None = None
) -> dict[str, DeploymentOverview]:
    """``DeploymentOverview`` of each of ``deployment_ids`` (UUIDs) as of ``now`` (default: the database's clock),
    keyed by the id as canonical lower-case text (``DeploymentRecord.id``); a deployment without results gets one
    with Nones and an empty ``day``. ``day`` covers ``kinds`` only (the deployments page shows submissions:
    asking for them alone halves the rows aggregated). A malformed id raises ``DatabaseError``.

    One statement for any number of deployments (the deployments page of a user with a thousand of them is
    one round trip, not a thousand ``deployment_result_summary`` calls): the newest result and the newest
    success of each kind are an index-only ``LIMIT 1`` walk back along the (deployment_id, created_at DESC)
    window index of 0006 per deployment; the 24 h counts and p50/p95/p99 latencies (``percentile_cont``) an
    aggregate over that index's last 24 h, deployment by deployment. The numbers are those of
    ``deployment_result_summary`` for the same ``now``. Raises ``DatabaseError`` if the database fails.
    """
    ids = [str(i) for i in deployment_ids]
    kinds = list(kinds)
    if not set(kinds) <= set(RESULT_KINDS):
        raise UsageError(f"kinds must be among {', '.join(RESULT_KINDS)}, not {kinds!r}")
    if not ids:
        return {}
    span = dict(WINDOWS)[OVERVIEW_WINDOW]
    with _refusal("read the results"):
        rows = conn.execute(
            f"""WITH clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS as_of),
                    ids AS (SELECT DISTINCT unnest(%(ids)s::uuid[]) AS id)
               SELECT ids.id::text, clock.as_of, last.at, prediction.at, submission.at,
                      day.kind, day.total, day.ok, day.err, day.timeout,
                      {", ".join(f"day.pct[{i + 1}]" for i in range(len(PERCENTILES)))}  -- floats load in C, a float8[] in Python
               FROM ids CROSS JOIN clock
               LEFT JOIN LATERAL (
                   SELECT created_at AS at FROM submission_results
                   WHERE deployment_id = ids.id AND created_at <= clock.as_of
                   ORDER BY created_at DESC LIMIT 1) last ON true
               LEFT JOIN LATERAL (
                   SELECT created_at AS at FROM submission_results
                   WHERE deployment_id = ids.id AND created_at <= clock.as_of AND kind = 'prediction' AND status = 'success'
                   ORDER BY created_at DESC LIMIT 1) prediction ON true
               LEFT JOIN LATERAL (
                   SELECT created_at AS at FROM submission_results
                   WHERE deployment_id = ids.id AND created_at <= clock.as_of AND kind = 'submission' AND status = 'success'
                   ORDER BY created_at DESC LIMIT 1) submission ON true
               -- per deployment, not one GROUP BY over all of them: each group is a short in-memory sort of one
               -- deployment's day along the index, where a GROUP BY (deployment_id, kind) sorted every row at once
               -- (an external sort at 1,000 deployments × 100 results; 2-3× slower)
               LEFT JOIN LATERAL (
                   SELECT r.kind, count(*) AS total,
                          count(*) FILTER (WHERE r.status = 'success') AS ok,
                          count(*) FILTER (WHERE r.status = 'error') AS err,
                          count(*) FILTER (WHERE r.status = 'timeout') AS timeout,
                          percentile_cont(%(percentiles)s::float8[]) WITHIN GROUP (ORDER BY r.latency_ms) AS pct
                   FROM submission_results r
                   WHERE r.deployment_id = ids.id AND r.created_at > clock.as_of - %(span)s AND r.created_at <= clock.as_of
                     AND r.kind = ANY(%(kinds)s::text[])
                   GROUP BY r.kind) day ON true""",
            {"now": now, "ids": ids, "kinds": kinds, "percentiles": list(PERCENTILES), "span": span},
            binary=True,  # 4,000 times and 3,000 floats: neither side formats or parses them as text
        ).fetchall()
    found: dict[str, DeploymentOverview] = {}
    for did, as_of, last, prediction, submission, kind, total, ok, err, timeout, *pct in rows:
        overview = found.get(did)
        if overview is None:
            overview = found[did] = DeploymentOverview(did, as_of, last, {"prediction": prediction, "submission": submission}, {})
        if kind is not None:
            overview.day[kind] = _window_stats(OVERVIEW_WINDOW, kind, total, ok, err, timeout, pct)
    return found


def prune_results(conn, older_than: timedelta, *, now: datetime | None = None):
    """Apply the retention: drop the partitions of results observed more than ``older_than`` before ``now``
    (default: the database's clock), never deleting row by row (``result_partitions.prune_result_partitions``:
    a partition only partly older is kept until it is wholly older). Returns its ``PruneReport``."""
    from allora_gitops.db.result_partitions import prune_result_partitions

    return prune_result_partitions(conn, older_than, now=now)


def value_text(value: Any) -> str | None:
    """A prediction as stored: text as it is, numbers and dicts as compact JSON (keys sorted)."""
    if value is None or isinstance(value, str):
        return value
    if type(value) is float and math.isfinite(value) or type(value) is int:
        return repr(value)  # what json.dumps writes for them, without its encoder
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def live_deployment(records, name: str, network: str | None):
    """NAME's live deployment (on NETWORK when given); a clear error when there is none or the choice is ambiguous."""
    from allora_gitops.db.records import ACTIVE_STATUSES

    if network is not None:
        found = records.current_deployment(name, network)
        if found is None:
            raise DatabaseError(f"{name} has no live deployment on {network}")
        return found
    live = [d for d in records.list_deployments(name=name) if d.status in ACTIVE_STATUSES]
    networks = sorted({d.network for d in live})
    if not networks:
        raise DatabaseError(f"{name} has no live deployment")
    if len(networks) > 1:
        raise UsageError(f"{name} is live on {', '.join(networks)}: say which with --network")
    return records.current_deployment(name, networks[0])


def _lock_results(conn, deployment_id: str) -> None:
    """Serialise the writers of one deployment's results until the transaction ends: each one's NOT EXISTS then
    sees what the one before it stored (submission_results' key holds the time, 0016: it cannot do this alone)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"results:{deployment_id}",))


def _require_deployment(conn, deployment_id: str) -> None:
    try:
        uuid.UUID(str(deployment_id))
    except ValueError:
        raise DatabaseError(f"not a deployment id: {deployment_id!r}") from None
    if conn.execute("SELECT 1 FROM releases WHERE id = %s FOR KEY SHARE", (deployment_id,)).fetchone() is None:
        raise DatabaseError(f"no deployment {deployment_id}")


def _refusal(what: str):
    from allora_gitops.db.records import _Refusal

    return _Refusal(what)


@dataclass(frozen=True)
class TimelineBucket:
    """One interval of ``result_timeline``: results that started in [start, start + step)."""

    start: datetime
    success: int
    failure: int  # error + timeout
    p95_latency_ms: float | None


def result_timeline(
    conn, deployment_id: str, *, kind: str = "submission", span: timedelta = timedelta(days=1), buckets: int = 24, now: datetime | None = None
) -> list[TimelineBucket]:
    """Successes and failures of ``kind`` per interval over ``span`` back from ``now`` (default: the database's
    clock): ``buckets`` entries, oldest first, empty intervals included (zeros, latency None). What the
    deployment page charts. Reads the (deployment_id, created_at) index; raises ``DatabaseError``."""
    if kind not in RESULT_KINDS or buckets < 1:
        raise UsageError(f"kind must be one of {', '.join(RESULT_KINDS)} and buckets at least 1")
    step = span / buckets
    with _refusal("read the results"):
        as_of = now or conn.execute("SELECT now()").fetchone()[0]
        origin = as_of - span
        rows = conn.execute(
            """SELECT least(floor(extract(epoch FROM created_at - %s) / %s)::int, %s) AS i,  -- ``now`` closes the last
                      count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status <> 'success'),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
               FROM submission_results
               WHERE deployment_id = %s AND kind = %s AND created_at > %s AND created_at <= %s
               GROUP BY i""",
            (origin, step.total_seconds(), buckets - 1, deployment_id, kind, origin, as_of),
        ).fetchall()
    by_index = {i: (ok, bad, p95) for i, ok, bad, p95 in rows}
    return [
        TimelineBucket(origin + step * i, ok, bad, round(p95, 3) if p95 is not None else None)
        for i, (ok, bad, p95) in ((i, by_index.get(i, (0, 0, None))) for i in range(buckets))
    ]
