"""``allora-gitops local-issuer``: the local stand-in for a cluster's ServiceAccount issuer. Its tokens verify with
the server's own verifier against the JWKS it writes, and against nothing else."""

from __future__ import annotations

import json
import stat

import jwt
import pytest

from allora_gitops.api.localissuer import LOCAL_ISSUER, LocalIssuer
from allora_gitops.api.podidentity import PodIdentity, PodTokenRejected, PodTokenVerifier


def test_init_prints_the_settings_and_token_writes_a_token_the_server_verifies(cli, tmp_path):
    issuer_dir = tmp_path / "issuer"
    init = cli("gitops", "local-issuer", "init", issuer_dir)
    assert init.code == 0, init.err
    jwks_path = (issuer_dir / "jwks.json").resolve()
    assert init.out.splitlines() == [f"export ALLORA_API_POD_JWKS={jwks_path}", f"export ALLORA_API_POD_ISSUER={LOCAL_ISSUER}"]
    assert f"created the local issuer in {issuer_dir} (for local development only" in init.err
    assert stat.S_IMODE((issuer_dir / "signing-key.pem").stat().st_mode) == 0o600
    assert [k["kty"] for k in json.loads(jwks_path.read_text())["keys"]] == ["EC"]  # the public half only
    assert "d" not in json.loads(jwks_path.read_text())["keys"][0]

    token_file = tmp_path / "run" / "token"
    token_file.parent.mkdir()
    made = cli("gitops", "local-issuer", "token", issuer_dir, "demo-model", "--network", "testnet", "-o", token_file, "--duration", "600")
    assert made.code == 0, made.err
    assert made.err.strip() == f"token for ServiceAccount allora-models/demo-model-testnet in {token_file}, valid 600 s"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in made.out + made.err
    verifier = PodTokenVerifier(str(jwks_path), LOCAL_ISSUER, namespace="allora-models")
    assert verifier.verify(token) == PodIdentity("allora-models", "demo-model-testnet", "demo-model-testnet-5d9c7b8f4-x2x4k")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["exp"] - claims["iat"]) == (["allora-platform"], 600)

    # init again keeps the key: tokens minted before stay valid
    again = cli("gitops", "local-issuer", "init", issuer_dir)
    assert again.code == 0 and f"kept the local issuer in {issuer_dir}" in again.err
    assert verifier.verify(token).service_account == "demo-model-testnet"
    printed = cli("gitops", "local-issuer", "token", issuer_dir, "demo-model", "--network", "mainnet", "--namespace", "team-b")
    assert verifier.verify(printed.out.strip()) == PodIdentity("team-b", "demo-model-mainnet", "demo-model-mainnet-5d9c7b8f4-x2x4k")


def test_another_local_issuers_token_is_refused(tmp_path):
    ours, _ = LocalIssuer.create(tmp_path / "ours")
    theirs, _ = LocalIssuer.create(tmp_path / "theirs")
    verifier = PodTokenVerifier(str(ours.jwks_path), LOCAL_ISSUER)
    with pytest.raises(PodTokenRejected, match="^the token is not signed by a key of the cluster's ServiceAccount issuer$"):
        verifier.verify(theirs.token("demo-model-testnet"))
    cluster = PodTokenVerifier(str(ours.jwks_path), "https://kubernetes.default.svc.cluster.local")
    with pytest.raises(PodTokenRejected, match="^the token's issuer is not the cluster's$"):  # a server set up for a cluster
        cluster.verify(ours.token("demo-model-testnet"))


def test_no_issuer_or_an_unwritable_output_is_one_line_naming_the_file(cli, tmp_path):
    missing = cli("gitops", "local-issuer", "token", tmp_path / "nowhere", "demo-model", "--network", "testnet")
    key = tmp_path / "nowhere" / "signing-key.pem"
    assert missing.code == 1
    assert missing.err.strip() == f"error: {key}: no local issuer here; run `allora-gitops local-issuer init {tmp_path / 'nowhere'}` first"
    LocalIssuer.create(tmp_path / "issuer")
    out = tmp_path / "no-such-dir" / "token"
    unwritable = cli("gitops", "local-issuer", "token", tmp_path / "issuer", "demo-model", "--network", "testnet", "-o", out)
    assert (unwritable.code, unwritable.err.strip()) == (1, f"error: {out}: cannot write the token (No such file or directory)")
    (tmp_path / "issuer" / "signing-key.pem").write_text("not a key\n")
    broken = cli("gitops", "local-issuer", "token", tmp_path / "issuer", "demo-model", "--network", "testnet")
    assert (broken.code, broken.err.strip()) == (1, f"error: {tmp_path / 'issuer' / 'signing-key.pem'}: not a readable signing key (ValueError)")
    (tmp_path / "a-file").write_text("")
    blocked = cli("gitops", "local-issuer", "init", tmp_path / "a-file" / "issuer")
    assert (blocked.code, blocked.err.strip()) == (1, f"error: {tmp_path / 'a-file' / 'issuer'}: cannot write the local issuer (Not a directory)")


def test_a_token_for_a_name_or_network_no_deployment_can_have_is_a_usage_error(cli, tmp_path):
    LocalIssuer.create(tmp_path / "issuer")
    network = cli("gitops", "local-issuer", "token", tmp_path / "issuer", "demo-model", "--network", "foonet")
    assert (network.code, network.err.strip()) == (2, "error: --network must be one of testnet, mainnet, not 'foonet'")
    name = cli("gitops", "local-issuer", "token", tmp_path / "issuer", "Bad Name", "--network", "testnet")
    assert name.code == 2 and name.err.strip().startswith("error: name 'Bad Name' must be a lowercase DNS-1123 label")
    assert network.out == name.out == ""
