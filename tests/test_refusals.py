"""Database refusals reach users in the product's words: no table or constraint name, the field named, 422/409.

Every constraint of the migrated schema (read from ``pg_constraint``, so constraints that later migrations add
are covered too) is described without an identifier; real violations through the records API become
``RecordRefused`` / ``RecordConflict`` with those words.
"""

from __future__ import annotations

import re

import pytest

from allora_gitops.db.refusals import constraint_refusal, describe_refusal, schema_identifiers
from allora_gitops.errors import DatabaseError, RecordConflict, RecordRefused
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)
from tests.fixtures.problems import SCHEMA_NAME

SHA = "a" * 64
SQLSTATE_OF = {"c": "23514", "u": "23505", "p": "23505", "f": "23503", "n": "23502", "x": "23P01"}


def _identifier_in(text: str, identifiers: set[str]) -> list[str]:
    return [i for i in identifiers if re.search(rf"(?<![A-Za-z0-9_]){re.escape(i)}(?![A-Za-z0-9_])", text)]


def test_every_constraint_of_the_schema_is_described_without_an_identifier(database_url):
    import psycopg

    with psycopg.connect(database_url) as conn:
        identifiers = schema_identifiers(conn)
        rows = conn.execute(
            """SELECT conrelid::regclass::text, conname, contype,
                      (SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = conkey[1])
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace"""
        ).fetchall()
    assert len(rows) > 100 and "model_bundles_version_format" in identifiers and "deployments" in identifiers
    for table, constraint, kind, column in rows:
        words = str(constraint_refusal(table, constraint, column, SQLSTATE_OF[kind]))
        # "deployments" alone is also a product word ("live deployments"): only identifiers with '_' count here
        assert not _identifier_in(words, {i for i in identifiers if "_" in i}), (constraint, words)
        assert not SCHEMA_NAME.search(words), (constraint, words)
        assert constraint_refusal(table, constraint, column, SQLSTATE_OF[kind]).conflict == (kind in "up")


def test_a_constraint_a_later_migration_adds_is_described_from_its_parts():
    assert str(constraint_refusal("deployments", "deployments_cpu_limit_positive", None)) == "deployment cpu limit: must be greater than 0"
    assert str(constraint_refusal("model_bundles", "model_bundles_readme_text", None)) == (
        "bundle readme: is too long, or looks like a wallet key or mnemonic"
    )
    assert str(constraint_refusal("releases", "releases_deployment_id_fkey", None, "23503")) == "release deployment id: refers to something that does not exist"
    assert str(constraint_refusal("releases", "releases_one_live", None, "23505")) == "such a release exists already"
    assert constraint_refusal(None, None, "network", "23502").message == "is required"


def bundle_args(**over):
    args = dict(
        name="linear-forecaster", version="1.2.0", sha256=SHA, size=12345,
        archive_url=f"s3://archives/bundles/linear-forecaster/1.2.0/{SHA}.tar.gz", python_version="3.11",
        manifest={"name": "linear-forecaster", "version": "1.2.0"},
    )  # fmt: skip
    args.update(over)
    return args


@pytest.mark.parametrize(
    "over, kind, line",
    [
        (
            {"version": "1.0.0-" + "a" * 60, "manifest": {"name": "linear-forecaster", "version": "1.0.0-" + "a" * 60}},
            RecordRefused,
            "error: cannot register the bundle: version: a semantic version (1.2.3, 1.2.3-rc.1, 1.2.3+build) of at most 64 characters",
        ),
        (
            {"name": "Bad_Name", "manifest": {"name": "Bad_Name", "version": "1.2.0"}},
            RecordRefused,
            "error: cannot register the bundle: name: lower-case letters, digits and '-' (at most 53), starting and ending alphanumeric",
        ),
        ({"python_version": "2.7"}, RecordRefused, "error: cannot register the bundle: python: a Python version 3.N"),
    ],
)
def test_a_refused_record_names_the_field_in_the_products_words(records, database_url, over, kind, line):
    import psycopg

    with pytest.raises(DatabaseError) as err:
        records.register_bundle(**bundle_args(**over))
    assert type(err.value) is kind
    assert err.value.lines() == [line]
    with psycopg.connect(database_url) as conn:
        assert not _identifier_in(line, schema_identifiers(conn))


def test_a_uniqueness_violation_is_a_conflict_and_data_errors_are_refusals(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO platform_users (name) VALUES ('bob')")
        with pytest.raises(psycopg.Error) as dup:
            conn.execute("INSERT INTO platform_users (name) VALUES ('bob')")
        with pytest.raises(psycopg.Error) as nul:
            conn.execute("INSERT INTO platform_users (name) VALUES (%s)", ("b\x00b",))
        with pytest.raises(psycopg.Error) as huge:
            conn.execute("UPDATE platform_users SET max_live_deployments = %s::bigint", (10**15,))
        with pytest.raises(psycopg.Error) as gone:
            conn.execute("SELECT * FROM no_such_table")
    assert describe_refusal(dup.value).conflict and str(describe_refusal(dup.value)) == "user: a user with this name exists"
    assert str(describe_refusal(huge.value)) == "a number is out of range"
    # psycopg refuses a NUL before the server sees it: not a database refusal, and said as psycopg says it
    assert describe_refusal(nul.value) is None or "NUL" in str(describe_refusal(nul.value))
    assert describe_refusal(gone.value) is None

    from allora_gitops.db.connection import refusal_error, translate_error

    assert isinstance(refusal_error(dup.value, "create the user"), RecordConflict)
    assert "no_such_table" not in translate_error(gone.value) and "db upgrade" in translate_error(gone.value)


def test_a_status_change_our_trigger_refuses_keeps_its_own_words_as_a_conflict(records, database_url):
    import psycopg

    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(bundle_id=bundle.id, network="testnet", topic_id=69, wallet_secret_name="w",
                                  repo_url="file:///r", repo_branch="main")  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(psycopg.Error) as err:
        conn.execute("UPDATE releases SET status = 'retired' WHERE id = %s", (d.id,))  # a release's state (migration 0008)
        conn.execute("UPDATE releases SET status = 'pending' WHERE id = %s", (d.id,))
    refusal = describe_refusal(err.value)
    assert refusal.conflict and str(refusal) == "status: illegal deployment status change retired -> pending"


def test_the_error_body_watch_would_catch_the_old_wording():
    old = 'the database refused to register the bundle: new row for relation "model_bundles" violates check constraint "model_bundles_version_format"'
    assert SCHEMA_NAME.search(old)
    assert SCHEMA_NAME.search("duplicate key value violates unique constraint platform_users_name_key")
    assert not SCHEMA_NAME.search("carol has 1 live deployment(s), the limit; version: a semantic version")


def test_through_the_api_bad_input_is_a_422_naming_the_field(platform_server, tmp_path):
    """Each of these reached the database's checks as a 503 quoting SQL (issue 27). Now 422, the field named;
    the autouse watch checks every body for schema names as well."""
    import httpx

    from tests.fixtures.bundles import make_bundle
    from tests.test_api import build

    platform = platform_server
    token = platform.token("erin", wallets=("erin-wallet",))
    api = httpx.Client(base_url=platform.url, timeout=300, headers=platform.headers(token))
    # a 65-character version and a `.lock` version are refused before anything is written: test_api_upload_checks.py

    # an absurd resource ask: refused by the repository's maxima before anything is pushed
    from tests.fixtures.git import remote_branches

    d = make_bundle(tmp_path / "ok", name="erin-model", version="1.0.0")
    with open(build(d), "rb") as fh:
        assert api.post("/api/bundles", files={"bundle": ("b.tar.gz", fh)}).status_code == 201
    before = remote_branches(platform.repo)
    for resources, needle in (
        ({"cpu": "1" + "0" * 30}, "cpu: '1000000000000000000000000000000' cores is more than 16"),
        ({"memory": "900Ti"}, "memory: '900Ti' is more than 64Gi"),
    ):
        r = api.post("/api/deployments", json={"bundle": {"name": "erin-model", "version": "1.0.0"}, "network": "testnet",
                                               "wallet": "erin-wallet", "resources": resources})  # fmt: skip
        assert r.status_code == 422, r.text
        assert needle in r.json()["detail"] and "resources.max_" in r.json()["detail"]
    assert remote_branches(platform.repo) == before
