"""Migration 0008 and the records of deployments and releases, against a real PostgreSQL.

A database filled by the schema before 0008 (one `deployments` row per publish, results, names without an
owner) is upgraded: every row and result is still there, reachable from its deployment (name + network).
"""

from __future__ import annotations

import shutil

import psycopg
import pytest

from allora_gitops.db.migrate import MIGRATIONS_DIR, MigrationRunner
from allora_gitops.db.records import Records
from allora_gitops.errors import RecordConflict

SHA = {v: f"{i:x}" * 64 for i, v in enumerate(("0.1.0", "0.2.0"), start=10)}
REPO = "https://git.example.com/platform/gitops.git"
COMMIT = {i: f"{i:040x}" for i in range(1, 9)}


def _bundle(conn, name: str, version: str) -> str:
    sha = SHA[version][:64]
    return conn.execute(
        """INSERT INTO model_bundles (name, version, sha256, size_bytes, archive_url, python_version, manifest)
           VALUES (%s, %s, %s, 100, %s, '3.11', %s::jsonb) RETURNING id::text""",
        (name, version, sha, f"file:///store/{name}/{version}/{sha}.tar.gz", f'{{"name": "{name}", "version": "{version}"}}'),
    ).fetchone()[0]


def _row(conn, bundle_id: str, network: str, branch: str, statuses: list[str], commit: str, created: str) -> str:
    """A pre-0008 deployment row walked through ``statuses`` (the trigger of that schema checks each step)."""
    rid = conn.execute(
        """INSERT INTO deployments (bundle_id, network, topic_id, wallet_secret_name, repo_url, repo_branch, created_at)
           VALUES (%s, %s, 69, 'm-testnet-wallet', %s, %s, %s) RETURNING id::text""",
        (bundle_id, network, REPO, branch, created),
    ).fetchone()[0]
    for status in statuses:
        conn.execute("UPDATE deployments SET status = %s, commit_sha = %s WHERE id = %s", (status, commit, rid))
    return rid


def _result(conn, release_id: str, nonce: int) -> None:
    conn.execute(
        "INSERT INTO submission_results (deployment_id, nonce, status, prediction, kind) VALUES (%s, %s, 'success', '1.5', 'prediction')",
        (release_id, nonce),
    )


@pytest.fixture
def before_0008(empty_database_url, tmp_path) -> str:
    directory = tmp_path / "before"
    directory.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0008":
            shutil.copy(path, directory)
    MigrationRunner(empty_database_url, directory).upgrade()
    return empty_database_url


def test_0008_moves_every_row_into_deployments_and_releases_and_results_keep_their_release(before_0008):
    url = before_0008
    with psycopg.connect(url, autocommit=True) as conn:
        v1, v2 = _bundle(conn, "m", "0.1.0"), _bundle(conn, "m", "0.2.0")
        other = _bundle(conn, "other", "0.1.0")
        rows = {
            "pub1": _row(conn, v1, "testnet", "deploy/m/testnet/0.1.0", ["committed", "merged"], COMMIT[1], "2026-01-01"),
            "pub2": _row(conn, v2, "testnet", "deploy/m/testnet/0.2.0", ["committed", "merged"], COMMIT[2], "2026-01-02"),
            "rb1": _row(conn, v1, "testnet", "rollback/m/testnet/0.1.0", ["committed", "merged"], COMMIT[3], "2026-01-03"),
            "open": _row(conn, v2, "testnet", "deploy/m/testnet/0.2.0-x", ["committed"], COMMIT[4], "2026-01-04"),
            "main": _row(conn, v2, "mainnet", "promote/m/mainnet/0.2.0", ["committed", "merged"], COMMIT[5], "2026-01-05"),
            "gone": _row(conn, other, "testnet", "deploy/other/testnet/0.1.0", ["committed", "retiring", "retired"], COMMIT[6], "2026-01-06"),
        }
        for n, rid in enumerate(rows.values()):
            _result(conn, rid, n)
            _result(conn, rid, 100 + n)
        assert conn.execute("SELECT count(*) FROM bundle_owners").fetchone()[0] == 0  # nobody owns CLI-published names

    MigrationRunner(url).upgrade()

    with Records(url) as records:
        conn = records.connection
        # every row is a release now, with its id, its results and its deployment
        assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == len(rows)
        assert conn.execute("SELECT count(*) FROM submission_results").fetchone()[0] == 2 * len(rows)
        for n, rid in enumerate(rows.values()):
            assert conn.execute(
                "SELECT array_agg(nonce ORDER BY nonce) FROM submission_results WHERE deployment_id = %s", (rid,)
            ).fetchone()[0] == [n, 100 + n]
        deployments = {(d.name, d.network): d for d in records.list_deployment_entities()}
        assert sorted(deployments) == [("m", "mainnet"), ("m", "testnet"), ("other", "testnet")]
        assert {d.owner for d in deployments.values()} == {"platform"}
        owners = dict(conn.execute("SELECT b.name, u.name FROM bundle_owners b JOIN platform_users u ON u.id = b.user_id").fetchall())
        assert owners == {"m": "platform", "other": "platform"}

        testnet = deployments[("m", "testnet")]
        history = records.list_releases(testnet.id)
        assert [(r.id, r.action, r.version, r.status) for r in history] == [
            (rows["pub1"], "publish", "0.1.0", "superseded"),
            (rows["pub2"], "publish", "0.2.0", "superseded"),
            (rows["rb1"], "rollback", "0.1.0", "merged"),
            (rows["open"], "publish", "0.2.0", "committed"),
        ]
        assert testnet.live_release_id == rows["rb1"]
        assert records.current_deployment("m", "testnet").id == rows["rb1"]  # where new results go
        assert [r.action for r in records.list_releases(deployments[("m", "mainnet")].id)] == ["promote"]
        assert deployments[("m", "mainnet")].live_release_id == rows["main"]
        assert deployments[("other", "testnet")].live_release_id is None
        assert [r.status for r in records.list_releases(deployments[("other", "testnet")].id)] == ["retired"]

        # and the new state machine holds in the database too
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE releases SET status = 'committed' WHERE id = %s", (rows["pub1"],))


def test_a_new_release_joins_its_deployment_and_settling_the_live_one_supersedes_the_rest(database_url):
    with Records(database_url) as records:
        conn = records.connection
        v1, v2 = _bundle(conn, "m", "0.1.0"), _bundle(conn, "m", "0.2.0")
        args = dict(network="testnet", topic_id=69, wallet_secret_name="m-testnet-wallet", repo_url=REPO)
        a = records.create_release(bundle_id=v1, repo_branch="deploy/m/testnet/0.1.0", **args)
        again = records.create_release(bundle_id=v1, repo_branch="deploy/m/testnet/0.1.0", **args)
        assert a.created and not again.created and again.id == a.id  # a re-run reuses the open release
        b = records.create_release(bundle_id=v2, repo_branch="deploy/m/testnet/0.2.0", action="publish", created_by="alice", **args)
        assert a.deployment_id == b.deployment_id and b.created_by == "alice"
        for r, commit in ((a, COMMIT[1]), (b, COMMIT[2])):
            records.set_release_status(r.id, "committed", commit_sha=commit)
            records.set_release_status(r.id, "merged")
        changed = records.settle_live_release(a.deployment_id, b.id, "replaced by 0.2.0")
        assert [(r.id, r.status) for r in changed] == [(a.id, "superseded")]
        assert records.get_deployment_by_id(a.deployment_id).live_release_id == b.id
        # a rollback to what a superseded release holds: git shows it running again
        changed = records.settle_live_release(a.deployment_id, a.id, "rolled back")
        assert sorted((r.version, r.status) for r in changed) == [("0.1.0", "merged"), ("0.2.0", "superseded")]
        with pytest.raises(RecordConflict):
            records.set_release_status(a.id, "committed")


def test_owner_set_transfers_a_name_and_its_deployments(database_url):
    with Records(database_url) as records:
        conn = records.connection
        v1 = _bundle(conn, "m", "0.1.0")
        assert records.claim_for_cli("m", "platform") == "platform"
        records.create_release(bundle_id=v1, network="testnet", topic_id=1, wallet_secret_name="w", repo_url=REPO, repo_branch="b")
        with pytest.raises(RecordConflict, match="no platform user 'bob'"):
            records.set_owner("m", "bob")
        conn.execute("INSERT INTO platform_users (name) VALUES ('bob')")
        assert records.set_owner("m", "bob") == 1
        assert records.find_deployment("m", "testnet").owner == "bob"
        assert records.claim_for_cli("m", "platform") == "bob"  # the CLI never takes a name over


def test_an_unknown_owner_is_answered_with_a_command_that_exists(database_url):
    """The refusal of an unknown user names how to add one; that command must be one the CLI has."""
    import click
    import typer

    from allora_gitops.cli.gitops import app

    cli = typer.main.get_command(app)
    with Records(database_url) as records:
        _bundle(records.connection, "m", "0.1.0")
        for refuse in (lambda: records.set_owner("m", "carol"), lambda: records.claim_for_cli("m", "carol")):
            with pytest.raises(RecordConflict) as refused:
                refuse()
            commands = [c for c in str(refused.value).split("`")[1::2] if c.startswith("allora-gitops ")]
            assert commands, str(refused.value)
            for command in commands:
                words = command.split()[1:]
                group, ctx = cli, click.Context(cli)
                while hasattr(group, "get_command"):  # a group (typer may bring its own click)
                    group = group.get_command(ctx, words.pop(0))
                    assert group is not None, f"{command!r} is no allora-gitops command"
                assert "--user" in {o for p in group.params for o in p.opts}, command
