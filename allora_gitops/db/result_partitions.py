"""The partitions of ``submission_results`` (migration 0016): created ahead, dropped by retention.

``submission_results`` is partitioned by RANGE on ``created_at`` (the time the runtime observed the result).
Each partition covers one *period*, daily or weekly (UTC; a week starts on Monday), chosen by
``$ALLORA_RESULTS_PARTITION`` (``daily``, the default, or ``weekly``) and named after its first instant:
``submission_results_p20261208`` (``_HHMM`` appended when a period starts elsewhere than midnight, which only
happens when the width changed and a gap is filled). ``submission_results_default`` takes any row that no
period covers, so an insert never fails for lack of a partition.

- ``ensure_result_partitions``: create the periods from ``behind`` before now (default: the retention) to
  ``ahead`` periods after (default ``$ALLORA_RESULTS_PARTITIONS_AHEAD``, else 7), skipping what exists; a
  period that already has rows in the default partition gets them moved into its new partition. Called by
  ``allora-gitops db upgrade`` and by ``serve`` (at start and every hour; ``PartitionKeeper``). One runner
  at a time per database: a transaction-level advisory lock.
- ``prune_result_partitions``: DETACH, then DROP, every partition whose whole period ends at or before the cutoff (a
  partition only partly older stays until it is wholly older: results are kept at most one period longer
  than the retention, never shorter), then DELETE the rows of the default partition older than the cutoff
  (rows that arrived outside every period: few, by construction).

New partitions are made standalone (``CREATE TABLE … (LIKE …)``) and attached (``ALTER TABLE … ATTACH
PARTITION``), which locks ``submission_results`` only in SHARE UPDATE EXCLUSIVE mode: readers and writers
go on (``CREATE TABLE … PARTITION OF`` would take ACCESS EXCLUSIVE).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from allora_gitops.errors import UsageError

TABLE = "submission_results"
DEFAULT_PARTITION = f"{TABLE}_default"
PARTITION_ENV = "ALLORA_RESULTS_PARTITION"
AHEAD_ENV = "ALLORA_RESULTS_PARTITIONS_AHEAD"
WIDTHS = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
DEFAULT_WIDTH = "daily"
DEFAULT_AHEAD = 7  # periods created after the current one
KEEPER_INTERVAL_SECONDS = 3600.0  # how often `serve` makes sure the periods ahead exist
# pg advisory lock key: the first 8 bytes of sha256("allora-gitops result partitions"), as a signed bigint
MAINTENANCE_LOCK_KEY = int.from_bytes(bytes.fromhex("5d0f3c7e2a91b648"), "big", signed=True)
LOCK_TIMEOUT = "10s"  # a partition DDL waits this long behind a long query on submission_results, then gives up
_BOUND = re.compile(r"^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$")
_EPOCH_MONDAY = datetime(1970, 1, 5, tzinfo=timezone.utc)


@dataclass(frozen=True, order=True)
class ResultPartition:
    """One partition: ``start`` ≤ created_at < ``end`` (UTC). The default partition has both None."""

    start: datetime | None
    end: datetime | None
    name: str
    rows_estimate: int | None = None  # pg_class.reltuples (None until the partition was analyzed or vacuumed)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune_result_partitions`` did: partitions dropped (with their row estimates) and default-partition rows deleted."""

    cutoff: datetime
    dropped: tuple[ResultPartition, ...]
    stray_deleted: int

    @property
    def rows_estimate(self) -> int:
        return sum(p.rows_estimate or 0 for p in self.dropped)


def partition_width(explicit: str | None = None) -> tuple[str, timedelta]:
    """(name, span) of the period: ``explicit``, else ``$ALLORA_RESULTS_PARTITION``, else daily."""
    name = (explicit or os.environ.get(PARTITION_ENV, "").strip() or DEFAULT_WIDTH).lower()
    if name not in WIDTHS:
        source = "--partition" if explicit else PARTITION_ENV
        raise UsageError(f"{source} {name!r} is not a partition width: use daily or weekly")
    return name, WIDTHS[name]


def partitions_ahead(explicit: int | None = None) -> int:
    """How many periods after the current one exist ahead: ``explicit``, else ``$ALLORA_RESULTS_PARTITIONS_AHEAD``, else 7."""
    if explicit is not None:
        value, source = explicit, "--ahead"
    else:
        text = os.environ.get(AHEAD_ENV, "").strip()
        if not text:
            return DEFAULT_AHEAD
        source = AHEAD_ENV
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{AHEAD_ENV} {text!r} is not a whole number of periods") from None
    if not 0 <= value <= 366:
        raise UsageError(f"{source} must be a whole number of periods from 0 to 366, not {value}")
    return value


def period_start(at: datetime, width: timedelta) -> datetime:
    """The start of the period holding ``at``: UTC midnight (daily) or the Monday 00:00 UTC before it (weekly)."""
    at = at.astimezone(timezone.utc)
    if width == WIDTHS["daily"]:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return _EPOCH_MONDAY + ((at - _EPOCH_MONDAY) // width) * width


def result_partitions(conn) -> list[ResultPartition]:
    """Every partition of submission_results, ordered by start (the default partition first)."""
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")  # bounds are printed in the session's zone
        rows = conn.execute(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),
                      CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'submission_results'::regclass""",
        ).fetchall()
    found = []
    for name, bound, estimate in rows:
        match = _BOUND.match(bound)
        if match is None:  # FOR VALUES DEFAULT
            found.append(ResultPartition(None, None, name, estimate))
            continue
        start, end = (datetime.fromisoformat(b) for b in match.groups())
        found.append(ResultPartition(start, end, name, estimate))
    return sorted(found, key=lambda p: (p.start is not None, p.start or datetime.min.replace(tzinfo=timezone.utc)))


def ensure_result_partitions(
    conn, *, width: timedelta | None = None, ahead: int | None = None, behind: timedelta | None = None,
    now: datetime | None = None, wait: bool = True,
) -> list[ResultPartition] | None:  # fmt: skip
    """Create the partitions from the period holding ``now - behind`` to ``ahead`` periods after the one holding
    ``now`` (default: the database's clock; ``width`` and ``ahead`` from the settings; ``behind`` the results
    retention). Existing partitions are kept as they are (a period already partly covered, after the width
    changed, gets only its uncovered part); rows of the default partition within a new period move into it.

    Returns the partitions created (oldest first), or None when ``wait`` is False and another process holds the
    maintenance lock. Raises ``DatabaseError`` if the database refuses (e.g. a lock not granted within 10 s).
    """
    from allora_gitops.db.records import _Refusal as _refusal
    from allora_gitops.db.retention import results_retention

    width = width or partition_width()[1]
    ahead = partitions_ahead(ahead)
    behind = results_retention()[1] if behind is None else behind
    created: list[ResultPartition] = []
    with _refusal("create the result partitions"):
        with conn.transaction():
            if wait:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_KEY,))
            elif not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_KEY,)).fetchone()[0]:
                return None
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            as_of = now or conn.execute("SELECT now()").fetchone()[0]
            existing = [(p.start, p.end) for p in result_partitions(conn) if p.start is not None]
            first = period_start(as_of - behind, width)
            last = period_start(as_of, width) + width * (ahead + 1)
            start = first
            while start < last:
                for gap in _uncovered(start, start + width, existing):
                    created.append(_create(conn, *gap))
                    existing.append(gap)
                start += width
    return created


def prune_result_partitions(conn, older_than: timedelta, *, now: datetime | None = None) -> PruneReport:
    """Apply the retention: take each partition whose whole period ended at or before ``now - older_than`` out of
    submission_results and drop it, then delete the default partition's rows older than that.

    Two steps, so that submission_results is locked only for catalog changes: one transaction (under the maintenance
    lock) DETACHes the partitions and deletes the default partition's old rows; then each detached table is DROPped
    in a transaction of its own (freeing its files takes time in proportion to its size, and locks only that table).
    A prune interrupted between the two leaves detached tables behind: the next one drops them.
    """
    from allora_gitops.db.records import _Refusal as _refusal

    if older_than <= timedelta(0):
        raise UsageError("the retention must be longer than zero")
    with _refusal("prune the results"):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_KEY,))
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cutoff = (now or conn.execute("SELECT now()").fetchone()[0]) - older_than
            dropped = tuple(p for p in result_partitions(conn) if p.end is not None and p.end <= cutoff)
            for partition in dropped:
                conn.execute(f'ALTER TABLE {TABLE} DETACH PARTITION "{partition.name}"')
            stray = conn.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE created_at < %s", (cutoff,)).rowcount
        detached = [r[0] for r in conn.execute(
            """SELECT c.relname FROM pg_class c
               WHERE c.relname ~ '^submission_results_p[0-9]{8}' AND c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
                 AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)"""
        )]  # fmt: skip
        for name in detached:
            with conn.transaction():
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    return PruneReport(cutoff=cutoff, dropped=dropped, stray_deleted=stray)


class PartitionKeeper:
    """``serve``'s background thread: ``ensure_result_partitions`` at start, then every ``interval`` seconds.

    Replicas do not coordinate beyond the maintenance lock: one that finds it taken skips that round. A failure
    (database down) is logged and retried next round; it never stops the server.
    """

    def __init__(self, database_url: str, *, interval: float = KEEPER_INTERVAL_SECONDS):
        self.database_url = database_url
        self.interval = interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-partitions", daemon=True)

    def start(self) -> "PartitionKeeper":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> list[ResultPartition] | None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            return ensure_result_partitions(conn, wait=False)

    def _run(self) -> None:
        import logging

        log = logging.getLogger("allora_gitops.results")
        while not self._stop.is_set():
            try:
                made = self.run_once()
                if made:
                    log.info("created result partitions %s", ", ".join(p.name for p in made))
            except Exception as exc:  # noqa: BLE001 - the next round retries; the server keeps serving
                log.warning("could not create the result partitions ahead: %s", exc)
            self.rounds += 1
            self._stop.wait(self.interval)


def _uncovered(start: datetime, end: datetime, existing: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that no (start, end) of ``existing`` covers."""
    gaps = [(start, end)]
    for s, e in existing:
        gaps = [piece for g0, g1 in gaps for piece in ((g0, min(g1, s)), (max(g0, e), g1)) if piece[0] < piece[1]]
    return gaps


def _name(start: datetime) -> str:
    return f"{TABLE}_p{start:%Y%m%d}" + (f"_{start:%H%M}" if (start.hour, start.minute) != (0, 0) else "")


def _create(conn, start: datetime, end: datetime) -> ResultPartition:
    """Make one partition: standalone, filled from the default partition's rows of its period, then attached."""
    name = _name(start)
    conn.execute(f'CREATE TABLE "{name}" (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    # the period's stray rows: out of the default partition, into the new one, before it is attached (the attach
    # checks the default partition holds nothing of the period any more)
    conn.execute(
        f"""WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= %s AND created_at < %s RETURNING *)
            INSERT INTO "{name}" SELECT * FROM moved""",
        (start, end),
    )
    conn.execute(f"""ALTER TABLE {TABLE} ATTACH PARTITION "{name}" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')""")
    return ResultPartition(start, end, name)
