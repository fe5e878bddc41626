"""Model logs in the records: what each deployment's model printed, as its runtime shipped it (``POST /api/v1/logs``).

A shipped batch is ``{"lines": [<the runtime's JSON log object>, ...]}`` (``allora_runtime/log.py``: ``ts``,
``level``, ``event``, then the event's fields; what the model printed is a ``print`` event's ``message``, with
``"stream": "stderr"`` for its error output). Each object becomes one row of ``model_logs`` (migration 0015):

- every value passes through :mod:`allora_gitops.untrusted` first, as results do: NUL and lone surrogates become
  U+FFFD, ``ts`` is checked (a time too far ahead is recorded at its arrival), the message is bounded
  (``MAX_MESSAGE`` characters, cut with ``… [N more characters]``);
- the message is a ``print``/``log`` event's ``message`` (and its ``traceback``), else the event's other fields
  as ``key=value`` (a prediction line reads ``nonce=7 value=0.5 latency_ms=1.2``);
- an object that cannot be a line (not an object, no valid ``ts``) is refused alone, the rest are stored;
- what looks like a wallet secret (a 64-hex-digit key, a run of 12 BIP-39 words) is replaced in the database
  (``allora_redact_secrets``) before it is written, whatever the runtime scrubbed or missed.

Retention (:func:`prune_logs`): lines older than the retention and beyond the per-deployment cap are deleted;
the API runs it for a deployment at most once a minute, on its writes (``api/logs.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional, Sequence

from allora_gitops.errors import RecordRefused
from allora_gitops.untrusted import UntrustedValue, bound_text, check_time, clean_json

LEVELS = ("debug", "info", "warning", "error", "critical")  # ordered: --level warning shows warning and above
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "exception": "error", "notset": "debug"}
MAX_MESSAGE = 8000  # characters of one stored line (the column's CHECK)
MAX_LINES_PER_BATCH = 1000
MAX_READ = 1000  # lines one read returns at most
_EVENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_POD = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_RESERVED = ("ts", "level", "event", "message", "traceback")
_CURSOR = re.compile(r"^(\d{1,19})-(\d{1,19})$")


@dataclass(frozen=True)
class LogRow:
    """One line to store: when (UTC), level (one of ``LEVELS``), event, message (cleaned, bounded)."""

    ts: datetime
    level: str
    event: str
    message: str


@dataclass
class LogReading:
    """What a batch held: the rows to store and, per refused object, ``{"index", "message"}``."""

    rows: list[LogRow] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    adjusted: int = 0
    received: int = 0


@dataclass(frozen=True)
class LogLine:
    """A stored line as the API returns it; ``cursor`` resumes a read just after it."""

    ts: datetime
    id: int
    level: str
    event: str
    pod: Optional[str]
    message: str

    @property
    def cursor(self) -> str:
        return encode_cursor(self.ts, self.id)

    def to_dict(self) -> dict:
        return {"ts": self.ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": self.level, "event": self.event, "pod": self.pod, "message": self.message, "cursor": self.cursor}  # fmt: skip


def level_name(value: Any) -> str:
    """A reported level as one of ``LEVELS`` (``WARNING`` → ``warning``, ``warn`` → ``warning``); ``info`` otherwise."""
    text = value.strip().lower() if isinstance(value, str) else ""
    text = _LEVEL_ALIASES.get(text, text)
    return text if text in LEVELS else "info"


def check_level(text: Optional[str]) -> Optional[str]:
    """A ``--level`` filter: one of ``LEVELS`` (aliases too) or None; RecordRefused for anything else."""
    if text is None or not text.strip():
        return None
    name = _LEVEL_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in LEVELS:
        raise RecordRefused(f"level {text[:40]!r} is not one of {', '.join(LEVELS)}")
    return name


def log_rows(batch: Any, *, received_at: Optional[datetime] = None) -> LogReading:
    """The rows of a shipped batch (``{"lines": [...]}``); RecordRefused when the body is not such a batch."""
    if not isinstance(batch, dict) or not isinstance(batch.get("lines"), list):
        raise RecordRefused('the body must be {"lines": [<log line object>, ...]}')
    lines = batch["lines"]
    if len(lines) > MAX_LINES_PER_BATCH:
        raise RecordRefused(f"a batch holds at most {MAX_LINES_PER_BATCH} lines, this one {len(lines)}")
    now = received_at or datetime.now(timezone.utc)
    reading = LogReading(received=len(lines))
    for index, raw in enumerate(lines):
        if not isinstance(raw, dict):
            reading.refused.append({"index": index, "message": "a line must be a JSON object"})
            continue
        line = clean_json(raw)
        try:
            ts, adjusted = check_time(line.get("ts"), received_at=now)
        except UntrustedValue as exc:
            reading.refused.append({"index": index, "message": str(exc)})
            continue
        reading.adjusted += adjusted is not None
        event = line.get("event")
        event = event if isinstance(event, str) and _EVENT.match(event) else "line"
        reading.rows.append(LogRow(ts, level_name(line.get("level")), event, message_of(line)))
    return reading


def message_of(line: dict) -> str:
    """What a line says: its ``message`` (and ``traceback``), else its other fields as ``key=value``; bounded."""
    message = line.get("message")
    if isinstance(message, str):
        text = message
    else:
        text = " ".join(f"{k}={_shown(v)}" for k, v in line.items() if k not in _RESERVED) or str(line.get("event", ""))
    traceback = line.get("traceback")
    if isinstance(traceback, str) and traceback.strip():
        text = f"{text}\n{traceback.rstrip()}"
    return bound_text(text, MAX_MESSAGE)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def pod_name(value: Optional[str]) -> Optional[str]:
    """The pod's name from its token when it is a Kubernetes name, else None (nothing unchecked is stored)."""
    return value if isinstance(value, str) and _POD.match(value) else None


def record_logs(conn, deployment_id: str, pod: Optional[str], rows: Sequence[LogRow]) -> int:
    """Store ``rows`` for the deployment in one statement (secrets redacted by the database); how many were stored."""
    if not rows:
        return 0
    cur = conn.execute(
        """INSERT INTO model_logs (deployment_id, ts, level, event, pod, message)
           SELECT %s, u.ts, u.level, u.event, %s,
                  CASE WHEN allora_may_hold_secret(u.message) THEN allora_redact_secrets(u.message) ELSE u.message END
           FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[]) AS u(ts, level, event, message)""",
        (deployment_id, pod_name(pod), [r.ts for r in rows], [r.level for r in rows], [r.event for r in rows], [r.message for r in rows]),
    )
    return cur.rowcount


def encode_cursor(ts: datetime, line_id: int) -> str:
    """``<microseconds since 1970>-<id>``: where a read resumes (strictly after this line, in (ts, id) order)."""
    delta = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}-{line_id}"


def decode_cursor(text: str) -> tuple[datetime, int]:
    match = _CURSOR.match(text or "")
    if not match:
        raise RecordRefused("after must be a cursor of an earlier answer (e.g. 1767225600000000-42)")
    micros, line_id = int(match.group(1)), int(match.group(2))
    try:
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros), line_id
    except OverflowError:
        raise RecordRefused("after is out of range") from None


def read_logs(
    conn, deployment_ids: Iterable[str], *, since: Optional[datetime] = None, after: Optional[str] = None,
    level: Optional[str] = None, limit: int = MAX_READ, newest: bool = False,
) -> list[LogLine]:  # fmt: skip
    """Lines of the deployments in (ts, id) order: after the cursor ``after``, else from ``since``; at ``level``
    and above. ``newest``: the last ``limit`` lines (still returned oldest first), for a first screen."""
    where, params = ["deployment_id = ANY(%s)"], [list(deployment_ids)]
    if after is not None:
        ts, line_id = decode_cursor(after)
        where.append("(ts, id) > (%s, %s)")
        params += [ts, line_id]
    elif since is not None:
        where.append("ts >= %s")
        params.append(since)
    if level is not None:
        where.append("level = ANY(%s)")
        params.append(list(LEVELS[LEVELS.index(level):]))
    order = "DESC" if newest else "ASC"
    rows = conn.execute(
        f"SELECT ts, id, level, event, pod, message FROM model_logs WHERE {' AND '.join(where)} "
        f"ORDER BY ts {order}, id {order} LIMIT %s",
        (*params, max(1, min(limit, MAX_READ))),
    ).fetchall()
    lines = [LogLine(*row) for row in rows]
    return lines[::-1] if newest else lines


def prune_logs(conn, deployment_id: str, *, older_than: timedelta, max_lines: int, now: Optional[datetime] = None) -> int:
    """Delete the deployment's lines older than ``older_than`` and all but its newest ``max_lines``; how many.

    Both deletes walk the (deployment_id, ts, id) index, so the cost follows what is deleted, not the table."""
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    deleted = conn.execute("DELETE FROM model_logs WHERE deployment_id = %s AND ts < %s", (deployment_id, cutoff)).rowcount
    edge = conn.execute(
        "SELECT ts, id FROM model_logs WHERE deployment_id = %s ORDER BY ts DESC, id DESC OFFSET %s LIMIT 1",
        (deployment_id, max_lines),
    ).fetchone()
    if edge is not None:
        deleted += conn.execute(
            "DELETE FROM model_logs WHERE deployment_id = %s AND (ts, id) <= (%s, %s)", (deployment_id, *edge)
        ).rowcount
    return deleted


def logs_block(records, d, level: Optional[str]) -> dict:
    """What a deployment page's logs block shows before any script runs (``records``: ``Records``; ``d``: a release):
    ``{"lines": the last 100 lines at ``level`` and above of every release of its name and network, "cursor": the
    newest line's, "level": the level shown ("" for all; an unknown one shows all), "levels": LEVELS}``."""
    try:
        level = check_level(level)
    except RecordRefused:
        level = None
    ids = [x.id for x in records.list_deployments(name=d.name, network=d.network)]
    lines = read_logs(records.connection, ids, level=level, limit=100, newest=True)
    return {"lines": lines, "cursor": lines[-1].cursor if lines else "0-0", "level": level or "", "levels": LEVELS}
