"""Releases tell the truth (issue 20): a deployment is a model on a network, its releases in order, the live one
is what the base branch holds. A bare remote, real PostgreSQL, merges done as a reviewer would."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import git, merge_into_main, remote_branches, remote_file

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
