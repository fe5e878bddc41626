"""The workers' addresses and the chain observations in PostgreSQL (migration 0014), and what they mean.

``chain_view`` is the one place the state is derived, for ``chain status``, the API, the page and the metrics:
eligibility in words, the score EMA against the topic's lowest active score, and **missed windows** — the
windows the topic closed since the first observation of this deployment still kept (nonces one epoch apart,
from ``GetWorkerSubmissionWindowStatus`` and ``GetTopic``) minus the windows with a successful submission
recorded (``submission_results``). What it cannot know: windows before the first observation kept (the
retention period), and windows whose submissions landed but were never reported.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

from allora_gitops.db.records import ACTIVE_STATUSES

ADDRESS = re.compile(r"^allo1[02-9ac-hj-np-z]{38,58}$")
SOURCES = ("runtime", "admin")
TREND_POINTS = 48  # score EMA points the view carries (newest last)
MISSED_WINDOWS_WARNING = 3  # the view says "missed windows" above this many (the alert's threshold is per hour)


@dataclass(frozen=True)
class LiveWorker:
    deployment_id: str
    name: str
    network: str
    topic_id: int
    address: Optional[str]  # None: neither the runtime nor an admin has said it
    live_since: datetime


def valid_address(value: Any) -> Optional[str]:
    """``value`` when it is an Allora bech32 account address (``allo1…``, its checksum right), else None."""
    return value if address_problem(value) is None else None


def address_problem(value: Any) -> Optional[str]:
    """Why ``value`` is not an Allora account address (one line), or None when it is one: ``allo1`` and 38–58
    bech32 characters whose BIP-173 checksum matches, as the chain's ``AccAddressFromBech32`` requires. A
    mistyped character fails the checksum; the chain would refuse every query for it."""
    if not isinstance(value, str) or not ADDRESS.match(value):
        return "not an Allora account address (allo1 followed by 38 bech32 characters)"
    from bech32 import bech32_decode

    hrp, data = bech32_decode(value)
    if hrp != "allo" or data is None:
        return "not an Allora account address: its bech32 checksum does not match (a mistyped character?)"
    return None


def worker_address_of(report: Any) -> Optional[str]:
    """The ``worker`` a runtime's result batch carries (its wallet's public address), the last valid one; None when absent."""
    results = report.get("results") if isinstance(report, dict) else None
    found = None
    for item in results if isinstance(results, list) else ():
        if isinstance(item, dict) and valid_address(item.get("worker")):
            found = item["worker"]
    return found


def record_worker_address(conn, deployment_id: str, address: str, source: str) -> bool:
    """Record the deployment's worker address; the runtime's replaces an admin's, never the reverse. → changed?

    ValueError for an address that is not ``allo1…`` bech32 or an unknown source."""
    problem = address_problem(address)
    if problem:
        from allora_gitops.redact import shown_value

        raise ValueError(f"{shown_value(address)} is {problem}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    row = conn.execute(
        """INSERT INTO deployment_workers (deployment_id, address, source) VALUES (%s, %s, %s)
           ON CONFLICT (deployment_id) DO UPDATE SET address = EXCLUDED.address, source = EXCLUDED.source, recorded_at = now()
           WHERE (deployment_workers.address, deployment_workers.source) IS DISTINCT FROM (EXCLUDED.address, EXCLUDED.source)
             AND NOT (deployment_workers.source = 'runtime' AND EXCLUDED.source = 'admin')
           RETURNING 1""",
        (deployment_id, address, source),
    ).fetchone()
    return row is not None


def live_workers(conn, *, name: Optional[str] = None, network: Optional[str] = None) -> list[LiveWorker]:
    """Live deployments (``records.ACTIVE_STATUSES``, not sandboxes) with their worker address, by name: one per
    name and network, the release that runs (``Records.current_deployment``'s rule: the deployment's live release,
    else its most recent active one). A release waiting for review beside the running one is not read, and
    ``/metrics`` never exports two series with the same labels."""
    where, params = ["d.status = ANY(%s)", "d.kind = 'deployment'"], [list(ACTIVE_STATUSES)]
    for column, value in (("b.name", name), ("d.network", network)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    rows = conn.execute(
        f"""SELECT DISTINCT ON (b.name, d.network) d.id::text, b.name, d.network, d.topic_id, w.address, d.created_at
            FROM releases d JOIN model_bundles b ON b.id = d.bundle_id
            LEFT JOIN deployments t ON t.id = d.deployment_id
            LEFT JOIN deployment_workers w ON w.deployment_id = d.id
            WHERE {' AND '.join(where)}
            ORDER BY b.name, d.network, t.live_release_id IS NOT DISTINCT FROM d.id DESC, d.created_at DESC, d.id DESC""",
        params,
    ).fetchall()
    return [LiveWorker(*row) for row in rows]


WITHHELD = "the chain's answer was not stored: it looked like a secret"


def store_observation(conn, worker: LiveWorker, standing: Any = None, error: Optional[str] = None, *, at: Optional[datetime] = None) -> None:
    """One read: ``standing`` (a ``reader.Standing``) or ``error`` (one line). An error text the database refuses
    as secret-like (``allora_looks_like_secret``) is stored as ``WITHHELD`` instead, and a standing it cannot store
    (a number out of numeric's range) as a failed read naming why, so one read never costs the others."""
    import psycopg

    try:
        _insert_observation(conn, worker, standing, error, at)
    except psycopg.errors.CheckViolation:
        if standing is not None:
            raise
        _insert_observation(conn, worker, None, WITHHELD, at)
    except psycopg.errors.DataError as exc:
        if standing is None:
            raise
        _insert_observation(conn, worker, None, f"the chain's answer could not be stored ({type(exc).__name__})", at)


def _insert_observation(conn, worker: LiveWorker, standing: Any, error: Optional[str], at: Optional[datetime]) -> None:
    s = standing
    conn.execute(
        """INSERT INTO chain_observations (deployment_id, observed_at, address, topic_id, reachable, error, window_open, current_nonce,
               epoch_length, registered, whitelisted, topic_active, can_submit, score_ema, lowest_score, reward_fraction, balance_uallo)
           VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            worker.deployment_id, at, worker.address, worker.topic_id, s is not None, None if s is not None else (error or "unknown")[:1000],
            *((s.window_open, s.current_nonce, s.epoch_length, s.registered, s.whitelisted, s.topic_active, s.can_submit,
               s.score_ema, s.lowest_score, s.reward_fraction, s.balance_uallo) if s is not None else (None,) * 11),
        ),
    )  # fmt: skip


def prune_observations(conn, retention: timedelta) -> int:
    """Delete observations older than ``retention``; keeps each deployment's newest one. → rows deleted."""
    cur = conn.execute(
        """DELETE FROM chain_observations o WHERE o.observed_at < now() - %s
           AND o.id <> (SELECT max(n.id) FROM chain_observations n WHERE n.deployment_id = o.deployment_id)""",
        (retention,),
    )
    return cur.rowcount


@dataclass
class ChainView:
    """What the platform knows of one deployment's worker from the chain; ``states`` are the derived conditions
    (``not_registered``, ``not_whitelisted``, ``topic_inactive``, ``score_below_lowest``, ``missed_windows``,
    ``unreachable``, ``no_address``, ``not_observed``), ``summary`` says them in words."""

    deployment_id: str
    name: str
    network: str
    topic_id: int
    address: Optional[str]
    address_source: Optional[str] = None
    observed_at: Optional[datetime] = None
    reachable: Optional[bool] = None
    error: Optional[str] = None
    last_reachable_at: Optional[datetime] = None
    window_open: Optional[bool] = None
    current_nonce: Optional[int] = None
    epoch_length: Optional[int] = None
    registered: Optional[bool] = None
    whitelisted: Optional[bool] = None
    topic_active: Optional[bool] = None
    can_submit: Optional[bool] = None
    score_ema: Optional[Decimal] = None
    lowest_score: Optional[Decimal] = None
    reward_fraction: Optional[Decimal] = None
    balance_uallo: Optional[int] = None
    windows_closed: Optional[int] = None  # windows the topic closed since the first observation kept
    windows_submitted: Optional[int] = None  # of those, windows with a successful submission recorded
    missed_windows: Optional[int] = None
    counted_since: Optional[datetime] = None
    trend: list[tuple[datetime, Decimal, Optional[Decimal]]] = field(default_factory=list)  # (at, score EMA, lowest)
    states: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key, value in list(data.items()):
            if isinstance(value, datetime):
                data[key] = value.isoformat()
            elif isinstance(value, Decimal):
                data[key] = str(value)
        data["trend"] = [{"at": at.isoformat(), "score_ema": str(s), "lowest_score": None if lo is None else str(lo)} for at, s, lo in self.trend]
        return data


_COLUMNS = ("observed_at", "reachable", "error", "window_open", "current_nonce", "epoch_length", "registered", "whitelisted",
            "topic_active", "can_submit", "score_ema", "lowest_score", "reward_fraction", "balance_uallo")  # fmt: skip


def chain_view(conn, worker: LiveWorker) -> ChainView:
    """The latest observation of ``worker``'s deployment with its derived state and score trend (module docstring)."""
    return chain_views(conn, [worker], trend=True)[0]


def chain_views(conn, workers: list[LiveWorker], *, trend: bool = False) -> list[ChainView]:
    """``chain_view`` for many deployments in a fixed number of statements (``/metrics`` reads every live one):
    the latest and latest successful observation, the first one kept and the successes per deployment are each
    one query over all of them. ``trend``: also the score EMA points (one query per deployment; the page's)."""
    views = [ChainView(w.deployment_id, w.name, w.network, w.topic_id, w.address) for w in workers]
    if not views:
        return views
    ids = [w.deployment_id for w in workers]
    sources = dict(conn.execute("SELECT deployment_id::text, source FROM deployment_workers WHERE deployment_id = ANY(%s::uuid[])", (ids,)).fetchall())
    watched = [(w.deployment_id, w.address) for w in workers if w.address]
    pairs = ([i for i, _ in watched], [a for _, a in watched])
    columns = ", ".join(f"o.{c}" for c in _COLUMNS)
    # newest first; for the first one kept, oldest first
    latest = _by_deployment(conn, f"""SELECT DISTINCT ON (o.deployment_id) o.deployment_id::text, {columns}
        FROM chain_observations o JOIN unnest(%s::uuid[], %s::text[]) AS w(id, address) ON o.deployment_id = w.id AND o.address = w.address
        ORDER BY o.deployment_id, o.observed_at DESC, o.id DESC""", pairs)
    reachable = _by_deployment(conn, f"""SELECT DISTINCT ON (o.deployment_id) o.deployment_id::text, {columns}
        FROM chain_observations o JOIN unnest(%s::uuid[], %s::text[]) AS w(id, address) ON o.deployment_id = w.id AND o.address = w.address
        WHERE o.reachable ORDER BY o.deployment_id, o.observed_at DESC, o.id DESC""", pairs)
    first = _by_deployment(conn, """SELECT DISTINCT ON (o.deployment_id) o.deployment_id::text, o.current_nonce, o.observed_at
        FROM chain_observations o JOIN unnest(%s::uuid[], %s::text[]) AS w(id, address) ON o.deployment_id = w.id AND o.address = w.address
        WHERE o.reachable AND o.current_nonce > 0 ORDER BY o.deployment_id, o.observed_at, o.id""", pairs)
    for view in views:
        view.address_source = sources.get(view.deployment_id)
        if view.address is None:
            view.states, view.summary = ["no_address"], [
                "worker address unknown: the runtime reports it with its results, or an admin records it (allora-gitops chain set-address)"
            ]
        elif view.deployment_id not in latest:
            view.states, view.summary = ["not_observed"], ["not read from the chain yet"]
        else:
            _fill(view, _COLUMNS, latest[view.deployment_id])
            if not view.reachable:
                view.states, view.summary = ["unreachable"], [f"chain unreachable: {view.error}"]
                if view.deployment_id in reachable:  # the last known standing, said as such
                    row = reachable[view.deployment_id]
                    view.last_reachable_at = row[0]
                    _fill(view, _COLUMNS[3:], row[3:])
            else:
                view.last_reachable_at = view.observed_at
    counted = [v for v in views if v.last_reachable_at is not None and v.deployment_id in first]
    ranges = {v.deployment_id: _window_range(v, *first[v.deployment_id]) for v in counted}
    ranges = {i: r for i, r in ranges.items() if r is not None}
    submitted = dict(conn.execute(
        """SELECT r.id::text, count(DISTINCT s.nonce) FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[]) AS r(id, lo, hi)
           JOIN submission_results s ON s.deployment_id = r.id AND s.kind = 'submission' AND s.status = 'success'
                AND s.nonce BETWEEN r.lo AND r.hi
           GROUP BY r.id""",
        (list(ranges), [lo for lo, _ in ranges.values()], [hi for _, hi in ranges.values()]),
    ).fetchall()) if ranges else {}  # fmt: skip
    for view in views:
        if view.last_reachable_at is None:
            continue
        if view.deployment_id in ranges:
            view.windows_submitted = submitted.get(view.deployment_id, 0)
            view.missed_windows = max(view.windows_closed - view.windows_submitted, 0)
        if trend:
            _trend(conn, view)
        states, words = _derive(view)
        view.states += states
        view.summary += words if view.reachable else [f"last known ({view.last_reachable_at:%Y-%m-%d %H:%M} UTC): " + w for w in words]
    return views


def _by_deployment(conn, sql: str, params) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in conn.execute(sql, params).fetchall()}


def _fill(view: ChainView, keys, values) -> None:
    for key, value in zip(keys, values):
        setattr(view, key, int(value) if key == "balance_uallo" and value is not None else value)


def _window_range(view: ChainView, baseline: int, since: datetime) -> Optional[tuple[int, int]]:
    """(first, last) nonce of the windows closed since the first observation kept; sets ``windows_closed`` and
    ``counted_since``. None when nothing can be counted (no epoch length) or none closed yet."""
    epoch = view.epoch_length or 0
    if epoch <= 0 or not view.current_nonce:
        return None
    view.counted_since = since
    last_closed = view.current_nonce - (epoch if view.window_open else 0)
    if last_closed < baseline:
        view.windows_closed = view.windows_submitted = view.missed_windows = 0
        return None
    view.windows_closed = (last_closed - baseline) // epoch + 1
    return baseline, last_closed


def _trend(conn, view: ChainView) -> None:
    rows = conn.execute(
        "SELECT observed_at, score_ema, lowest_score FROM chain_observations WHERE deployment_id = %s AND address = %s AND reachable"
        " AND score_ema IS NOT NULL ORDER BY observed_at DESC, id DESC LIMIT %s",
        (view.deployment_id, view.address, TREND_POINTS),
    ).fetchall()
    view.trend = [tuple(r) for r in reversed(rows)]


def _derive(view: ChainView) -> tuple[list[str], list[str]]:
    states, words = [], []
    topic = f"topic {view.topic_id}"
    if view.topic_active is False:
        states.append("topic_inactive")
        words.append(f"{topic} is inactive: it opens no windows")
    if view.registered is False:
        states.append("not_registered")
        words.append(f"not registered on {topic}")
    if view.whitelisted is False or view.can_submit is False:
        states.append("not_whitelisted")
        words.append(f"not whitelisted on {topic}: the chain refuses its payloads (can_submit_worker_payload is false)")
    if view.score_ema is not None and view.lowest_score is not None and view.score_ema < view.lowest_score:
        states.append("score_below_lowest")
        words.append(f"score EMA {view.score_ema} is below the topic's lowest active score {view.lowest_score}: at risk of being dropped")
    if view.missed_windows:
        if view.missed_windows > MISSED_WINDOWS_WARNING:
            states.append("missed_windows")
        words.append(f"{view.missed_windows} of {view.windows_closed} windows missed since {view.counted_since:%Y-%m-%d %H:%M} UTC")
    if not states:
        words.insert(0, f"eligible: registered, whitelisted, {topic} active")
    return states, words


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
