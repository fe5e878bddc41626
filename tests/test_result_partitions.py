"""submission_results partitioned by time (0016): exactly-once storage across partitions, partitions ahead,
the default partition, the migration moving rows, and the plans of the queries that read results."""

from __future__ import annotations

import shutil
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from allora_gitops.db.result_partitions import (
    MAINTENANCE_LOCK_KEY, PartitionKeeper, ensure_result_partitions, period_start, result_partitions,
)  # fmt: skip
from allora_gitops.db.results import ResultRow, deployment_result_summary, import_results, record_each, record_results
from tests.test_db_records import bundle_args, deployment_args

DAY = timedelta(days=1)


@pytest.fixture
def deployment(records):
    return records.create_deployment(**deployment_args(records.register_bundle(**bundle_args()).id))


def stored(records, deployment_id) -> list[tuple]:
    return records.connection.execute(
        "SELECT nonce, kind, status, created_at, tableoid::regclass::text FROM submission_results WHERE deployment_id = %s ORDER BY nonce, kind",
        (deployment_id,),
    ).fetchall()


def test_the_table_is_partitioned_by_time_with_a_default_partition(records):
    kind, key = records.connection.execute(
        "SELECT p.partstrat, pg_get_partkeydef(p.partrelid) FROM pg_partitioned_table p WHERE p.partrelid = 'submission_results'::regclass"
    ).fetchone()
    assert (kind, key) == ("r", "RANGE (created_at)")
    parts = result_partitions(records.connection)
    assert parts[0].name == "submission_results_default" and parts[0].start is None
    today = period_start(datetime.now(timezone.utc), DAY)
    assert {today - 30 * DAY, today, today + 7 * DAY} <= {p.start for p in parts}  # the migration's retention and look-ahead


def test_a_re_sent_batch_is_stored_once_even_when_its_times_differ(records, deployment):
    """The key of a partitioned table holds the time; the writers keep (deployment, nonce, kind) unique anyway."""
    conn = records.connection
    now = datetime.now(timezone.utc)
    first = [ResultRow("prediction", 1, "success", now - 3 * DAY, value="1"), ResultRow("submission", 1, "success", now - 3 * DAY, value="1")]
    assert record_results(conn, deployment.id, first) == 2
    assert record_results(conn, deployment.id, first) == 0  # the same batch again
    # the same keys reported again a day later, and without a time (stored at now): other partitions, still nothing new
    later = [ResultRow("prediction", 1, "error", now, error_message="late"), ResultRow("submission", 1, "success", None, value="2")]
    assert record_results(conn, deployment.id, later) == 0
    assert import_results(conn, deployment.id, iter(later + first)).inserted == 0
    assert record_each(conn, deployment.id, later) == (0, [])
    # within one batch or stream, the first report of a key wins, whatever its time
    twice = [ResultRow("prediction", 2, "success", now, value="first"), ResultRow("prediction", 2, "success", now - DAY, value="second")]
    assert record_results(conn, deployment.id, twice) == 1
    assert import_results(conn, deployment.id, iter([ResultRow("prediction", 3, "success", now, value="a"),
                                                     ResultRow("prediction", 3, "success", now - 2 * DAY, value="b")])).inserted == 1  # fmt: skip
    rows = conn.execute("SELECT nonce, kind, prediction FROM submission_results ORDER BY nonce, kind").fetchall()
    assert rows == [(1, "prediction", "1"), (1, "submission", "1"), (2, "prediction", "first"), (3, "prediction", "a")]
    with pytest.raises(Exception, match="exists already"):
        records.record_submission(deployment.id, nonce=1, status="success", prediction=3)


def test_concurrent_writers_of_one_deployment_store_a_key_once(records, deployment, database_url):
    """Two transactions reporting the same nonce at different times: the advisory lock orders them, the second adds nothing."""
    now = datetime.now(timezone.utc)
    with psycopg.connect(database_url, autocommit=True) as a, psycopg.connect(database_url, autocommit=True) as b:
        with a.transaction():
            assert record_results(a, deployment.id, [ResultRow("prediction", 9, "success", now, value="a")]) == 1
            counted = []
            other = threading.Thread(target=lambda: counted.append(
                record_results(b, deployment.id, [ResultRow("prediction", 9, "success", now - DAY, value="b")])))
            other.start()
            other.join(0.5)
            assert other.is_alive()  # waiting for a's transaction
        other.join(10)
    assert counted == [0]
    assert [r[:2] for r in stored(records, deployment.id)] == [(9, "prediction")]


def test_a_row_outside_every_partition_lands_in_the_default_and_moves_when_its_period_is_created(records, deployment):
    conn = records.connection
    far = datetime.now(timezone.utc) + 100 * DAY
    assert record_results(conn, deployment.id, [ResultRow("prediction", 1, "success", far, value="1")]) == 1
    assert stored(records, deployment.id)[0][-1] == "submission_results_default"
    made = ensure_result_partitions(conn, ahead=101)
    assert period_start(far, DAY) in {p.start for p in made}
    assert stored(records, deployment.id)[0][-1] == f"submission_results_p{far:%Y%m%d}"
    assert conn.execute("SELECT count(*) FROM submission_results_default").fetchone()[0] == 0


def test_partitions_are_created_ahead_once_daily_or_weekly(records, monkeypatch):
    conn = records.connection
    now = datetime.now(timezone.utc)
    assert ensure_result_partitions(conn) == []  # the migration made the default retention and look-ahead
    monkeypatch.setenv("ALLORA_RESULTS_PARTITION", "weekly")
    monkeypatch.setenv("ALLORA_RESULTS_PARTITIONS_AHEAD", "4")
    made = ensure_result_partitions(conn)
    assert made and all(p.end - p.start <= timedelta(weeks=1) for p in made)
    ends = max(p.end for p in result_partitions(conn) if p.end)
    monday = period_start(now, timedelta(weeks=1))
    assert monday.weekday() == 0 and ends == monday + 5 * timedelta(weeks=1)  # this week and 4 ahead
    assert ensure_result_partitions(conn) == []
    covered = sorted((p.start, p.end) for p in result_partitions(conn) if p.start)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # contiguous, no overlap (daily and weekly side by side)
    monkeypatch.setenv("ALLORA_RESULTS_PARTITION", "hourly")
    with pytest.raises(Exception, match="ALLORA_RESULTS_PARTITION 'hourly' is not a partition width: use daily or weekly"):
        ensure_result_partitions(conn)


def test_one_runner_at_a_time_the_other_skips_its_round(records, database_url):
    with psycopg.connect(database_url, autocommit=True) as holder:
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_KEY,))
            assert ensure_result_partitions(records.connection, ahead=30, wait=False) is None
            assert PartitionKeeper(database_url).run_once() is None
    assert PartitionKeeper(database_url).run_once() == []  # free again: the setting's 7 days ahead exist already
    keeper = PartitionKeeper(database_url, interval=0.05).start()  # serve's thread: at start, then every interval
    try:
        for _ in range(200):
            if keeper.rounds >= 2:
                break
            threading.Event().wait(0.05)
    finally:
        keeper.stop()
    assert keeper.rounds >= 2


def test_db_upgrade_creates_the_partitions_ahead(cli, database_url, monkeypatch):
    monkeypatch.setenv("ALLORA_RESULTS_PARTITIONS_AHEAD", "20")
    upgraded = cli("gitops", "db", "upgrade", "--database-url", database_url)
    assert upgraded.code == 0, upgraded.err
    assert "created 13 result partition(s)" in upgraded.out  # days 8 to 20 ahead; 0 to 7 came with the migration
    with psycopg.connect(database_url) as conn:
        last = conn.execute(
            "SELECT max(relname) FROM pg_class WHERE relname LIKE 'submission\\_results\\_p%%' AND relkind = 'r'"
        ).fetchone()[0]
    assert last == f"submission_results_p{datetime.now(timezone.utc) + 20 * DAY:%Y%m%d}"


def test_0016_moves_existing_rows_into_partitions_of_their_days(empty_database_url, tmp_path):
    from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner
    from allora_gitops.db.records import Records

    before = tmp_path / "before"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0016":
            shutil.copy(path, before)
    MigrationRunner(empty_database_url, before).upgrade()
    old_day = datetime(2024, 2, 29, 12, tzinfo=timezone.utc)
    with Records(empty_database_url) as old:
        release = old.create_deployment(**deployment_args(old.register_bundle(**bundle_args()).id))
        rows = [ResultRow("prediction", n, "success", old_day + n * DAY, value=str(n), latency_ms=1.5) for n in range(3)]
        rows.append(ResultRow("submission", 0, "success", datetime.now(timezone.utc), value="0", tx_hash="AB" * 32))
        assert import_results(old.connection, release.id, iter(rows)).inserted == 4
        before_rows = old.connection.execute("SELECT * FROM submission_results ORDER BY nonce, kind").fetchall()
    MigrationRunner(empty_database_url).upgrade()
    with Records(empty_database_url) as new:
        after = new.connection.execute(
            "SELECT id, deployment_id, nonce, prediction, tx_hash, status, error_message, created_at, kind, reason, error_type,"
            " error_where, latency_ms, gas_used, fee FROM submission_results ORDER BY nonce, kind"
        ).fetchall()
        homes = [r[-1] for r in stored(new, release.id)]
    assert after == before_rows
    assert homes == ["submission_results_p20240229", f"submission_results_p{datetime.now(timezone.utc):%Y%m%d}",
                     "submission_results_p20240301", "submission_results_p20240302"]  # (nonce, kind) order  # fmt: skip


def plan(conn, sql: str, params) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql, params))


def test_the_reading_queries_touch_only_their_periods_and_the_window_index(records, deployment):
    """The plans docs/reference/results-storage.md shows: partition pruning by time, the window index per partition."""
    conn = records.connection
    now = datetime.now(timezone.utc)
    import_results(conn, deployment.id, iter(ResultRow("prediction", n, "success", now - n * timedelta(hours=1), value="1") for n in range(500)))
    conn.execute("ANALYZE submission_results")
    conn.execute("SET enable_seqscan = off")  # a few hundred rows: make the planner show what it does at volume
    day = plan(conn, "SELECT count(*) FROM submission_results WHERE deployment_id = %s AND created_at > %s AND created_at <= %s",
               (deployment.id, now - DAY, now))  # fmt: skip
    assert "Index Only Scan using submission_results_p" in day and "_deployment_id_created_at_" in day, day  # the window index, per partition
    touched = {line.split(" on ")[1].split()[0] for line in day.splitlines() if " on submission_results_" in line}
    assert touched <= {f"submission_results_p{d:%Y%m%d}" for d in (now - DAY, now)}, day  # one or two days, not 38
    probe = plan(conn, "SELECT 1 FROM submission_results WHERE deployment_id = %s AND nonce = %s AND kind = %s", (deployment.id, 5, "prediction"))
    assert "pkey" in probe and "Seq Scan" not in probe, probe
    assert [(w.window, w.total) for w in deployment_result_summary(conn, deployment.id).windows] == [("1h", 1), ("24h", 24), ("7d", 168)]


def test_serve_and_db_upgrade_refuse_a_malformed_partition_setting_in_one_line(cli, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_RESULTS_PARTITION", "monthly")
    served = cli("gitops", "serve", "--repo", str(tmp_path / "repo"), "--database-url", database_url, "--port", "1")
    assert (served.code, served.err) == (2, "error: ALLORA_RESULTS_PARTITION 'monthly' is not a partition width: use daily or weekly\n")
    monkeypatch.setenv("ALLORA_RESULTS_PARTITION", "weekly")
    monkeypatch.setenv("ALLORA_RESULTS_PARTITIONS_AHEAD", "many")
    upgraded = cli("gitops", "db", "upgrade", "--database-url", database_url)
    assert (upgraded.code, upgraded.err) == (2, "error: ALLORA_RESULTS_PARTITIONS_AHEAD 'many' is not a whole number of periods\n")


def test_results_partitions_lists_each_period_and_creates_the_missing_ones(cli, database_url, monkeypatch):
    monkeypatch.setenv("ALLORA_RESULTS_PARTITIONS_AHEAD", "8")
    listed = cli("gitops", "results", "partitions", "--database-url", database_url)
    assert listed.code == 0, listed.err
    today = period_start(datetime.now(timezone.utc), DAY)
    lines = listed.out.splitlines()
    assert lines[0].startswith("submission_results_default  default (rows outside every period)  ")
    assert f"submission_results_p{today:%Y%m%d}  {today:%Y-%m-%d} 00:00 .. {today + DAY:%Y-%m-%d} 00:00 UTC  " in listed.out
    assert len(lines) == 1 + 31 + 8 + 1 and lines[-1] == "created 1 partition(s)"  # default, 30 back + today, 8 ahead


def test_a_prune_interrupted_after_the_detach_is_finished_by_the_next(records, deployment):
    """Prune detaches, then drops: a partition left detached (the process died in between) is dropped next time."""
    from allora_gitops.db.results import prune_results

    conn = records.connection
    old = period_start(datetime.now(timezone.utc), DAY) - 25 * DAY
    record_results(conn, deployment.id, [ResultRow("prediction", 1, "success", old + timedelta(hours=1), value="1")])
    conn.execute(f"ALTER TABLE submission_results DETACH PARTITION submission_results_p{old:%Y%m%d}")
    assert conn.execute("SELECT count(*) FROM submission_results").fetchone()[0] == 0
    report = prune_results(conn, timedelta(days=40))  # nothing is that old: only the leftover goes
    assert report.dropped == ()
    assert conn.execute("SELECT to_regclass(%s)", (f"submission_results_p{old:%Y%m%d}",)).fetchone()[0] is None
    assert len([p for p in result_partitions(conn) if p.start]) == 30 + 1 + 7 - 1  # the attached ones stay
