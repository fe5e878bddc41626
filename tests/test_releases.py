"""Releases tell the truth (issue 20): a deployment is a model on a network, its releases in order, the live one
is what the base branch holds. A bare remote, real PostgreSQL, merges done as a reviewer would."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import git, merge_into_main, remote_branches, remote_file
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

NAME = "linear-forecaster"


@pytest.fixture
def gitops(cli, database_url, gitops_home, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_DATABASE_URL", database_url)
    monkeypatch.setenv("ALLORA_STORE_URL", (tmp_path / "objects").as_uri())
    return lambda *args: cli("gitops", *args)


def test_roll_forward_after_a_rollback_and_one_entry_per_deployment(gitops, gitops_remote, records, tmp_path):
    repo = str(gitops_remote)
    v1 = make_bundle(tmp_path / "a", version="0.1.0")
    v2 = make_bundle(tmp_path / "b", version="0.2.0", weight="v2")

    for bundle, branch in ((v1, f"deploy/{NAME}/testnet/0.1.0"), (v2, f"deploy/{NAME}/testnet/0.2.0")):
        r = gitops("publish", bundle, "--repo", repo, "--network", "testnet")
        assert r.code == 0, r.err
        merge_into_main(gitops_remote, branch)
    r = gitops("rollback", NAME, "--network", "testnet", "--to", "0.1.0", "--repo", repo)
    assert r.code == 0, r.err
    merge_into_main(gitops_remote, f"rollback/{NAME}/testnet/0.1.0")
    assert json.loads(gitops("list", "--repo", repo, "--json").out)[0]["live_version"] == "0.1.0"

    # publish 0.2.0 again: its old branch was merged long ago, so a new review branch rolls forward
    r = gitops("publish", v2, "--repo", repo, "--network", "testnet", "--json")
    assert r.code == 0, r.err
    change = json.loads(r.out)
    forward = f"deploy/{NAME}/testnet/0.2.0-r2"
    assert (change["branch"], change["committed"], change["nothing_to_do"]) == (forward, True, None)
    assert forward in remote_branches(gitops_remote)

    # while it waits: one entry, 0.1.0 live, the roll-forward pending
    r = gitops("list", "--repo", repo, "--json")
    [entry] = json.loads(r.out)
    assert (entry["name"], entry["network"], entry["live_version"], entry["owner"]) == (NAME, "testnet", "0.1.0", "platform")
    assert [(p["version"], p["branch"], p["kind"]) for p in entry["pending"]] == [("0.2.0", forward, "publish")]
    # the same again while it waits: nothing, and the open review is named
    r = gitops("publish", v2, "--repo", repo, "--network", "testnet")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == f"{NAME} 0.2.0 on testnet: nothing to do: the open review {forward} already holds this change: merge it to deploy"

    merge_into_main(gitops_remote, forward)
    assert "0.2.0" in remote_file(gitops_remote, "main", f"deployments/{NAME}/overlays/testnet/kustomization.yaml")
    [entry] = json.loads(gitops("list", "--repo", repo, "--json").out)
    assert (entry["live_version"], entry["pending"], entry["status"]) == ("0.2.0", [], "merged")

    # what main runs: nothing to do, no branch, no release
    before = (sorted(remote_branches(gitops_remote)), len(records.list_deployments(name=NAME)))
    r = gitops("publish", v2, "--repo", repo, "--network", "testnet")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == f"{NAME} 0.2.0 on testnet: nothing to do: main already runs {NAME} 0.2.0 on testnet like this"
    assert (sorted(remote_branches(gitops_remote)), len(records.list_deployments(name=NAME))) == before

    # history: the four releases in order, one live
    r = gitops("history", NAME, "--network", "testnet", "--repo", repo, "--json")
    assert r.code == 0, r.err
    history = json.loads(r.out)
    assert [(h["kind"], h["version"], h["status"], h["branch"], h["live"]) for h in history] == [
        ("publish", "0.1.0", "superseded", f"deploy/{NAME}/testnet/0.1.0", False),
        ("publish", "0.2.0", "superseded", f"deploy/{NAME}/testnet/0.2.0", False),
        ("rollback", "0.1.0", "superseded", f"rollback/{NAME}/testnet/0.1.0", False),
        ("publish", "0.2.0", "merged", forward, True),
    ]
    assert all(h["commit"] and h["at"] for h in history)
    assert history[-1]["commit"] == git(gitops_remote, "rev-parse", forward).strip()
    text = gitops("history", NAME, "--network", "testnet").out.splitlines()
    assert text[0] == "testnet" and text[1].split() == ["KIND", "VERSION", "STATUS", "COMMIT", "DATE", "BRANCH", "BY"]

    # status NAME --network: what runs
    r = gitops("status", NAME, "--network", "testnet", "--repo", repo)
    assert r.code == 0, r.err
    assert "  live: 0.2.0" in r.out.splitlines()


def test_a_rollback_waiting_for_review_shows_in_list_and_status_and_retire_follows_the_rule(gitops, gitops_remote, records, tmp_path):
    repo = str(gitops_remote)
    assert gitops("publish", make_bundle(tmp_path / "a", version="0.1.0"), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    assert gitops("publish", make_bundle(tmp_path / "b", version="0.2.0", weight="v2"), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    assert gitops("rollback", NAME, "--network", "testnet", "--to", "0.1.0", "--repo", repo).code == 0
    [entry] = json.loads(gitops("list", "--json").out)  # from the records alone, too
    assert entry["live_version"] == "0.2.0" and [(p["kind"], p["version"]) for p in entry["pending"]] == [("rollback", "0.1.0")]
    r = gitops("status", NAME, "--json")
    assert r.code == 0, r.err
    assert {(x["live_version"], tuple(p["kind"] for p in x["pending"])) for x in json.loads(r.out)} == {("0.2.0", ("rollback",))}

    # retire: a release of its own; again while it waits → nothing (named); merged → hidden unless --all
    r = gitops("retire", NAME, "--network", "testnet", "--repo", repo)
    assert r.code == 0, r.err
    r = gitops("retire", NAME, "--network", "testnet", "--repo", repo)
    assert (r.code, r.out.splitlines()[0]) == (0, f"{NAME} on testnet: nothing to do: the open review retire/{NAME}/testnet already holds this change: merge it to deploy")
    merge_into_main(gitops_remote, f"retire/{NAME}/testnet")
    assert gitops("list", "--repo", repo).out == "no deployments\n"
    [entry] = json.loads(gitops("list", "--repo", repo, "--all", "--json").out)
    assert (entry["live_version"], entry["status"]) == (None, "retired")
    r = gitops("retire", NAME, "--network", "testnet", "--repo", repo)
    assert (r.code, r.out.splitlines()[0]) == (0, f"{NAME} on testnet: nothing to do: main no longer runs {NAME} on testnet")


# --- owners and wallets through the platform API -------------------------------------------------------------


def test_a_cli_published_name_is_the_platforms_an_api_user_can_neither_take_nor_see_it(platform_server, gitops_home, tmp_path, records):
    from tests.conftest import cli_env
    from tests.test_api import assert_problem, build, bundle_push, curl_upload

    import httpx
    import subprocess
    import sys

    platform = platform_server
    env = cli_env({**platform.env})
    bundle = make_bundle(tmp_path / "cli", version="1.0.0")
    proc = subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", "publish", str(bundle), "--repo", str(platform.repo),
                           "--network", "testnet", "--branch", "main"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "  owner: platform" in proc.stdout.splitlines()
    target = records.find_deployment(NAME, "testnet")
    assert target.owner == "platform"

    mallory = platform.token("mallory", wallets=("mallory-wallet",))
    api = httpx.Client(base_url=platform.url, timeout=120)
    before = (sorted(remote_branches(platform.repo)), len(records.list_bundles()), len(records.list_deployments()))
    # her push of the same name (another version): refused naming the rule, nothing stored, no branch
    other = make_bundle(tmp_path / "mallory", version="9.0.0", weight="mine")
    status, body = curl_upload(platform, build(other), mallory, cwd=other)
    assert status == 409 and "is taken" in body["detail"], body
    pushed = bundle_push(platform, str(other), "--deploy", token=mallory)
    assert pushed.returncode != 0 and "is taken" in pushed.stderr
    assert (sorted(remote_branches(platform.repo)), len(records.list_bundles()), len(records.list_deployments())) == before
    # her lists are without it; its pages and retire are 404 to her
    assert api.get("/api/deployments", headers=platform.headers(mallory)).json() == []
    for path in (f"/api/deployments/{target.id}", f"/api/deployments/{target.id}/releases"):
        assert_problem(api.get(path, headers=platform.headers(mallory)), 404)
        assert_problem(api.get(path), 401)  # no token
        assert_problem(api.get(path, headers={"Authorization": "Bearer agp_00000000_" + "A" * 43}), 401)  # an unknown one
    assert_problem(api.post(f"/api/deployments/{target.id}/retire", headers=platform.headers(mallory)), 404)
    assert sorted(remote_branches(platform.repo)) == before[0]

    # an admin sees one entry, live 1.0.0, and its release history
    admin = platform.token("root", admin=True)
    [entry] = api.get("/api/deployments", headers=platform.headers(admin)).json()
    assert (entry["id"], entry["name"], entry["owner"], entry["live_version"], entry["pending"]) == (target.id, NAME, "platform", "1.0.0", [])
    releases = api.get(f"/api/deployments/{target.id}/releases", headers=platform.headers(admin)).json()
    assert [(r["kind"], r["version"], r["status"]) for r in releases] == [("publish", "1.0.0", "merged")]

    # the operator transfers the name: now it is hers
    moved = subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", "owner", "set", NAME, "mallory"],
                           env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (moved.returncode, moved.stdout.strip()) == (0, f"{NAME} now belongs to mallory (1 deployment(s))"), moved.stderr
    [entry] = api.get("/api/deployments", headers=platform.headers(mallory)).json()
    assert entry["owner"] == "mallory"


def test_mainnet_needs_the_wallet_named_and_every_change_names_it(platform_server, tmp_path, records):
    from tests.test_api import assert_problem, build, curl_upload

    import httpx

    platform = platform_server
    alice = platform.token("alice", wallets=("alice-testnet-wallet",))
    bundle = make_bundle(tmp_path, version="1.0.0")
    status, body = curl_upload(platform, build(bundle), alice, cwd=bundle)
    assert status == 201, body
    api = httpx.Client(base_url=platform.url, timeout=120)
    deploy = {"bundle": {"name": NAME, "version": "1.0.0"}, "network": "mainnet"}
    branches = sorted(remote_branches(platform.repo))
    # her only wallet is not taken silently for mainnet
    assert_problem(api.post("/api/deployments", json=deploy, headers=platform.headers(alice)), 422, "'wallet'")
    assert sorted(remote_branches(platform.repo)) == branches and records.list_deployments() == []
    # named: the answer says which wallet
    r = api.post("/api/deployments", json=dict(deploy, wallet="alice-testnet-wallet"), headers=platform.headers(alice))
    assert r.status_code == 201, r.text
    change = r.json()
    assert change["wallet"] == "alice-testnet-wallet" and "wallet: Secret alice-testnet-wallet" in change["summary"]
    assert any("alice-testnet-wallet names testnet, but this deployment is on mainnet" in w for w in change["warnings"])
    # testnet: the default wallet still works, and is named
    r = api.post("/api/deployments", json=dict(deploy, network="testnet"), headers=platform.headers(alice))
    assert r.status_code == 201, r.text
    assert r.json()["wallet"] == "alice-testnet-wallet"
    # promote to mainnet without a wallet: 422 naming the field
    dep = r.json()["deployment_id"]
    merge_into_main(platform.repo, r.json()["branch"])
    assert_problem(api.post(f"/api/deployments/{dep}/promote", json={"network": "mainnet"}, headers=platform.headers(alice)), 422, "'wallet'")
    # deploying what already waits for review: 200, nothing to do, the open review named
    r = api.post("/api/deployments", json=dict(deploy, wallet="alice-testnet-wallet"), headers=platform.headers(alice))
    assert r.status_code == 200, r.text
    assert r.json()["open_review"] == f"deploy/{NAME}/mainnet/1.0.0" and r.json()["nothing_to_do"]


def test_a_wallet_named_for_another_network_is_a_warning(gitops, gitops_remote, records, tmp_path):
    r = gitops("publish", make_bundle(tmp_path), "--repo", gitops_remote, "--network", "mainnet", "--wallet", "lf-testnet-wallet", "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    warning = "the wallet Secret lf-testnet-wallet names testnet, but this deployment is on mainnet: check it is the right wallet"
    assert warning in result["warnings"] and f"==> warning: {warning}" in r.err
    assert result["wallet"] == "lf-testnet-wallet" and "wallet: Secret lf-testnet-wallet" in result["summary"]
    r = gitops("publish", make_bundle(tmp_path / "other", version="2.0.0"), "--repo", gitops_remote, "--network", "mainnet")
    assert (r.code, r.err.splitlines()[-1]) == (2, "error: a mainnet deployment needs its wallet named: give --wallet NAME (the Secret holding the wallet)")


def test_an_owner_asked_for_but_not_recorded_is_a_warning(gitops, gitops_remote, records, tmp_path):
    """A name keeps its owner: ``--owner`` for a name the platform already owns is said, never silently dropped."""
    r = gitops("publish", make_bundle(tmp_path / "a", version="0.1.0"), "--repo", gitops_remote, "--network", "testnet")
    assert r.code == 0, r.err
    records.connection.execute("INSERT INTO platform_users (name) VALUES ('alice')")
    r = gitops("publish", make_bundle(tmp_path / "b", version="0.2.0", weight="v2"), "--repo", gitops_remote, "--network", "testnet",
               "--owner", "alice", "--json")  # fmt: skip
    assert r.code == 0, r.err
    result = json.loads(r.out)
    warning = f"--owner alice not recorded: {NAME} belongs to platform and keeps its owner (transfer it: `allora-gitops owner set {NAME} alice`)"
    assert result["owner"] == "platform"
    assert warning in result["warnings"] and f"==> warning: {warning}" in r.err


def test_every_release_the_cli_makes_says_who_its_owner(gitops, gitops_remote, records, tmp_path):
    """``history`` has a BY column: a CLI publish, rollback and retire record the deployment's owner, never nothing."""
    repo = str(gitops_remote)
    for bundle, branch in ((make_bundle(tmp_path / "a", version="0.1.0"), f"deploy/{NAME}/testnet/0.1.0"),
                           (make_bundle(tmp_path / "b", version="0.2.0", weight="v2"), f"deploy/{NAME}/testnet/0.2.0")):  # fmt: skip
        assert gitops("publish", bundle, "--repo", repo, "--network", "testnet").code == 0
        merge_into_main(gitops_remote, branch)
    r = gitops("rollback", NAME, "--network", "testnet", "--to", "0.1.0", "--repo", repo)
    assert r.code == 0, r.err
    r = gitops("history", NAME, "--network", "testnet", "--repo", repo, "--json")
    assert r.code == 0, r.err
    assert [(h["kind"], h["version"], h["by"]) for h in json.loads(r.out)] == [
        ("publish", "0.1.0", "platform"), ("publish", "0.2.0", "platform"), ("rollback", "0.1.0", "platform")]


def test_list_all_shows_a_retired_deployment_without_a_review_it_does_not_have():
    """``list --all``: a retired deployment is not in the repository and waits on no branch: no "(review: None)"."""
    from allora_gitops.cli.status import _table

    retired = {"name": NAME, "network": "testnet", "status": "retired", "in_repo": False, "branch": None, "pending": []}
    waiting = {"name": NAME, "network": "mainnet", "status": "committed", "in_repo": False, "branch": "deploy/x/mainnet/1.0.0"}
    lines = _table([retired, waiting]).splitlines()
    assert "None" not in lines[1] and lines[1].split()[4] == "retired"
    assert "committed (review: deploy/x/mainnet/1.0.0)" in lines[2]


def test_retire_says_its_merge_retires_the_deployment_not_deploys_it(gitops, gitops_remote, records, tmp_path):
    repo = str(gitops_remote)
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    r = gitops("retire", NAME, "--network", "testnet", "--repo", repo, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["review"][-1] == f"then merge retire/{NAME}/testnet into main (a pull request) to retire it"


def test_push_deploy_to_mainnet_without_a_wallet_is_refused_before_any_upload(cli, tmp_path, monkeypatch):
    """Nothing listens at the platform URL: the refusal comes first, naming --wallet, not an upload that fails."""
    monkeypatch.setenv("ALLORA_PLATFORM_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ALLORA_PLATFORM_TOKEN", "agp_00000000_never-sent")
    r = cli("bundle", "push", make_bundle(tmp_path), "--deploy", "--network", "mainnet")
    assert (r.code, r.err.splitlines()[-1]) == (2, "error: a mainnet deployment needs its wallet named: give --wallet NAME (the Secret holding the wallet)")
    assert "==> push" not in r.err


def test_an_unknown_owner_is_refused_before_anything_is_stored(gitops, gitops_remote, records, tmp_path):
    """``--owner`` naming no platform user (a typo): one line, exit 1, and no archive, no bundle row, no branch."""
    branches = remote_branches(gitops_remote)
    r = gitops("publish", make_bundle(tmp_path), "--repo", gitops_remote, "--network", "testnet", "--owner", "nobody")
    assert r.code == 1
    assert r.err.splitlines()[-1].startswith(f"error: no platform user 'nobody' to own {NAME}: add one with `allora-gitops token create")
    assert not any((tmp_path / "objects").rglob("*.tar.gz"))
    assert records.connection.execute("SELECT count(*) FROM model_bundles").fetchone()[0] == 0
    assert remote_branches(gitops_remote) == branches
    # the same for a name that has an owner already: claim_for_cli refuses an unknown user either way
    assert gitops("publish", make_bundle(tmp_path / "a"), "--repo", gitops_remote, "--network", "testnet").code == 0
    r = gitops("publish", make_bundle(tmp_path / "b", version="2.0.0"), "--repo", gitops_remote, "--network", "testnet", "--owner", "nobody")
    assert r.code == 1 and "error: no platform user 'nobody'" in r.err
    assert [v for (v,) in records.connection.execute("SELECT version FROM model_bundles")] == ["1.0.0"]


def test_nothing_to_do_says_the_wallet_without_claiming_it_changes(gitops, gitops_remote, records, tmp_path):
    bundle = make_bundle(tmp_path)
    assert gitops("publish", bundle, "--repo", gitops_remote, "--network", "testnet", "--branch", "main").code == 0
    r = gitops("publish", bundle, "--repo", gitops_remote, "--network", "testnet")
    assert r.code == 0, r.err
    assert "nothing to do" in r.out.splitlines()[0]
    assert "what changes:" not in r.out and f"  unchanged:\n    wallet: Secret {NAME}-testnet-wallet" in r.out


# --- one definition of live, one admission check (issue 27) ---------------------------------------------------


def test_the_live_limit_counts_what_runs_on_every_path_and_concurrent_requests_never_overshoot(platform_server, tmp_path, records):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.test_api import assert_problem, build

    platform = platform_server
    token = platform.token("carol", wallets=("carol-wallet",))
    gitops = [sys.executable, "-m", "allora_gitops.cli.gitops"]
    subprocess.run(gitops + ["user-limits", "carol", "--max-live-deployments", "2"], env=platform.env, check=True, capture_output=True)
    api = httpx.Client(base_url=platform.url, timeout=300, headers=platform.headers(token))
    for name, version in (("a", "1.0.0"), ("a", "1.1.0"), ("b", "1.0.0"), ("c", "1.0.0"), ("d", "1.0.0")):
        d = make_bundle(tmp_path / f"{name}-{version}", name=name, version=version, weight=version)
        with open(build(d), "rb") as fh:
            assert api.post("/api/bundles", files={"bundle": (f"{name}.tar.gz", fh)}).status_code == 201

    def deploy(name: str, version: str = "1.0.0") -> httpx.Response:
        return api.post("/api/deployments", json={"bundle": {"name": name, "version": version}, "network": "testnet"})

    def sync() -> None:
        subprocess.run(gitops + ["sync", "--repo", str(platform.repo)], env=platform.env, check=True, capture_output=True)

    def live() -> int:
        return records.count_live("carol")

    ids = {}
    for name in ("a", "b"):  # deploy, merge, sync: a merged deployment still counts
        r = deploy(name)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["deployment_id"]
        merge_into_main(platform.repo, r.json()["branch"])
        sync()
    assert live() == 2
    assert_problem(deploy("c"), 403, "carol has 2 live deployment(s), the limit")

    # 10 concurrent deploys, promotes and rollbacks at the limit: only changes of live deployments get in
    requests = [
        lambda: deploy("c"), lambda: deploy("d"), lambda: deploy("c"), lambda: deploy("a", "1.1.0"), lambda: deploy("a", "1.1.0"),
        lambda: api.post(f"/api/deployments/{ids['a']}/promote", json={"network": "mainnet", "wallet": "carol-wallet"}),
        lambda: api.post(f"/api/deployments/{ids['b']}/promote", json={"network": "mainnet", "wallet": "carol-wallet"}),
        lambda: api.post(f"/api/deployments/{ids['b']}/rollback", json={"version": "1.0.0"}),
        lambda: deploy("d"), lambda: api.post(f"/api/deployments/{ids['a']}/promote", json={"network": "mainnet", "wallet": "carol-wallet"}),
    ]  # fmt: skip
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda call: call(), requests))
    codes = [r.status_code for r in answers]
    assert codes.count(403) == 7 and all(c in (200, 201) for i, c in enumerate(codes) if i in (3, 4, 7)), "\n".join(f"{c} {r.text[:300]}" for c, r in zip(codes, answers))
    assert live() == 2

    # retire b (merged, synced): a slot is free; c takes it; reviving b by a rollback is then refused
    r = api.post(f"/api/deployments/{ids['b']}/retire")
    assert r.status_code == 201, r.text
    assert live() == 2  # retiring: it still runs until merged
    merge_into_main(platform.repo, r.json()["branch"])
    sync()
    assert live() == 1
    assert deploy("c").status_code == 201 and live() == 2
    assert_problem(api.post(f"/api/deployments/{ids['b']}/rollback", json={"version": "1.0.0"}), 403, "the limit")
    assert live() == 2 and records.is_live("b", "testnet") is False
