"""The records API and the constraints behind it, against a real PostgreSQL."""

from __future__ import annotations

import json

import psycopg
import pytest

from allora_gitops.db.records import ALLOWED_TRANSITIONS, DEPLOYMENT_STATUSES
from allora_gitops.errors import DatabaseError, RecordConflict, RecordRefused

SHA = "a" * 64
OTHER_SHA = "b" * 64
COMMIT = "c" * 40
MNEMONIC = "abandon ability able about above absent absorb abstract absurd abuse access accident"
HEX_KEY = "0x" + "1f" * 32


def bundle_args(**over):
    args = dict(
        name="linear-forecaster",
        version="1.2.0",
        sha256=SHA,
        size=12345,
        archive_url=f"s3://archives/bundles/linear-forecaster/1.2.0/{SHA}.tar.gz",
        python_version="3.11",
        manifest={"name": "linear-forecaster", "version": "1.2.0", "allora": {"topic_id": 69}},
    )
    args.update(over)
    return args


def deployment_args(bundle_id, **over):
    args = dict(
        bundle_id=bundle_id,
        network="testnet",
        topic_id=69,
        wallet_secret_name="forecaster-wallet",
        repo_url="https://git.example.com/platform/gitops.git",
        repo_branch="deploy/linear-forecaster/testnet/1.2.0",
    )
    args.update(over)
    return args


# --- bundles --------------------------------------------------------------------------------------
def test_register_bundle_is_idempotent_on_name_version_sha256(records):
    first = records.register_bundle(**bundle_args())
    assert first.created and first.sha256 == SHA and first.size == 12345 and first.manifest["allora"] == {"topic_id": 69}
    again = records.register_bundle(**bundle_args())
    assert not again.created and again.id == first.id
    assert records.list_bundles() == [first]
    assert records.get_bundle("linear-forecaster", "1.2.0") == first
    assert records.find_bundle_by_sha256(SHA) == [first]
    assert records.get_bundle("linear-forecaster", "9.9.9") is None


def test_same_name_and_version_with_another_sha256_is_refused(records):
    records.register_bundle(**bundle_args())
    with pytest.raises(RecordConflict) as err:
        records.register_bundle(**bundle_args(sha256=OTHER_SHA, archive_url=f"s3://archives/x/{OTHER_SHA}.tar.gz"))
    assert str(err.value) == (
        f"bundle linear-forecaster 1.2.0 is already registered with sha256 {SHA}, not {OTHER_SHA}; "
        "a version names one archive forever: bump the version"
    )
    assert len(records.list_bundles()) == 1


def test_list_bundles_by_name_newest_first(records):
    a = records.register_bundle(**bundle_args())
    b = records.register_bundle(**bundle_args(version="1.3.0", manifest={"name": "linear-forecaster", "version": "1.3.0"}))
    records.register_bundle(**bundle_args(name="other", manifest={"name": "other", "version": "1.2.0"}))
    assert [r.version for r in records.list_bundles("linear-forecaster")] == [b.version, a.version]


def test_a_refused_bundle_names_the_field_in_words_and_never_echoes_the_secret_or_the_sql(records):
    with pytest.raises(RecordRefused) as err:  # a DatabaseError the API answers 422, never a retryable 503
        records.register_bundle(**bundle_args(manifest={"name": "linear-forecaster", "version": "1.2.0", "note": MNEMONIC}))
    assert err.value.lines() == [
        "error: cannot register the bundle: model.yaml: does not match the bundle's name and version, or looks like a wallet key or mnemonic"
    ]
    assert isinstance(err.value, DatabaseError)
    with pytest.raises(RecordRefused) as long_version:
        records.register_bundle(**bundle_args(version="1.0.0-" + "a" * 59, manifest={"name": "linear-forecaster", "version": "1.0.0-" + "a" * 59}))
    assert str(long_version.value) == "cannot register the bundle: version: a semantic version (1.2.3, 1.2.3-rc.1, 1.2.3+build) of at most 64 characters"
    assert "abandon" not in str(err.value)


# --- deployments ----------------------------------------------------------------------------------
def test_create_deployment_is_idempotent_for_the_same_settings(records):
    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(**deployment_args(bundle.id))
    assert d.created and d.status == "pending" and d.name == "linear-forecaster" and d.version == "1.2.0"
    assert d.wallet_secret_kind == "Secret" and d.fee_tier == "STANDARD" and d.commit_sha is None
    again = records.create_deployment(**deployment_args(bundle.id))
    assert not again.created and again.id == d.id
    other = records.create_deployment(**deployment_args(bundle.id, topic_id=70))
    assert other.created and other.id != d.id
    assert {x.id for x in records.list_deployments(name="linear-forecaster", network="testnet")} == {d.id, other.id}
    assert records.list_deployments(network="mainnet") == []


def test_status_walks_the_machine_and_updated_at_follows(records):
    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(**deployment_args(bundle.id))
    committed = records.set_deployment_status(d.id, "committed", commit_sha=COMMIT)
    assert committed.status == "committed" and committed.commit_sha == COMMIT
    assert committed.updated_at > d.updated_at and committed.created_at == d.created_at
    synced = records.set_deployment_status(d.id, "synced", message="Argo CD: Healthy")
    assert (synced.status, synced.status_message) == ("synced", "Argo CD: Healthy")
    assert records.current_deployment("linear-forecaster", "testnet") == synced
    assert records.set_deployment_status(d.id, "synced").status == "synced"  # same status: no-op
    retired = records.set_deployment_status(d.id, "retired")
    assert retired.status == "retired"
    assert records.current_deployment("linear-forecaster", "testnet") is None
    # a retired deployment no longer absorbs a new publish of the same settings
    assert records.create_deployment(**deployment_args(bundle.id)).created


ILLEGAL = [(old, new) for old in DEPLOYMENT_STATUSES for new in DEPLOYMENT_STATUSES if new != old and new not in ALLOWED_TRANSITIONS[old]]


def _force_status(database_url, deployment_id, status):
    with psycopg.connect(database_url, autocommit=True) as conn:
        # walk a legal path to `status` through SQL, so the trigger itself is what we test afterwards
        path = {
            "pending": [], "committed": ["committed"], "merged": ["committed", "merged"], "synced": ["committed", "synced"],
            "failed": ["failed"], "abandoned": ["committed", "abandoned"], "retiring": ["committed", "retiring"],
            "retired": ["retired"], "superseded": ["committed", "merged", "superseded"],
        }[status]  # fmt: skip
        for step in path:
            conn.execute("UPDATE releases SET status = %s, commit_sha = %s WHERE id = %s", (step, COMMIT, deployment_id))


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o}-{n}" for o, n in ILLEGAL])
def test_illegal_transitions_are_refused_by_the_api_and_the_database(records, database_url, old, new):
    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(**deployment_args(bundle.id))
    _force_status(database_url, d.id, old)
    with pytest.raises(RecordConflict) as err:
        records.set_deployment_status(d.id, new, commit_sha=COMMIT)
    assert str(err.value).startswith(f"deployment {d.id} is {old}; it cannot become {new} (allowed: ")
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(psycopg.errors.CheckViolation) as db_err:
        conn.execute("UPDATE releases SET status = %s, commit_sha = %s WHERE id = %s", (new, COMMIT, d.id))
    assert db_err.value.diag.message_primary == f"illegal deployment status change {old} -> {new}"
    assert records.get_deployment(d.id).status == old


def test_committed_needs_a_commit_sha(records):
    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(**deployment_args(bundle.id))
    with pytest.raises(DatabaseError, match=r"status committed needs the commit sha$"):
        records.set_deployment_status(d.id, "committed")
    with pytest.raises(DatabaseError, match=r"not a record id: 'nope'"):
        records.set_deployment_status("nope", "failed")


# --- submissions ----------------------------------------------------------------------------------
def test_record_submissions_and_redact_secret_looking_text(records):
    bundle = records.register_bundle(**bundle_args())
    d = records.create_deployment(**deployment_args(bundle.id))
    ok = records.record_submission(d.id, nonce=7, status="success", prediction=3.25, tx_hash="AB" * 32)
    assert (ok.prediction, ok.tx_hash, ok.status) == ("3.25", "AB" * 32, "success")
    multi = records.record_submission(d.id, nonce=8, status="success", prediction={"eth": 1.5, "btc": 2})
    assert json.loads(multi.prediction) == {"btc": 2, "eth": 1.5}
    err = records.record_submission(d.id, nonce=9, status="error", error_message=f"signing failed with key {HEX_KEY} for sha256:{SHA}")
    assert err.error_message == f"signing failed with key [redacted] for sha256:{SHA}"
    leak = records.record_submission(d.id, nonce=10, status="timeout", error_message=f"wallet: {MNEMONIC}")
    assert leak.error_message == "[redacted: the text looked like a wallet secret]"
    assert [s.nonce for s in records.list_submissions(d.id)] == [10, 9, 8, 7]


# --- every constraint rejects what it should -------------------------------------------------------
BUNDLE_ROW = dict(
    name="m", version="1.0.0", sha256=SHA, size_bytes=10, archive_url=f"file:///store/bundles/m/1.0.0/{SHA}.tar.gz",
    python_version="3.11", manifest=json.dumps({"name": "m", "version": "1.0.0"}), published_by=None,
)
BUNDLE_BAD = [
    ("name", "Bad_Name", "model_bundles_name_format"),
    ("name", "x" * 54, "model_bundles_name_format"),
    ("version", "1.0", "model_bundles_version_format"),
    ("sha256", "A" * 64, "model_bundles_sha256_format"),
    ("sha256", "a" * 63, "model_bundles_sha256_format"),
    ("size_bytes", 0, "model_bundles_size_positive"),
    ("archive_url", "https://example.com/m.tar.gz", "model_bundles_archive_url_format"),
    ("archive_url", "s3://bucket/m/1.0.0/other.tar.gz", "model_bundles_archive_url_format"),
    ("archive_url", f"s3://AKIA:secret@bucket/{SHA}.tar.gz", "model_bundles_archive_url_format"),
    ("python_version", "2.7.18", "model_bundles_python_version_format"),
    ("manifest", json.dumps(["not", "an", "object"]), "model_bundles_manifest_matches"),
    ("manifest", json.dumps({"name": "other", "version": "1.0.0"}), "model_bundles_manifest_matches"),
    ("manifest", json.dumps({"name": "m", "version": "1.0.0", "k": "1f" * 32}), "model_bundles_manifest_matches"),
    ("published_by", MNEMONIC, "model_bundles_published_by_text"),
    ("published_by", "", "model_bundles_published_by_text"),
]
DEPLOYMENT_ROW = dict(
    network="testnet", topic_id=1, fee_tier="STANDARD", status="pending", status_message=None, container_image=None,
    wallet_secret_kind="Secret", wallet_secret_name="wallet", repo_url="git@example.com:org/gitops.git",
    repo_branch="deploy/m/testnet/1.0.0", commit_sha=None,
)
DEPLOYMENT_BAD = [
    ("network", "Test Net", "deployments_network_format"),
    ("topic_id", 0, "deployments_topic_id_positive"),
    ("fee_tier", "CHEAP", "deployments_fee_tier_valid"),
    ("status", "running", "deployments_status_valid"),
    ("status", "committed", "deployments_committed_has_commit"),
    ("status_message", f"key={HEX_KEY}", "deployments_status_message_text"),
    ("container_image", "registry.example.com/m:1.0.0 extra", "deployments_container_image_format"),
    ("wallet_secret_kind", "ConfigMap", "deployments_wallet_secret_kind_valid"),
    ("wallet_secret_name", MNEMONIC, "deployments_wallet_secret_name_format"),
    ("wallet_secret_name", "1f" * 32, "deployments_wallet_secret_name_format"),
    ("repo_url", "https://user:token@git.example.com/org/gitops.git", "deployments_repo_url_format"),
    ("repo_url", "", "deployments_repo_url_format"),
    ("repo_branch", "../main", "deployments_repo_branch_format"),
    ("commit_sha", "abc123", "deployments_commit_sha_format"),
]
SUBMISSION_ROW = dict(nonce=1, prediction="1.5", tx_hash=None, status="success", error_message=None)
SUBMISSION_BAD = [
    ("nonce", -1, "submission_results_nonce_nonnegative"),
    ("status", "ok", "submission_results_status_valid"),
    ("prediction", None, "submission_results_success_has_prediction"),
    ("prediction", MNEMONIC, "submission_results_prediction_text"),
    ("tx_hash", "0x" + "ab" * 32, "submission_results_tx_hash_format"),
]


def _release(conn, bundle_id, **over):
    """A release row (0008) of a fresh deployment of the bundle's name on testnet."""
    with conn.transaction():
        target = conn.execute(
            """INSERT INTO deployments (name, network) VALUES (%s, %s)
               ON CONFLICT (name, network, kind) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
            (BUNDLE_ROW["name"], DEPLOYMENT_ROW["network"]),
        ).fetchone()[0]
    return _insert(conn, "releases", {"bundle_id": bundle_id, "deployment_id": target, **DEPLOYMENT_ROW, **over})


def _insert(conn, table, row):
    columns = ", ".join(row)
    values = ", ".join("%s::jsonb" if c == "manifest" else "%s" for c in row)
    with conn.transaction():  # a savepoint: a refused row does not abort the test's transaction
        return conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id", list(row.values())).fetchone()[0]


@pytest.fixture
def conn(shared_database_url):
    """One transaction per test on the module's database, rolled back at the end."""
    with psycopg.connect(shared_database_url) as c:
        c.execute("SELECT 1")  # opens the outer transaction; conn.transaction() blocks become savepoints
        yield c
        c.rollback()


def test_valid_rows_are_accepted(conn):
    bundle_id = _insert(conn, "model_bundles", BUNDLE_ROW)
    deployment_id = _release(conn, bundle_id)
    _insert(conn, "submission_results", {"deployment_id": deployment_id, **SUBMISSION_ROW})
    _insert(conn, "submission_results", {"deployment_id": deployment_id, **SUBMISSION_ROW, "nonce": SUBMISSION_ROW["nonce"] + 1, "status": "error", "prediction": None, "error_message": "boom"})
    # the positive control every constraint test below relies on: these rows really are stored
    # (ids are random UUIDs: order by something the rows were given)
    rows = conn.execute("SELECT status, error_message FROM submission_results WHERE deployment_id = %s ORDER BY status", [deployment_id]).fetchall()
    assert rows == [("error", "boom"), (SUBMISSION_ROW["status"], SUBMISSION_ROW.get("error_message"))]


@pytest.mark.parametrize(("column", "value", "constraint"), BUNDLE_BAD, ids=[c for _, _, c in BUNDLE_BAD])
def test_bundle_constraints(conn, column, value, constraint):
    row = {**BUNDLE_ROW, column: value}
    if column in ("name", "version"):  # keep the manifest consistent so only the rule under test can fire
        row["manifest"] = json.dumps({"name": row["name"], "version": row["version"]})
    if column == "sha256":
        row["archive_url"] = f"file:///store/{value}.tar.gz"
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        _insert(conn, "model_bundles", row)
    assert err.value.diag.constraint_name == constraint


@pytest.mark.parametrize(("column", "value", "constraint"), DEPLOYMENT_BAD, ids=[f"{col}-{c}" for col, _, c in DEPLOYMENT_BAD])
def test_deployment_constraints(conn, column, value, constraint):
    bundle_id = _insert(conn, "model_bundles", BUNDLE_ROW)
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        _release(conn, bundle_id, **{column: value})
    assert err.value.diag.constraint_name == constraint


@pytest.mark.parametrize(("column", "value", "constraint"), SUBMISSION_BAD, ids=[f"{col}-{c}" for col, _, c in SUBMISSION_BAD])
def test_submission_constraints(conn, column, value, constraint):
    bundle_id = _insert(conn, "model_bundles", BUNDLE_ROW)
    deployment_id = _release(conn, bundle_id)
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        _insert(conn, "submission_results", {"deployment_id": deployment_id, **SUBMISSION_ROW, column: value})
    assert err.value.diag.constraint_name == constraint


def test_failure_without_an_error_message_and_keys_and_nulls(conn):
    bundle_id = _insert(conn, "model_bundles", BUNDLE_ROW)
    deployment_id = _release(conn, bundle_id)
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        _insert(conn, "submission_results", {"deployment_id": deployment_id, **SUBMISSION_ROW, "status": "error"})
    assert err.value.diag.constraint_name == "submission_results_failure_has_error"
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "model_bundles", BUNDLE_ROW)
    with pytest.raises(psycopg.errors.NotNullViolation):
        _insert(conn, "model_bundles", {**BUNDLE_ROW, "archive_url": None})
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        _release(conn, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(psycopg.errors.RestrictViolation), conn.transaction():  # a bundle with deployments cannot vanish
        conn.execute("DELETE FROM model_bundles WHERE id = %s", (bundle_id,))


def test_no_column_is_named_like_a_secret(conn):
    typed = conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'").fetchall()
    columns = [name for name, _ in typed]
    # a uuid (web_sessions.token_id: which token a sign-in came from) is a reference and cannot hold a secret
    assert not [c for c, kind in typed if kind != "uuid" and any(w in c for w in ("mnemonic", "private_key", "password", "token"))]
    assert "wallet_secret_name" in columns and "wallet_secret_kind" in columns
