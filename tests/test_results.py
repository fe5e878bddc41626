"""Submission results: the runtime's log → ``results import`` → real PostgreSQL → ``status``; retention."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from allora_gitops.db.results import ResultRow, deployment_result_summary, import_results, prune_results, record_results
from allora_gitops.errors import DatabaseError, ResultsError
from tests.conftest import cli_env
from tests.fixtures.runtime import EXIT_INVALID_PREDICTION, make_bundle, run_bootstrap
from tests.test_db_records import bundle_args, deployment_args

NAME = "linear-forecaster"
HEX_KEY = "0x" + "1f" * 32
# 20 windows: 5, 10 and 15 raise, 7 returns None (refused as invalid_value): 16 successes, 4 refusals
REFUSING = """\
import time


def run(nonce):
    time.sleep((nonce % 4) * 0.002)
    if nonce % 5 == 0 and nonce != 20:
        raise ValueError(f"no data for nonce {nonce}")
    if nonce == 7:
        return None
    return nonce / 10
"""


@pytest.fixture
def deployment(records):
    bundle = records.register_bundle(**bundle_args())
    return records.create_deployment(**deployment_args(bundle.id))


def percentile_cont(values: list[float], p: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the order statistics at (n-1)·p."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def expected_prediction_latencies(run) -> dict[str, float]:
    """p50/p95/p99 of the latencies a runtime run reported for its predictions, as the summary must give them."""
    latencies = [e["latency_ms"] for e in run.events if e["event"] in ("prediction", "prediction_refused")]
    return {f"p{round(p * 100)}": round(percentile_cont(latencies, p), 3) for p in (0.5, 0.95, 0.99)}


def count_rows(records, deployment_id=None) -> int:
    sql = "SELECT count(*) FROM submission_results" + (" WHERE deployment_id = %s" if deployment_id else "")
    return records.connection.execute(sql, (deployment_id,) if deployment_id else ()).fetchone()[0]


@pytest.fixture
def dry_run_log(tmp_path):
    """The real runtime's stdout for 20 windows with 4 refusals, with a line of noise in front (as kubectl logs may have)."""
    bundle = make_bundle(tmp_path / "bundle", REFUSING)
    result = run_bootstrap(bundle, "--dry-run", *[a for n in range(1, 21) for a in ("--nonce", str(n))])
    assert result.code == EXIT_INVALID_PREDICTION, result.out + result.err
    assert len(result.of("prediction")) == 16 and len(result.of("prediction_refused")) == 4
    path = tmp_path / "runtime.log"
    path.write_text("Defaulted container \"worker\" out of: worker, init\n" + result.out)
    return path, result


def test_status_shows_the_imported_dry_run_successes_errors_rate_and_percentiles(cli, database_url, deployment, records, dry_run_log):
    path, run = dry_run_log
    non_results = len(run.events) - 20 + 1  # start, config, imported, dry_run_finished … plus the noise line
    imported = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert imported.code == 0, imported.err
    assert imported.out == (
        f"{path}: imported 20 new result(s) for {NAME} on testnet (0 already recorded) from {non_results + 20} line(s);"
        f" skipped {non_results} line(s) that are not result events\n"
    )

    status = cli("gitops", "status", NAME, "--database-url", database_url, "--json")
    assert status.code == 0, status.err
    [row] = json.loads(status.out)
    results = row["results"]
    expected_latency = expected_prediction_latencies(run)
    for window in ("1h", "24h", "7d"):
        [stats] = [w for w in results["windows"] if w["window"] == window]
        assert stats == {
            "window": window, "kind": "prediction", "total": 20, "success": 16, "error": 4, "timeout": 0,
            "success_rate": 0.8, "latency_ms": expected_latency,
        }  # fmt: skip
    errors = {(e["reason"], e["error_type"]): e for e in results["errors"]}
    assert {k: e["count"] for k, e in errors.items()} == {("exception", "ValueError"): 3, ("invalid_value", "NoneType"): 1}
    assert errors[("exception", "ValueError")]["last_message"] == "no data for nonce 15"
    assert errors[("exception", "ValueError")]["last_where"].endswith("src/demo/runner.py:7")
    assert errors[("invalid_value", "NoneType")]["last_message"] == "the prediction is None; return a number"
    assert [r["nonce"] for r in results["recent"]] == list(range(20, 10, -1))
    assert results["recent"][0] == {
        **results["recent"][0], "kind": "prediction", "status": "success", "value": "2.0", "tx_hash": None, "error_type": None,
    }  # fmt: skip
    assert results["recent"][5] == {**results["recent"][5], "nonce": 15, "status": "error", "error_message": "no data for nonce 15"}
    assert results["last_success_at"]["prediction"] is not None and results["last_success_at"]["submission"] is None

    again = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert again.code == 0 and "imported 0 new result(s) for linear-forecaster on testnet (20 already recorded)" in again.out
    assert count_rows(records) == 20


def test_status_text_gives_the_rates_and_the_errors(cli, database_url, deployment, dry_run_log):
    path, _ = dry_run_log
    assert cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url).code == 0
    status = cli("gitops", "status", NAME, "--database-url", database_url, "--last", "2")
    assert status.code == 0, status.err
    lines = status.out.splitlines()
    [rates] = [line for line in lines if line.startswith("    predictions: ")]
    assert rates.startswith("    predictions: 1h 80.0% (16/20) latency p50 ")
    assert "  errors (7d):" in lines
    assert any(line.startswith("    prediction error ValueError (exception) x3 (1h 3, 24h 3): no data for nonce 15 at ") for line in lines)
    import itertools

    recent = list(itertools.takewhile(lambda line: line.startswith("    "), lines[lines.index("  recent:") + 1 :]))
    assert [line.split(" nonce ")[1].split()[0] for line in recent] == ["20", "19"]
    assert all(re.match(r"^    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ (s|min|h|d) ago\) nonce ", line) for line in recent), recent


def test_a_malformed_result_line_is_named_with_its_line_and_nothing_is_written(cli, database_url, deployment, records, tmp_path):
    good = {"ts": "2026-01-31T12:00:00.000Z", "level": "info", "event": "prediction", "nonce": 1, "value": 1.5, "latency_ms": 3.0}
    lines = [
        json.dumps(good),
        "not json at all",
        json.dumps({**good, "nonce": None}),
        json.dumps({"event": "start", "mode": "dry_run"}),
        json.dumps({**good, "nonce": 2, "latency_ms": "fast"}),
        json.dumps({**good, "event": "submission", "nonce": 3, "tx_hash": "zz"}),
        json.dumps({**good, "nonce": 4, "value": float("nan")}),  # Python's JSON writes NaN and reads it back
        '{"ts": "2026-01-31T12:00:00.000Z", "event": "prediction", "nonce": 5, "value": 1e400}',  # read as inf
        json.dumps({**good, "event": "submission", "nonce": 6, "value": {"eth": float("-inf")}}),
    ]
    path = tmp_path / "bad.log"
    path.write_text("\n".join(lines) + "\n")
    result = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert result.code == 1
    assert result.out == ""
    assert result.lines == [
        f"error: {path}: 6 malformed result line(s); nothing was imported",
        f"{path}:3: error: prediction line: nonce is missing",
        f"{path}:5: error: prediction line: latency_ms must be a number, not 'fast'",
        f"{path}:6: error: submission line: tx_hash must be 64 upper-case hex digits, not 'ZZ'",
        f"{path}:7: error: prediction line: value must be finite, not NaN",
        f"{path}:8: error: prediction line: value must be finite, not Infinity",
        f'{path}:9: error: submission line: value must be finite, not {{"eth": -Infinity}}',
    ]
    assert count_rows(records) == 0


def test_import_from_stdin_through_the_console_script(database_url, deployment, records):
    line = {"ts": "2026-01-31T12:00:00Z", "event": "submission", "nonce": 9, "value": 2.5, "tx_hash": "ab" * 32, "code": 0,
            "gas_used": 81234, "fee": "1250uallo"}  # fmt: skip
    failed = {"ts": "2026-01-31T12:00:01Z", "event": "submission", "nonce": 10, "value": 2.5, "tx_hash": "cd" * 32, "code": 13}
    proc = subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "results", "import", "-", "--name", NAME, "--network", "testnet",
         "--database-url", database_url],
        input=json.dumps(line) + "\n" + json.dumps(failed) + "\n", capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("<stdin>: imported 2 new result(s) for linear-forecaster on testnet")
    stored = records.connection.execute(
        "SELECT nonce, kind, status, tx_hash, gas_used, fee, reason, error_message FROM submission_results ORDER BY nonce"
    ).fetchall()
    assert stored == [
        (9, "submission", "success", "AB" * 32, 81234, "1250uallo", None, None),
        (10, "submission", "error", "CD" * 32, None, None, "tx_failed", "the chain rejected the transaction with code 13"),
    ]


def test_import_needs_a_live_deployment_and_an_unambiguous_network(cli, database_url, records, tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("")
    missing = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert (missing.code, missing.lines) == (1, [f"error: {NAME} has no live deployment"])
    bundle = records.register_bundle(**bundle_args())
    records.create_deployment(**deployment_args(bundle.id))
    records.create_deployment(**deployment_args(bundle.id, network="mainnet"))
    both = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert (both.code, both.lines) == (2, [f"error: {NAME} is live on mainnet, testnet: say which with --network"])
    unreadable = cli("gitops", "results", "import", tmp_path / "nope.log", "--name", NAME, "--network", "mainnet", "--database-url", database_url)
    assert (unreadable.code, unreadable.lines) == (2, [f"error: {tmp_path / 'nope.log'}: cannot read it (No such file or directory)"])


def test_record_results_is_idempotent_and_refuses_a_bad_batch_whole(records, deployment):
    conn = records.connection
    rows = [
        ResultRow("prediction", 1, "success", value="1.5", latency_ms=4.0),
        ResultRow("prediction", 2, "timeout", reason="timeout", error_message="run() did not return within 5 s", latency_ms=5000.0),
        ResultRow("submission", 1, "success", value="1.5", tx_hash="AB" * 32, gas_used=90000, fee="12uallo"),
    ]
    assert record_results(conn, deployment.id, rows) == 3
    assert record_results(conn, deployment.id, rows) == 0
    with pytest.raises(ResultsError) as err:
        record_results(conn, deployment.id, [ResultRow("prediction", 3, "success", value="2"), ResultRow("prediction", -1, "error")])
    assert err.value.lines() == [
        "error: 1 of 2 results are malformed; none was stored",
        "error: result 1 (nonce -1): nonce must be a whole number from 0 to 9223372036854775807, not -1",
        "error: result 1 (nonce -1): a result with status error needs an error message",
    ]
    assert count_rows(records) == 3
    with pytest.raises(DatabaseError, match="^no deployment 00000000-0000-0000-0000-000000000000$"):
        record_results(conn, "00000000-0000-0000-0000-000000000000", rows)


def test_secret_looking_text_is_redacted_before_it_is_stored(records, deployment):
    rows = [ResultRow("prediction", 1, "error", reason="exception", error_type="KeyError", error_message=f"bad key {HEX_KEY} here")]
    assert import_results(records.connection, deployment.id, iter(rows)).inserted == 1
    stored = records.connection.execute("SELECT error_message FROM submission_results").fetchone()[0]
    assert stored == "bad key [redacted] here"


def test_an_error_raised_by_the_stream_rolls_the_whole_import_back(records, deployment):
    def rows():
        yield ResultRow("prediction", 1, "success", value="1")
        raise ResultsError("stop")

    with pytest.raises(ResultsError):
        import_results(records.connection, deployment.id, rows())
    assert count_rows(records) == 0
    assert import_results(records.connection, deployment.id, iter([ResultRow("prediction", 1, "success", value="1")])).inserted == 1


def test_windows_count_only_what_falls_inside_them(records, deployment):
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    ages = {1: timedelta(minutes=30), 2: timedelta(hours=5), 3: timedelta(days=3), 4: timedelta(days=10)}
    rows = [ResultRow("prediction", n, "success", now - age, value=str(n), latency_ms=float(n)) for n, age in ages.items()]
    record_results(records.connection, deployment.id, rows)
    summary = deployment_result_summary(records.connection, deployment.id, now=now, recent=2)
    assert [(w.window, w.total, w.latency_ms["p50"]) for w in summary.windows] == [("1h", 1, 1.0), ("24h", 2, 1.5), ("7d", 3, 2.0)]
    assert [r.nonce for r in summary.recent] == [1, 2]
    assert summary.errors == []


def test_prune_drops_the_partitions_wholly_older_than_the_retention(cli, database_url, records, deployment, monkeypatch):
    from allora_gitops.db.result_partitions import ensure_result_partitions, result_partitions

    now = datetime.now(timezone.utc)
    ensure_result_partitions(records.connection, behind=timedelta(days=60))  # the 45-day-old row lands in its day
    ages = {1: timedelta(days=45), 2: timedelta(days=31), 3: timedelta(days=29), 4: timedelta(hours=1)}
    record_results(records.connection, deployment.id, [ResultRow("prediction", n, "success", now - a, value="1") for n, a in ages.items()])
    records.connection.execute("ANALYZE submission_results")
    pruned = cli("gitops", "results", "prune", "--older-than", "30d", "--database-url", database_url)
    assert pruned.code == 0, pruned.err
    cutoff = now - timedelta(days=30)
    dropped = re.search(r"dropped (\d+) partition\(s\) \(([^;]*); about (\d+) result\(s\)\), deleted 0 result\(s\) outside", pruned.out)
    assert dropped, pruned.out
    # every day that ends by the cutoff: 60 days back from the period of now-60d, minus the 30 the retention keeps
    assert int(dropped.group(1)) == (cutoff.date() - (now - timedelta(days=60)).date()).days
    assert f"submission_results_p{now - timedelta(days=45):%Y%m%d}" in dropped.group(2) and int(dropped.group(3)) == 2
    assert [r[0] for r in records.connection.execute("SELECT nonce FROM submission_results ORDER BY nonce")] == [3, 4]
    # the day holding the cutoff is only partly older: it stays, so nothing younger than the retention is lost
    assert min(p.start for p in result_partitions(records.connection) if p.start) == cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    monkeypatch.setenv("ALLORA_RESULTS_RETENTION", "2d")
    by_setting = cli("gitops", "results", "prune", "--database-url", database_url)
    assert by_setting.code == 0 and "older than 2d" in by_setting.out, by_setting.out + by_setting.err
    assert [r[0] for r in records.connection.execute("SELECT nonce FROM submission_results ORDER BY nonce")] == [4]
    bad = cli("gitops", "results", "prune", "--older-than", "soon", "--database-url", database_url)
    assert (bad.code, bad.lines) == (2, ["error: --older-than 'soon' is not a positive duration such as 30d, 12h, 90m or 2w"])


def test_prune_deletes_only_the_rows_outside_every_partition_one_by_one(records, deployment):
    """A result older than every partition waits in the default partition; prune deletes those rows (and only those)."""
    ancient = datetime(2001, 1, 1, tzinfo=timezone.utc)
    record_results(records.connection, deployment.id, [ResultRow("prediction", n, "success", ancient, value="1") for n in range(10)])
    assert records.connection.execute("SELECT count(*) FROM submission_results_default").fetchone()[0] == 10
    report = prune_results(records.connection, timedelta(days=30))
    assert (report.dropped, report.stray_deleted) == ((), 10)
    assert count_rows(records) == 0


SECRET_TEXTS = [
    None, "", "3.25", "no data for nonce 15", "/workspace/bundle/src/model/runner.py:42",
    HEX_KEY, "1f" * 32, f"key={HEX_KEY}.", f"sha256:{'a' * 64}", "a" * 63, "g" * 64,
    "abandon ability able about above absent absorb abstract absurd abuse access accident",  # 12 words, 84 chars
    "act add age aim air all act add age aim air all",  # 12 of the shortest words: 47 characters
    "act add age aim air all act add age aim air",  # 11
    "ACT-ADD-AGE-AIM-AIR-ALL-ACT-ADD-AGE-AIM-AIR-ALL", "act add age aim air all act add age aim air zzz",
    "the model failed because the upstream price feed returned an empty list for this window",
]


def test_the_fast_secret_test_answers_exactly_as_the_full_one(records):
    """0006 put cheap necessary conditions in front of 0001's secret test; the answers must not change."""
    for text in SECRET_TEXTS:
        fast, full, redacted, redacted_full = records.connection.execute(
            """SELECT allora_looks_like_secret(%(t)s), coalesce(allora_has_hex_key(%(t)s) OR allora_bip39_run(%(t)s) >= 12, false),
                      CASE WHEN allora_may_hold_secret(%(t)s) THEN allora_redact_secrets(%(t)s) ELSE %(t)s END,
                      allora_redact_secrets(%(t)s)""",
            {"t": text},
        ).fetchone()
        assert (fast, redacted) == (full, redacted_full), text
    assert records.connection.execute("SELECT allora_looks_like_secret(%s)", (SECRET_TEXTS[12],)).fetchone()[0] is True


def test_0006_keeps_the_newest_of_duplicate_rows_written_before_it(empty_database_url, tmp_path):
    """Rows recorded before 0006 had no (deployment, nonce, kind) key: the migration keeps the newest of each nonce."""
    import shutil

    import psycopg

    from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner
    from allora_gitops.db.records import Records

    before = tmp_path / "before"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0006":
            shutil.copy(path, before)
    MigrationRunner(empty_database_url, before).upgrade()
    with Records(empty_database_url) as old:
        columns = deployment_args(old.register_bundle(**bundle_args()).id)  # as 0001-0005 knew the row (no later columns)
        [d_id] = old.connection.execute(
            f"INSERT INTO deployments ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id::text",
            list(columns.values()),
        ).fetchone()
        # as 0001's writers did (today's record_submission refuses a second report of a nonce)
        for nonce, status, prediction, tx_hash, message in [
            (5, "error", None, None, "first try failed"), (5, "success", "1.5", "AB" * 32, None), (6, "success", "2.5", None, None),
        ]:
            old.connection.execute(
                "INSERT INTO submission_results (deployment_id, nonce, status, prediction, tx_hash, error_message, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())",
                (d_id, nonce, status, prediction, tx_hash, message),
            )
    MigrationRunner(empty_database_url).upgrade()
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT nonce, kind, status, tx_hash FROM submission_results ORDER BY nonce").fetchall()
    assert rows == [(5, "submission", "success", "AB" * 32), (6, "submission", "success", None)]


def test_status_says_when_a_deployment_has_reported_nothing_yet(cli, database_url, deployment):
    status = cli("gitops", "status", NAME, "--database-url", database_url)
    assert status.code == 0, status.err
    assert "  results: none reported yet" in status.out.splitlines()


def test_import_stores_every_column_as_given(records, deployment):
    """The binary COPY carries each type as the table has it: whole-number latencies, big gas, fees, times."""
    at = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=timezone.utc)
    row = ResultRow("submission", 2**62, "success", at, value="3012.5", tx_hash="AB" * 32, latency_ms=5, gas_used=2**40, fee="1250uallo")
    refused = ResultRow("prediction", 7, "timeout", None, reason="timeout", error_type="TimeoutError", error_message="too slow",
                        error_where="model.py:3 in predict", latency_ms=0.25)  # fmt: skip
    assert import_results(records.connection, deployment.id, iter([row, refused])).inserted == 2
    stored = records.connection.execute(
        """SELECT kind, nonce, status, created_at, prediction, tx_hash, reason, error_type, error_message, error_where,
                  latency_ms, gas_used, fee, created_at > now() - interval '1 minute' FROM submission_results ORDER BY nonce DESC"""
    ).fetchall()
    assert stored[0] == ("submission", 2**62, "success", at, "3012.5", "AB" * 32, None, None, None, None, 5.0, 2**40, "1250uallo", False)
    assert stored[1][:3] == ("prediction", 7, "timeout") and stored[1][6:] == (
        "timeout", "TimeoutError", "too slow", "model.py:3 in predict", 0.25, None, None, True)  # no time: now
