"""The migration runner against a real PostgreSQL (embedded, or $ALLORA_TEST_DATABASE_URL)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys

import psycopg
import pytest

from allora_gitops.db import open_records
from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner, load_migrations
from allora_gitops.errors import MigrationError
from tests.conftest import REPO_ROOT, cli_env

TABLES = {"schema_migrations", "model_bundles", "deployments", "submission_results"}
# the newest shipped migration, e.g. "0006": versions may have gaps (branches reserve their numbers)
LATEST = f"{load_migrations()[-1].version:04d}"


def schema_snapshot(url: str) -> list[tuple]:
    """Every table, column, constraint, index, trigger and function of the public schema."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT 'column', table_name || '.' || column_name || ':' || data_type FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL SELECT 'constraint', conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
            UNION ALL SELECT 'index', indexname FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL SELECT 'function', proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
            UNION ALL SELECT 'migration', version::text || sha256 FROM schema_migrations
            ORDER BY 1, 2
            """
        ).fetchall()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_migrations_ship_in_the_package_and_are_well_formed():
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert all(m.path.parent == MIGRATIONS_DIR for m in migrations)
    assert migrations[0].label == "0001_records"


def test_fresh_upgrade_applies_everything_and_records_checksums(empty_database_url):
    runner = MigrationRunner(empty_database_url)
    assert [m.label for m in runner.status().pending] == [m.label for m in load_migrations()]
    applied = runner.upgrade()
    assert [m.label for m in applied] == [m.label for m in load_migrations()]
    assert TABLES <= tables(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT version, name, sha256 FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.name, hashlib.sha256(m.path.read_bytes()).hexdigest()) for m in load_migrations()]
    assert runner.check().up_to_date


def test_rerun_is_a_noop(empty_database_url):
    runner = MigrationRunner(empty_database_url)
    runner.upgrade()
    before = schema_snapshot(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        applied_at = conn.execute("SELECT array_agg(applied_at ORDER BY version) FROM schema_migrations").fetchone()
    assert runner.upgrade() == []
    assert schema_snapshot(empty_database_url) == before
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT array_agg(applied_at ORDER BY version) FROM schema_migrations").fetchone() == applied_at


def test_four_concurrent_cli_upgrades_apply_each_migration_once(empty_database_url):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "allora_gitops.cli.gitops", "db", "upgrade", "--database-url", empty_database_url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO_ROOT,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    applied_lines = [line for _, out, _ in results for line in out.splitlines() if line.startswith("applied ")]
    assert sorted(applied_lines) == [f"applied {m.label}" for m in load_migrations()]
    assert sum(f"up to date at version {LATEST}" in out for _, out, _ in results) == 3
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(load_migrations())


@pytest.fixture
def migrations_copy(tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    return directory


def test_broken_migration_leaves_the_schema_as_it_was(empty_database_url, migrations_copy):
    MigrationRunner(empty_database_url, migrations_copy).upgrade()
    before = schema_snapshot(empty_database_url)
    (migrations_copy / "9002_half_done.sql").write_text(
        "CREATE TABLE half_done (id integer PRIMARY KEY);\n"
        "ALTER TABLE model_bundles ADD COLUMN extra integer;\n"
        "SELECT 1 / 0;\n"
    )
    with pytest.raises(MigrationError) as err:
        MigrationRunner(empty_database_url, migrations_copy).upgrade()
    assert err.value.lines() == ["error: migration 9002_half_done.sql failed, nothing of it was applied: division by zero"]
    assert schema_snapshot(empty_database_url) == before
    assert "half_done" not in tables(empty_database_url)
    assert [m.label for m in MigrationRunner(empty_database_url, migrations_copy).status().pending] == ["9002_half_done"]


def test_broken_first_migration_leaves_an_empty_database(empty_database_url, tmp_path):
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "0001_broken.sql").write_text("CREATE TABLE a (id int);\nCREATE TABLE a (id int);\n")
    with pytest.raises(MigrationError, match=r'^migration 0001_broken.sql failed, nothing of it was applied: relation "a" already exists$'):
        MigrationRunner(empty_database_url, directory).upgrade()
    assert tables(empty_database_url) == {"schema_migrations"}


def test_checksum_drift_is_refused(empty_database_url, migrations_copy):
    MigrationRunner(empty_database_url, migrations_copy).upgrade()
    path = migrations_copy / "0001_records.sql"
    old = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text() + "\n-- an innocent-looking edit\n")
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    (migrations_copy / "9002_next.sql").write_text("CREATE TABLE next_one (id int);\n")
    runner = MigrationRunner(empty_database_url, migrations_copy)
    with pytest.raises(MigrationError) as err:
        runner.upgrade()
    assert str(err.value) == (
        f"migration 0001_records.sql was edited after it was applied (applied sha256 {old[:12]}…, file now {new[:12]}…); "
        "applied migrations are immutable: restore the file and add a new migration instead"
    )
    assert "next_one" not in tables(empty_database_url)  # nothing after the drift is applied either


def test_database_newer_than_the_code_is_refused(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, sha256) VALUES (9999, 'future', %s)", ("0" * 64,))
    with pytest.raises(MigrationError, match=rf"^the database schema is at version 9999, newer than this allora-gitops knows \({LATEST}\); upgrade allora-gitops$"):
        MigrationRunner(database_url).upgrade()


def test_misnamed_and_duplicate_migration_files_are_refused(tmp_path, migrations_copy):
    (migrations_copy / "0001_again.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"^0001_records.sql: version 0001 is also used by 0001_again.sql$"):
        load_migrations(migrations_copy)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1_Init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"^1_Init.sql: migration files are named NNNN_lowercase_name.sql$"):
        load_migrations(bad)


def test_open_records_on_a_real_server_wants_an_explicit_upgrade(empty_database_url):
    with pytest.raises(MigrationError, match=rf"^the database schema is at version 0000 and {len(load_migrations())} migration\(s\) are pending; run `allora-gitops db upgrade`$"):
        open_records(empty_database_url)
    with open_records(empty_database_url, migrate=True) as records:
        assert records.list_bundles() == []


def test_cli_status_and_upgrade(cli_proc, empty_database_url):
    status = cli_proc("gitops", "db", "status", "--database-url", empty_database_url)
    assert status.code == 1
    assert status.out.splitlines()[1:] == [f"  {m.label}  pending" for m in load_migrations()] + [
        f"{len(load_migrations())} pending; run `allora-gitops db upgrade`"
    ]
    up = cli_proc("gitops", "db", "upgrade", env={"ALLORA_DATABASE_URL": empty_database_url})
    assert up.code == 0 and up.out.splitlines()[:-1] == [f"applied {m.label}" for m in load_migrations()], up
    status = cli_proc("gitops", "db", "status", env={"ALLORA_DATABASE_URL": empty_database_url})
    assert status.code == 0, status
    assert status.out.splitlines()[-1] == f"up to date at version {LATEST}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_is_one_clear_line_without_the_password(cli_proc):
    port = _free_port()
    url = f"postgresql://allora:hunter2secret@127.0.0.1:{port}/records"
    result = cli_proc("gitops", "db", "upgrade", "--database-url", url)
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines() == [
        f"error: cannot connect to the database postgresql://allora:***@127.0.0.1:{port}/records: "
        f'connection failed: connection to server at "127.0.0.1", port {port} failed: Connection refused'
    ]
    assert "hunter2secret" not in result.err


@pytest.mark.slow
def test_embedded_default_is_shared_by_concurrent_commands_and_stopped_after(tmp_path):
    """No URL: three CLI processes at once share one embedded server under the state dir; it stops after the last."""
    import psutil

    import tempfile
    from pathlib import Path

    # not under tmp_path: pytest makes its base temp directory 0700, and the embedded server runs as its
    # own system user, which must reach the data directory
    home = Path(tempfile.mkdtemp(prefix="allora-embedded-")) / "h"
    env = cli_env({"ALLORA_GITOPS_HOME": str(home)})
    env.pop("ALLORA_DATABASE_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "allora_gitops.cli.gitops", "db", "upgrade"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0, 0], results
    assert sum(out.count("applied 0001_records") for _, out, _ in results) == 1
    assert all(err == "" for _, _, err in results), results
    data_dir = str(home / "postgres" / "data")

    def running() -> list:
        return [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "postgres" and data_dir in (p.info["cmdline"] or [])]

    assert running() == []
    again = subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", "db", "status"],
                           capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith("(embedded)")
    assert again.stdout.splitlines()[-1] == f"up to date at version {LATEST}"
    assert running() == []
    shutil.rmtree(home.parent, ignore_errors=True)
