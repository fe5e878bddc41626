"""publish / promote / rollback with model configuration against a real bare repository and PostgreSQL: the repository's
system_packages.allow-list is enforced (nothing uploaded, recorded or pushed before), --secret mappings are required,
kept from the live overlay on the next publish, and replaced by a new --secret."""

from __future__ import annotations

import yaml

from allora_gitops import constants as C
from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import remote_branches, remote_file
from tests.test_publish import NAME, env, gitops, rows  # noqa: F401  (fixtures)

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

PIP = '  pip_requirements: "requirements.txt"\n'


def configured_bundle(tmp_path, version="1.0.0"):
    bundle = make_bundle(tmp_path, version=version)
    text = (bundle / "model.yaml").read_text()
    (bundle / "model.yaml").write_text(text.replace(PIP, PIP + "  secrets: [MARKET_API_KEY]\n  system_packages: [libgomp1]\n"))
    return bundle


def secret_ref(repo, ref: str, network: str = "testnet") -> dict:
    patch = yaml.safe_load(remote_file(repo, ref, f"deployments/{NAME}/overlays/{network}/deployment-patch.yaml"))
    env = {e["name"]: e for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    return env["MARKET_API_KEY"]["valueFrom"]["secretKeyRef"]


def test_publish_enforces_the_allow_list_and_keeps_secret_mappings(gitops, gitops_remote, records, tmp_path):
    bundle = configured_bundle(tmp_path)
    branches = remote_branches(gitops_remote)
    r = gitops("publish", bundle, "--repo", gitops_remote, "--network", "testnet", "--secret", "MARKET_API_KEY=market-data/api-key")
    assert r.code == 2 and r.err.splitlines()[-1] == (
        "error: system-packages: libgomp1 is not in the repository's allow-list (system_packages.allowed: none); "
        "an admin allows them with `allora-gitops repo config system_packages.allowed libgomp1`"
    )
    assert remote_branches(gitops_remote) == branches and rows(records) == []  # nothing recorded or pushed

    r = gitops("repo", "config", "--repo", gitops_remote, "system_packages.allowed", "libgomp1", "--branch", "main")
    assert r.code == 0, r.err
    assert "system_packages:\n  allowed:\n  - libgomp1\n" in remote_file(gitops_remote, "main", C.REPO_MARKER_FILE)
    r = gitops("publish", bundle, "--repo", gitops_remote, "--network", "testnet")
    assert r.code == 2 and "model.yaml declares the secret MARKET_API_KEY but it is not mapped" in r.err
    r = gitops("publish", bundle, "--repo", gitops_remote, "--network", "testnet", "--branch", "main",
               "--secret", "MARKET_API_KEY=market-data/api-key")  # fmt: skip
    assert r.code == 0, r.err
    assert secret_ref(gitops_remote, "main") == {"name": "market-data", "key": "api-key"}

    # the next version keeps the live mapping without --secret; a --secret replaces it
    r = gitops("publish", configured_bundle(tmp_path, "1.0.1"), "--repo", gitops_remote, "--network", "testnet", "--branch", "main")
    assert r.code == 0, r.err
    assert secret_ref(gitops_remote, "main") == {"name": "market-data", "key": "api-key"}
    r = gitops("rollback", NAME, "--network", "testnet", "--to", "1.0.0", "--repo", gitops_remote, "--branch", "main",
               "--secret", "MARKET_API_KEY=market-data-v2/key")  # fmt: skip
    assert r.code == 0, r.err
    assert secret_ref(gitops_remote, "main") == {"name": "market-data-v2", "key": "key"}
    # another network has no live mapping: promote needs its own
    r = gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", gitops_remote, "--wallet", "allora-mainnet-wallet")
    assert r.code == 2 and "MARKET_API_KEY but it is not mapped" in r.err
    r = gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", gitops_remote, "--wallet", "allora-mainnet-wallet",
               "--secret", "MARKET_API_KEY=mainnet-market/key")
    assert r.code == 0, r.err
    assert secret_ref(gitops_remote, "promote/linear-forecaster/mainnet/1.0.0", "mainnet") == {"name": "mainnet-market", "key": "key"}
