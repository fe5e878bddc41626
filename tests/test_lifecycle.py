"""The lifecycle (pending → committed → merged → image built → running → active): the pure rule over a table of
facts, then `status --json` along a real publish → merge → digest → results → silence, then the API and the
page (real server on loopback, real PostgreSQL) with their identity checks, and the explorer links."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from allora_gitops.db.results import ResultRow, record_results
from allora_gitops.errors import UsageError
from allora_gitops.explorer import explorer_tx_template, explorer_tx_url
from allora_gitops.lifecycle import ACTIVE_POLLS, RUNNING_POLLS, LifecycleFacts, derive_lifecycle
from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import merge_into_main

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DIGEST_IMAGE = "registry.example.com/models/linear-forecaster@sha256:" + "ab" * 32
TAG_IMAGE = "registry.example.com/models/linear-forecaster:1.2.0"
TX = "0F" * 32
SHA = "c0ffee" + "0" * 34


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def facts(status="merged", image=DIGEST_IMAGE, interval=120, result=None, success=None, **over) -> LifecycleFacts:
    commit = None if status == "pending" else SHA
    return LifecycleFacts(
        status=status, image=image, polling_interval=interval, created_at=ago(86400), commit_sha=commit,
        branch="deploy/linear-forecaster/testnet/1.2.0", last_result_at=result, last_success_at=success, **over,
    )  # fmt: skip


RUN, ACT = RUNNING_POLLS * 120, ACTIVE_POLLS * 120
CASES = [
    # (facts, stage, reason)
    (facts("pending", image=None), "pending", "recorded; its change is not committed yet"),
    (facts("pending", image=None, result=ago(130)), "pending",
     "recorded; its change is not committed yet; results arrive from a run outside the cluster, e.g. --dry-run: last result 2 min ago"),
    (facts("committed", image=None), "committed", "waiting for review on deploy/linear-forecaster/testnet/1.2.0: Argo CD deploys it once merged"),
    # results for a change that is not merged come from elsewhere: the stage stays committed, the reason says so
    (facts("committed", image=DIGEST_IMAGE, result=ago(30), success=ago(30)), "committed",
     "waiting for review on deploy/linear-forecaster/testnet/1.2.0: Argo CD deploys it once merged; "
     "results arrive from a run outside the cluster, e.g. --dry-run: last result 30 s ago"),
    (facts("merged", image=TAG_IMAGE), "merged", "merged; no image digest recorded yet by build-image --write-back, and no result reported yet"),
    (facts("synced", image=None), "merged", "merged; no image digest recorded yet by build-image --write-back, and no result reported yet"),
    (facts("merged"), "image built", "image built; no result reported yet, polling interval 2 min"),
    # results from a merged deployment prove an image, digest or not
    (facts("merged", image=TAG_IMAGE, result=ago(10)), "running", "results arriving, last result 10 s ago; no successful submission yet"),
    (facts(result=ago(RUN)), "running", "results arriving, last result 6 min ago; no successful submission yet"),  # boundary: inclusive
    (facts(result=ago(RUN + 1)), "image built", "no result for 6 min, polling interval 2 min"),
    # …and stay proof after they stop: silence falls back to image built, not merged
    (facts(image=TAG_IMAGE, result=ago(540)), "image built", "no result for 9 min, polling interval 2 min"),
    (facts(result=ago(5), success=ago(ACT)), "active", "last successful submission 10 min ago, polling interval 2 min"),  # boundary
    (facts(result=ago(5), success=ago(ACT + 1)), "running", "results arriving, last result 5 s ago; no successful submission for 10 min, polling interval 2 min"),
    (facts(result=ago(5), success=ago(5)), "active", "last successful submission 5 s ago, polling interval 2 min"),
    # a success that is recent but no result since RUNNING_POLLS intervals: not running, so not active
    (facts(result=ago(RUN + 60), success=ago(RUN + 60)), "image built", "no result for 7 min, polling interval 2 min"),
    # the polling interval scales both windows; None means the model.yaml default
    (facts(interval=600, result=ago(1700), success=ago(1700)), "active", "last successful submission 28 min ago, polling interval 10 min"),
    (facts(interval=None, result=ago(RUN + 1)), "image built", "no result for 6 min, polling interval 2 min"),
    # a result stamped in the future (clock skew) counts as now
    (facts(result=NOW + timedelta(seconds=30), success=NOW + timedelta(seconds=30)), "active", "last successful submission 0 s ago, polling interval 2 min"),
    # side states show as themselves
    (facts("failed", status_message="push rejected by a hook"), "failed", "failed: push rejected by a hook"),
    (facts("abandoned", image=None), "abandoned", "abandoned: its review branch was deleted unmerged"),
    (facts("retiring", result=ago(30), success=ago(30)), "retiring", "retiring: a retire change waits for review; last result 30 s ago"),
    (facts("retired", image=None), "retired", "retired: removed from the cluster"),
]


@pytest.mark.parametrize(("given", "stage", "reason"), CASES)
def test_the_stage_and_reason_follow_the_recorded_facts(given, stage, reason):
    found = derive_lifecycle(given, NOW)
    assert (found.stage, found.reason) == (stage, reason)


def test_reached_is_the_unbroken_chain_with_the_times_of_its_evidence():
    found = derive_lifecycle(facts(result=ago(20), success=ago(40)), NOW)
    assert found.to_dict() == {
        "stage": "active", "reason": "last successful submission 40 s ago, polling interval 2 min", "polling_interval": 120,
        "reached": [
            {"stage": "pending", "at": ago(86400).isoformat()}, {"stage": "committed", "at": None}, {"stage": "merged", "at": None},
            {"stage": "image built", "at": None}, {"stage": "running", "at": ago(20).isoformat()}, {"stage": "active", "at": ago(40).isoformat()},
        ],
    }  # fmt: skip
    # a retiring deployment still shows what runs
    retiring = derive_lifecycle(facts("retiring", result=ago(20)), NOW)
    assert [r.stage for r in retiring.reached] == ["pending", "committed"] and retiring.stage == "retiring"
    unmerged = derive_lifecycle(facts("committed", result=ago(20), success=ago(20)), NOW)
    assert [r.stage for r in unmerged.reached] == ["pending", "committed"]


# --- explorer links -----------------------------------------------------------------------------------


def test_explorer_links_are_built_only_from_64_hex_digits(monkeypatch):
    monkeypatch.delenv("ALLORA_EXPLORER_TX_URL_TESTNET", raising=False)
    monkeypatch.delenv("ALLORA_EXPLORER_TX_URL_MAINNET", raising=False)
    assert explorer_tx_url("testnet", TX.lower()) == f"https://explorer.testnet.allora.network/allora-testnet-1/tx/{TX}"
    assert explorer_tx_url("mainnet", TX) == f"https://explorer.allora.network/allora-mainnet-1/tx/{TX}"
    for bad in (None, "", TX[:-1], TX + "0", '"><script>alert(1)</script>' + TX, TX[:-2] + "/?", "0x" + TX[2:]):
        assert explorer_tx_url("testnet", bad) is None
    assert explorer_tx_url("devnet", TX) is None


def test_an_explorer_can_be_configured_and_a_bad_template_is_named(monkeypatch):
    monkeypatch.setenv("ALLORA_EXPLORER_TX_URL_TESTNET", "https://scan.example.org/allora/tx/{tx_hash}?ref=platform")
    assert explorer_tx_url("testnet", TX) == f"https://scan.example.org/allora/tx/{TX}?ref=platform"
    for bad in ("scan.example.org/tx/{tx_hash}", "javascript:alert(1)//{tx_hash}", "https://scan.example.org/tx/", "https://x.org/{tx_hash}/{tx_hash}", "https://x.org/{nonce}/{tx_hash}"):
        monkeypatch.setenv("ALLORA_EXPLORER_TX_URL_TESTNET", bad)
        with pytest.raises(UsageError, match=r"^\$ALLORA_EXPLORER_TX_URL_TESTNET must be an http\(s\) URL with one \{tx_hash\} placeholder"):
            explorer_tx_template("testnet")


# --- status --json along a real publish ---------------------------------------------------------------


@pytest.fixture
def gitops(cli, database_url, gitops_home, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_DATABASE_URL", database_url)
    monkeypatch.setenv("ALLORA_STORE_URL", (tmp_path / "objects").as_uri())
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(gitops_home))
    monkeypatch.delenv("ALLORA_EXPLORER_TX_URL_TESTNET", raising=False)
    return lambda *args: cli("gitops", *args)


def lifecycle_of(gitops, repo) -> dict:
    status = gitops("status", "linear-forecaster", "--repo", repo, "--json")
    assert status.code == 0, status.err
    [row] = json.loads(status.out)
    return row["lifecycle"]


def test_status_follows_publish_merge_digest_results_success_and_silence(gitops, gitops_remote, records, tmp_path):
    r = gitops("publish", make_bundle(tmp_path), "--repo", gitops_remote, "--network", "testnet", "--polling-interval", "60")
    assert r.code == 0, r.err
    branch = "deploy/linear-forecaster/testnet/1.0.0"
    assert lifecycle_of(gitops, gitops_remote)["stage"] == "committed"
    [d] = records.list_deployments(name="linear-forecaster")
    assert d.polling_interval == 60  # the override, recorded (0007): the manifest says 120

    merge_into_main(gitops_remote, branch)
    assert gitops("sync", "--repo", gitops_remote).code == 0
    merged = lifecycle_of(gitops, gitops_remote)
    assert (merged["stage"], merged["polling_interval"]) == ("merged", 60)

    # what `build-image --write-back` records on the live row (image/build.py record_image)
    records.set_deployment_status(d.id, "merged", container_image=DIGEST_IMAGE)
    assert lifecycle_of(gitops, gitops_remote) == {**lifecycle_of(gitops, gitops_remote), "stage": "image built", "reason": "image built; no result reported yet, polling interval 60 s"}

    now = records.connection.execute("SELECT now()").fetchone()[0]
    record_results(records.connection, d.id, [ResultRow(kind="prediction", nonce=1, status="success", value="1.5", observed_at=now)])
    running = lifecycle_of(gitops, gitops_remote)
    assert (running["stage"], running["reason"].split(";")[1]) == ("running", " no successful submission yet")

    record_results(records.connection, d.id, [
        ResultRow(kind="prediction", nonce=2, status="success", value="1.6", observed_at=now),
        ResultRow(kind="submission", nonce=2, status="success", value="1.6", tx_hash=TX, observed_at=now),
        ResultRow(kind="submission", nonce=3, status="error", reason="tx_failed", error_type="BroadcastError",
                  error_message="insufficient fees", observed_at=now - timedelta(hours=2)),
    ])  # fmt: skip
    status = gitops("status", "linear-forecaster", "--repo", gitops_remote, "--json")
    [row] = json.loads(status.out)
    assert row["lifecycle"]["stage"] == "active"
    assert [s["stage"] for s in row["lifecycle"]["reached"]] == ["pending", "committed", "merged", "image built", "running", "active"]
    [submitted] = [x for x in row["results"]["recent"] if x["kind"] == "submission" and x["status"] == "success"]
    assert submitted["explorer_url"] == f"https://explorer.testnet.allora.network/allora-testnet-1/tx/{TX}"
    [error] = row["results"]["errors"]
    assert (error["error_type"], error["count"], error["by_window"]) == ("BroadcastError", 1, {"1h": 0, "24h": 1, "7d": 1})
    text = gitops("status", "linear-forecaster", "--repo", gitops_remote)
    assert text.code == 0 and "  lifecycle: active (last successful submission " in text.out
    assert f" tx https://explorer.testnet.allora.network/allora-testnet-1/tx/{TX} 1.6" in text.out
    assert "    submission error BroadcastError (tx_failed) x1 (1h 0, 24h 1): insufficient fees" in text.out.splitlines()

    # nine minutes of silence: every result moves nine minutes into the past
    records.connection.execute("UPDATE submission_results SET created_at = created_at - interval '9 minutes' WHERE deployment_id = %s", (d.id,))
    silent = lifecycle_of(gitops, gitops_remote)
    assert (silent["stage"], silent["reason"]) == ("image built", "no result for 9 min, polling interval 60 s")


# --- the API and the page -----------------------------------------------------------------------------


@pytest.fixture
def platform(tmp_path, database_url, records):
    """The server; alice owns linear-forecaster (merged, digest, a successful submission now), bob owns mean-reverter."""
    from tests.fixtures.platform import start_owned_platform, stop_platform
    from tests.test_podidentity import create_two_deployments

    a, b = create_two_deployments(records)
    records.set_deployment_status(a.id, "committed", commit_sha=SHA)
    records.set_deployment_status(a.id, "merged", container_image=DIGEST_IMAGE)
    now = records.connection.execute("SELECT now()").fetchone()[0]
    record_results(records.connection, a.id, [
        ResultRow(kind="submission", nonce=7, status="success", value="2.5", tx_hash=TX, latency_ms=80.0, observed_at=now),
        ResultRow(kind="submission", nonce=8, status="error", reason="tx_failed", error_type="BroadcastError",
                  error_message="insufficient fees", latency_ms=90.0, observed_at=now),
    ])  # fmt: skip
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": a.name, "bob": b.name})
    try:
        yield server, tokens["alice"], tokens["bob"], a, b
    finally:
        stop_platform(server)


def test_the_api_gives_the_lifecycle_results_and_explorer_links_to_the_owner_only(platform):
    server, alice, bob, a, b = platform
    url = f"{server.url}/api/deployments/{a.id}"
    with httpx.Client(timeout=10) as http:
        got = http.get(url, headers={"Authorization": f"Bearer {alice}"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["lifecycle"]["stage"], body["lifecycle"]["polling_interval"], body["polling_interval"]) == ("active", 120, None)
        assert body["lifecycle"]["reason"].startswith("last successful submission ")
        recent = {r["nonce"]: r for r in body["results"]["recent"]}
        assert recent[7]["explorer_url"] == f"https://explorer.testnet.allora.network/allora-testnet-1/tx/{TX}"
        assert recent[8]["explorer_url"] is None
        [hour] = [w for w in body["results"]["windows"] if w["window"] == "1h"]
        assert (hour["kind"], hour["success_rate"], hour["latency_ms"]["p50"]) == ("submission", 0.5, 85.0)
        assert [(e["error_type"], e["by_window"]) for e in body["results"]["errors"]] == [("BroadcastError", {"1h": 1, "24h": 1, "7d": 1})]
        assert len(http.get(url, params={"recent": 1}, headers={"Authorization": f"Bearer {alice}"}).json()["results"]["recent"]) == 1

        listed = http.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {alice}"})
        assert listed.status_code == 200
        assert [(d["id"], d["lifecycle"]["stage"], d["live_version"]) for d in listed.json()] == [(str(a.deployment_id), "active", a.version)]
        theirs = http.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {bob}"}).json()
        assert [(d["id"], d["lifecycle"]["stage"], d["live_version"]) for d in theirs] == [(str(b.deployment_id), "pending", None)]

        assert http.get(url).status_code == 401  # no token
        assert http.get(url, headers={"Authorization": f"Bearer {alice[:-4]}AAAA"}).status_code == 401  # a wrong one
        other = http.get(url, headers={"Authorization": f"Bearer {bob}"})  # another user's deployment: not even its existence
        assert other.status_code == 404 and "lifecycle" not in other.text


def test_the_page_shows_the_stage_and_links_the_tx_hash_to_the_explorer(platform):
    from tests.test_web import sign_in

    server, alice, bob, a, b = platform
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert sign_in(client, alice).status_code == 303
        listing = client.get("/")
        assert '<td class="lifecycle"><strong>active</strong><br><small>last successful submission ' in listing.text
        page = client.get(f"/deployments/{a.id}")
        assert page.status_code == 200
        assert '<dd id="lifecycle"><strong>active</strong>' in page.text
        assert f'<a href="https://explorer.testnet.allora.network/allora-testnet-1/tx/{TX}" rel="noopener noreferrer">{TX}</a>' in page.text
        assert '<td class="num">1</td><td class="num">1</td><td class="num">1</td>' in page.text  # BroadcastError in 1h / 24h / 7d


def test_serve_refuses_a_malformed_explorer_setting_before_it_starts(cli, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_EXPLORER_TX_URL_MAINNET", "https://scan.example.org/tx/")
    served = cli("gitops", "serve", "--repo", str(tmp_path / "repo"), "--database-url", database_url, "--port", "1")
    assert served.code == 2  # a setting, like the other $ALLORA_API_* ones
    assert served.err.startswith("error: $ALLORA_EXPLORER_TX_URL_MAINNET must be an http(s) URL with one {tx_hash} placeholder")
    assert len(served.err.splitlines()) == 1


def report(health="Healthy", event="deployed", at=None, message=None):
    from allora_gitops.argocd_reports import ArgoCDReport

    at = at or ago(600)
    return ArgoCDReport(application="linear-forecaster-testnet", revision="d" * 40, event=event, sync_status="Synced",
                        health_status=health, message=message, reported_at=at, received_at=at)  # fmt: skip


def test_argo_cd_reports_add_synced_healthy_and_degraded_and_their_absence_skips_them():
    stages = lambda lc: [r.stage for r in lc.reached]  # noqa: E731
    # no report at all: the chain goes on to running as before
    plain = derive_lifecycle(facts(result=ago(30)), NOW)
    assert plain.stage == "running" and stages(plain) == ["pending", "committed", "merged", "image built", "running"]
    # a healthy report: both stages, and a tag image counts as built (a healthy pod runs it)
    healthy = derive_lifecycle(facts(image=TAG_IMAGE, argocd=report()), NOW)
    assert (healthy.stage, stages(healthy)) == ("healthy", ["pending", "committed", "merged", "synced", "image built", "healthy"])
    assert healthy.reason == "Argo CD reports it synced and healthy at revision dddddddddddd; no result reported yet, polling interval 2 min"
    # progressing: synced only
    progressing = derive_lifecycle(facts(image=TAG_IMAGE, argocd=report(health="Progressing")), NOW)
    assert progressing.stage == "synced"
    # degraded, with Argo CD's message, until a result newer than the report shows the model runs
    degraded = derive_lifecycle(facts(result=ago(900), argocd=report(health="Degraded", event="health-degraded", message="OOMKilled")), NOW)
    assert (degraded.stage, degraded.reason) == ("degraded", "Argo CD: health Degraded at revision dddddddddddd: OOMKilled")
    recovered = derive_lifecycle(facts(result=ago(30), argocd=report(health="Degraded", event="health-degraded")), NOW)
    assert recovered.stage == "running"
    # a side state stays itself
    assert derive_lifecycle(facts(status="retiring", argocd=report(health="Degraded", event="health-degraded")), NOW).stage == "retiring"
