"""Check everything before anything is written (issue 27.2), through the real server and PostgreSQL: a version
the records would refuse (65 or 300 characters, or ending in ``.lock`` so no branch can carry it) is a 422 naming
``version``, with the object store, the records and the name exactly as before; a record that fails after the
archive was stored takes the archive back; a name another user owns is "taken" (409) on a push, a 404 on reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from allora_gitops import constants as C
from allora_gitops.bundle.manifest import check_bundle_version
from tests.fixtures.bundles import make_bundle
from tests.fixtures.platform import start_platform, stop_platform
from tests.test_api import NAME, build

BRANCH_RULE = re.compile(r"^[A-Za-z0-9._/-]+$")  # deployments_repo_branch_format, with the rest of its rule below


def hand_made_archive(tmp_path: Path, version: str) -> Path:
    """An archive whose model.yaml says ``version``, built past the client's own checks (an old client, curl)."""
    from allora_gitops.bundle.archive import archive_excludes, write_tar_gz
    from allora_gitops.bundle.ignore import walk_bundle

    bundle = make_bundle(tmp_path / f"src-{len(version)}-{version[-5:]}")
    manifest = bundle / "model.yaml"
    manifest.write_text(re.sub(r"^version: .*$", f'version: "{version}"', manifest.read_text(), flags=re.M))
    out = tmp_path / f"bad-{len(version)}-{version[-4:]}.tar.gz"
    with open(out, "wb") as fh:
        write_tar_gz(walk_bundle(bundle, archive_excludes(bundle, bundle / "dist")), fh, name=NAME, version=version, mtime=0)
    return out


def upload(server, archive: Path, token: str) -> httpx.Response:
    with open(archive, "rb") as fh:
        return httpx.post(f"{server.url}/api/bundles", files={"bundle": (archive.name, fh, "application/gzip")},
                          headers=server.headers(token), timeout=60)  # fmt: skip


def state(server, store: Path) -> tuple:
    """What a refused upload must leave alone: the stored files, the bundle rows and the claimed names."""
    import psycopg

    with psycopg.connect(server.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM model_bundles").fetchone()[0]
        owners = conn.execute("SELECT count(*) FROM bundle_owners").fetchone()[0]
    files = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()) if store.exists() else []
    return files, rows, owners


@pytest.fixture
def server(tmp_path, database_url):
    store = tmp_path / "store"
    platform = start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=store.as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    try:
        yield platform, store
    finally:
        stop_platform(platform)


@pytest.mark.parametrize(
    "version, message",
    [
        ("1.0.0-" + "a" * 59, "version: the version is 65 characters long; at most 64 are allowed"),
        ("1.0.0-" + "a" * 294, "version: the version is 300 characters long; at most 64 are allowed"),
        ("1.0.0-x.lock", "version: '1.0.0-x.lock' cannot name a git branch (a ref component may not end in .lock); choose another pre-release label"),
    ],
    ids=["65", "300", "lock"],
)  # fmt: skip
def test_a_version_the_records_would_refuse_is_422_naming_version_and_nothing_changes(server, tmp_path, version, message):
    platform, store = server
    alice = platform.token("alice")
    good = upload(platform, build(make_bundle(tmp_path / "good", version="0.9.0")), alice)
    assert good.status_code == 201, good.text
    before = state(platform, store)
    bob = platform.token("bob")
    answer = upload(platform, hand_made_archive(tmp_path, version), bob)
    assert answer.status_code == 422, answer.text
    assert [p["message"] for p in answer.json()["problems"]] == [message]
    assert "model_bundles" not in answer.text and "constraint" not in answer.text
    assert state(platform, store) == before  # no file, no row, no claim: alice's name is not bob's now either
    again = upload(platform, build(make_bundle(tmp_path / "bob", name="bobs-model")), bob)
    assert again.status_code == 201, again.text


def test_a_record_that_fails_after_the_archive_was_stored_takes_the_archive_back(server, tmp_path):
    import psycopg

    platform, store = server
    alice = platform.token("alice")
    # a refusal only the database knows, after the store: a rule added to the records by hand (real PostgreSQL)
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION refuse_bundle() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation', CONSTRAINT = 'model_bundles_manifest_matches'; END $$;
            CREATE TRIGGER refuse_bundle BEFORE INSERT ON model_bundles FOR EACH ROW EXECUTE FUNCTION refuse_bundle();
        """)  # fmt: skip
    before = state(platform, store)
    answer = upload(platform, build(make_bundle(tmp_path / "a")), alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "cannot register the bundle: model.yaml: does not match the bundle's name and version, or looks like a wallet key or mnemonic"
    )
    assert state(platform, store) == before  # the archive it stored is gone again, and the name was not claimed
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse_bundle ON model_bundles")
    assert upload(platform, build(make_bundle(tmp_path / "b")), alice).status_code == 201
    files, rows, owners = state(platform, store)
    assert (len(files), rows, owners) == (1, 1, 1)


def test_a_name_another_user_owns_is_taken_on_a_push_and_unknown_on_every_read(server, tmp_path):
    platform, store = server
    alice, bob = platform.token("alice"), platform.token("bob")
    assert upload(platform, build(make_bundle(tmp_path / "a")), alice).status_code == 201
    before = state(platform, store)
    taken = upload(platform, build(make_bundle(tmp_path / "b", version="2.0.0")), bob)
    assert taken.status_code == 409
    assert taken.json()["detail"] == f"the bundle name '{NAME}' is taken; choose another name in model.yaml"
    assert "alice" not in taken.text
    assert state(platform, store) == before  # refused before anything was stored
    read = httpx.get(f"{platform.url}/api/bundles/{NAME}/1.0.0", headers=platform.headers(bob), timeout=10)
    missing = httpx.get(f"{platform.url}/api/bundles/no-such-model/1.0.0", headers=platform.headers(bob), timeout=10)
    assert (read.status_code, missing.status_code) == (404, 404)
    assert read.json()["detail"] == f"no bundle {NAME} 1.0.0" and missing.json()["detail"] == "no bundle no-such-model 1.0.0"


def test_every_version_a_manifest_accepts_names_a_branch_the_records_accept():
    for version in ("1.0.0", "1.0.0-rc.1", "1.0.0+build.5", "1.0.0-alpha+001", "2.3.4-x-y.z+sha.0a1b"):
        check_bundle_version(version)
        for branch in (C.review_branch(NAME, "testnet", version), C.promote_branch(NAME, "mainnet", version),
                       C.rollback_branch(NAME, "testnet", version), C.pin_branch(NAME, "testnet", version)):  # fmt: skip
            assert BRANCH_RULE.match(branch) and not re.search(r"(^/|/$|\.\.|//|\.lock$)", branch) and len(branch) <= 255, branch
            assert subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True).returncode == 0, branch
    assert C.review_branch(NAME, "testnet", "1.0.0+build.5") == f"deploy/{NAME}/testnet/1.0.0_build.5"
    for refused in ("1.0.0-x.lock", "1.0.0-" + "a" * 59, "01.0.0"):
        with pytest.raises(ValueError):
            check_bundle_version(refused)
