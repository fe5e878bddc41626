"""model.yaml environment.secrets through the platform API: a caller maps only Secrets assigned to them (the wallet
rule, ``allora-gitops secret assign``); a missing mapping is a 422 naming it; nothing is committed on a refusal, and a
pasted value is never echoed. A real uvicorn, PostgreSQL, SeaweedFS and a bare git remote (tests/fixtures/platform.py)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import yaml

from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import remote_branches, remote_file
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)
from tests.test_api import NAME, WALLET, assert_problem, build

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass


def gitops(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", *args], env=platform.env, capture_output=True, text=True, timeout=60)


def test_a_caller_maps_only_secrets_assigned_to_them(platform_server, tmp_path):
    platform = platform_server
    alice = platform.token("alice", wallets=(WALLET,))
    bob = platform.token("bob", wallets=("bob-wallet",))
    bundle = make_bundle(tmp_path)
    text = (bundle / "model.yaml").read_text()
    (bundle / "model.yaml").write_text(text.replace('  pip_requirements: "requirements.txt"\n',
                                                    '  pip_requirements: "requirements.txt"\n  secrets: [MARKET_API_KEY]\n'))
    api = httpx.Client(base_url=platform.url, timeout=300)
    with open(build(bundle), "rb") as fh:
        assert api.post("/api/bundles", files={"bundle": ("b.tar.gz", fh)}, headers=platform.headers(alice)).status_code == 201
    deploy = {"bundle": {"name": NAME, "version": "1.0.0"}, "network": "testnet"}
    branches = remote_branches(platform.repo)

    r = api.post("/api/deployments", json=deploy, headers=platform.headers(alice))
    assert_problem(r, 422, "model.yaml declares the secret MARKET_API_KEY but it is not mapped")
    r = api.post("/api/deployments", json=dict(deploy, secrets={"MARKET_API_KEY": "market-data/api-key"}), headers=platform.headers(alice))
    assert_problem(r, 403, "secrets.MARKET_API_KEY: the Secret is not assigned to alice", "allora-gitops secret assign")
    pasted = "sk_live_51HfQ2bCkT9xYz0pasted"  # a value pasted where the reference belongs: refused, never echoed
    r = api.post("/api/deployments", json=dict(deploy, secrets={"MARKET_API_KEY": pasted}), headers=platform.headers(alice))
    assert_problem(r, 403, "secrets.MARKET_API_KEY: the Secret is not assigned to alice")
    assert pasted not in r.text
    assert_problem(api.post("/api/deployments", json=dict(deploy, secrets={"9X": "a/b"}), headers=platform.headers(alice)), 422, "secrets")
    assert remote_branches(platform.repo) == branches  # nothing committed

    assigned = gitops(platform, "secret", "assign", "market-data", "--user", "alice")
    assert (assigned.returncode, assigned.stdout) == (0, "alice may map Secret market-data\n"), assigned.stderr
    assert gitops(platform, "secret", "list", "--user", "alice").stdout == "market-data\n"
    assert gitops(platform, "secret", "list", "--user", "bob").stdout == "no Secret assigned to bob\n"
    assert gitops(platform, "wallet", "list", "--user", "alice").stdout == f"{WALLET}\n"  # wallets are their own list

    r = api.post("/api/deployments", json=dict(deploy, secrets={"MARKET_API_KEY": "market-data/api-key"}), headers=platform.headers(alice))
    assert r.status_code == 201, r.text
    patch = yaml.safe_load(remote_file(platform.repo, r.json()["branch"], f"deployments/{NAME}/overlays/testnet/deployment-patch.yaml"))
    env = {e["name"]: e for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MARKET_API_KEY"] == {"name": "MARKET_API_KEY", "valueFrom": {"secretKeyRef": {"name": "market-data", "key": "api-key"}}}

    # bob may not map alice's Secret, even for his own deployment (404 first: the bundle is alice's)
    promote = {"network": "mainnet", "wallet": "bob-wallet", "secrets": {"MARKET_API_KEY": "market-data/api-key"}}
    dep = r.json()["deployment_id"]
    assert_problem(api.post(f"/api/deployments/{dep}/promote", json=promote, headers=platform.headers(bob)), 404)
    # alice promotes with a Secret not hers: 403; unassigned again, the same mapping is refused
    r = api.post(f"/api/deployments/{dep}/promote", json={"network": "mainnet", "wallet": WALLET, "secrets": {"MARKET_API_KEY": "bob-keys/api-key"}},
                 headers=platform.headers(alice))  # fmt: skip
    assert_problem(r, 403, "secrets.MARKET_API_KEY: the Secret is not assigned to alice")
    assert gitops(platform, "secret", "unassign", "market-data", "--user", "alice").stdout == "alice may no longer map Secret market-data\n"
    r = api.post("/api/deployments", json=dict(deploy, secrets={"MARKET_API_KEY": "market-data/api-key"}), headers=platform.headers(alice))
    assert_problem(r, 403, "not assigned to alice")
    assert pasted not in platform.log.read_text(errors="replace")
