"""The artifacts.remote fetcher against real servers: an https server on loopback with its own CA (SSL_CERT_FILE)
and SeaweedFS for s3://. Digest checks, the cache, the size limit and the address rules."""

from __future__ import annotations

import hashlib
import json

import pytest

from allora_gitops.bundle.manifest import RemoteArtifact
from tests.fixtures.artifacts import remote_weights_bundle
from tests.test_image_build_model_config import ALLOWING, build_dir_for, gitops, trust_bundle
from allora_gitops.storage.remote import FetchPolicy, RemoteArtifactError, cached_path, check_address, fetch_artifact

LOOPBACK = FetchPolicy(allow_private=True)  # what a repository allows with remote_artifacts.allow_private_addresses


@pytest.fixture
def trusted(artifact_server, monkeypatch, gitops_home):
    """The test server's CA trusted through SSL_CERT_FILE; a private state directory, so the artifact cache starts empty."""
    monkeypatch.setenv("SSL_CERT_FILE", str(artifact_server.ca_file))
    return artifact_server


def artifact(url: str, sha256: str, path: str = "artifacts/weights.bin") -> RemoteArtifact:
    return RemoteArtifact(path=path, url=url, sha256=sha256)


def test_a_download_is_checked_cached_by_digest_and_not_fetched_again(trusted, tmp_path):
    data = b"weights " * 1000
    digest = trusted.put("w1.bin", data)
    got = fetch_artifact(artifact(trusted.url("w1.bin"), digest), LOOPBACK, tmp_path / "cache")
    assert got == cached_path(tmp_path / "cache", digest) and got.read_bytes() == data
    assert fetch_artifact(artifact(trusted.url("w1.bin"), digest, "artifacts/other.bin"), LOOPBACK, tmp_path / "cache") == got
    assert trusted.hits["w1.bin"] == 1  # the second one came from the cache
    got.write_bytes(b"damaged")  # a damaged cache entry is fetched again, never used
    assert fetch_artifact(artifact(trusted.url("w1.bin"), digest), LOOPBACK, tmp_path / "cache").read_bytes() == data
    assert trusted.hits["w1.bin"] == 2


def test_a_wrong_digest_names_the_path_and_both_digests_and_caches_nothing(trusted, tmp_path):
    actual = trusted.put("w2.bin", b"not the weights")
    wrong = hashlib.sha256(b"the weights").hexdigest()
    with pytest.raises(RemoteArtifactError) as err:
        fetch_artifact(artifact(trusted.url("w2.bin"), wrong), LOOPBACK, tmp_path / "cache")
    assert str(err.value) == f"artifacts.remote artifacts/weights.bin: the download has sha256 {actual}, but model.yaml says {wrong}; refused"
    assert list((tmp_path / "cache" / "sha256").iterdir()) == []


def test_loopback_is_refused_unless_the_settings_allow_it(trusted, tmp_path):
    digest = trusted.put("w3.bin", b"x")
    with pytest.raises(RemoteArtifactError) as err:
        fetch_artifact(artifact(trusted.url("w3.bin"), digest), FetchPolicy(), tmp_path / "cache")
    assert str(err.value) == (
        f"artifacts.remote artifacts/weights.bin ({trusted.url('w3.bin')}): localhost resolves to the loopback address 127.0.0.1; "
        "fetching from it is refused (a GitOps repository allows it with `allora-gitops repo config remote_artifacts.allow_private_addresses true`)"
    )
    assert trusted.hits.get("w3.bin") is None  # refused before connecting


@pytest.mark.parametrize("host, kind", [("10.1.2.3", "private"), ("192.168.0.10", "private"), ("169.254.169.254", "link-local"),
                                        ("::1", "loopback"), ("fe80::1", "link-local"), ("100.64.0.1", "non-public")])
def test_private_and_link_local_addresses_are_refused(host, kind):
    with pytest.raises(RemoteArtifactError) as err:
        check_address(host, 443, FetchPolicy(), "x")
    assert f"the {kind} address" in str(err.value)
    assert check_address(host, 443, LOOPBACK, "x")


def test_redirects_follow_and_are_checked_each_time(trusted, tmp_path, monkeypatch):
    from allora_gitops.storage import remote

    digest = trusted.put("w5.bin", b"z" * 10)
    trusted.redirects["moved.bin"] = trusted.url("w5.bin")
    assert fetch_artifact(artifact(trusted.url("moved.bin"), digest), LOOPBACK, tmp_path / "cache").read_bytes() == b"z" * 10
    seen = []
    real = remote.check_address
    # loopback allowed for the test server, nothing else: a redirect to the cloud metadata address is checked on its own
    monkeypatch.setattr(
        remote, "check_address", lambda host, port, policy, what: seen.append(host) or real(host, port, FetchPolicy(allow_private=host == "localhost"), what)
    )
    trusted.redirects["away.bin"] = "https://169.254.169.254/latest/meta-data"
    with pytest.raises(RemoteArtifactError, match="resolves to the link-local address 169.254.169.254; fetching from it is refused"):
        fetch_artifact(artifact(trusted.url("away.bin"), digest), LOOPBACK, tmp_path / "c2")
    assert seen == ["localhost", "169.254.169.254"]


def test_the_size_limit_stops_a_download(trusted, tmp_path):
    digest = trusted.put("big.bin", b"0" * 4096)
    with pytest.raises(RemoteArtifactError) as err:
        fetch_artifact(artifact(trusted.url("big.bin"), digest), FetchPolicy(max_bytes=1024, allow_private=True), tmp_path / "cache")
    assert str(err.value).endswith("4096 bytes is over the limit of 1024 (remote_artifacts.max_bytes)")
    assert not cached_path(tmp_path / "cache", digest).exists()


def test_trust_follows_ssl_cert_file(artifact_server, tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    digest = artifact_server.put("w6.bin", b"w")
    with pytest.raises(RemoteArtifactError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch_artifact(artifact(artifact_server.url("w6.bin"), digest), LOOPBACK, tmp_path / "cache")


def test_s3_artifacts_come_through_the_aws_environment(s3_server, s3_bucket, s3_env, tmp_path):
    import boto3

    data = b"s3 weights"
    boto3.session.Session().client("s3").put_object(Bucket=s3_bucket, Key="models/w.bin", Body=data)
    digest = hashlib.sha256(data).hexdigest()
    got = fetch_artifact(artifact(f"s3://{s3_bucket}/models/w.bin", digest), LOOPBACK, tmp_path / "cache")
    assert got.read_bytes() == data
    with pytest.raises(RemoteArtifactError, match="loopback address"):  # the endpoint is checked like any host
        fetch_artifact(artifact(f"s3://{s3_bucket}/models/w.bin", "0" * 64), FetchPolicy(), tmp_path / "cache")
    with pytest.raises(RemoteArtifactError, match="S3 answered 404|S3 answered NoSuchKey"):
        fetch_artifact(artifact(f"s3://{s3_bucket}/models/missing.bin", digest.replace("a", "b")), LOOPBACK, tmp_path / "cache")


# --- allora-bundle run: what the image holds, the remote weights included -----------------------------------------


def test_run_fetches_the_remote_weights_beside_what_ships(cli, trusted, tmp_path):
    from tests.fixtures.artifacts import remote_weights_bundle

    bundle = remote_weights_bundle(tmp_path / "remote-weights", trusted)
    before = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*"))
    refused = cli("bundle", "run", bundle, "--here", "-n", "1000")
    assert refused.code == 1 and "resolves to the loopback address 127.0.0.1; fetching from it is refused" in refused.err
    result = cli("bundle", "run", bundle, "--here", "-n", "1000", "--allow-private-artifacts", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["ok"] and report["predictions"][0]["nonce"] == 1000
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*")) == before  # the source was not written


def test_run_refusing_loopback_names_its_own_flag_not_the_repository_setting(cli, trusted, tmp_path):
    """`run` has no GitOps repository: its refusal names --allow-private-artifacts, the switch that allows it there."""
    bundle = remote_weights_bundle(tmp_path / "remote-weights", trusted)
    refused = cli("bundle", "run", bundle, "--here", "-n", "1000")
    (line,) = [x for x in refused.err.splitlines() if x.startswith("error:")]
    assert refused.code == 1 and line.endswith("fetching from it is refused (`allora-bundle run --allow-private-artifacts` allows it)")
    assert "repo config" not in refused.err


def test_run_with_a_wrong_sha256_names_the_path_and_both_digests(cli, trusted, tmp_path):
    from tests.fixtures.artifacts import remote_weights_bundle

    wrong = "0" * 64
    bundle = remote_weights_bundle(tmp_path / "wrong", trusted, sha256=wrong)
    result = cli("bundle", "run", bundle, "--here", "--allow-private-artifacts")
    assert result.code == 1
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: artifacts.remote artifacts/weights.npy: the download has sha256 ") and line.endswith(f", but model.yaml says {wrong}; refused")


def test_validate_refuses_a_remote_artifact_that_would_also_ship(cli, trusted, tmp_path):
    from tests.fixtures.artifacts import remote_weights_bundle

    bundle = remote_weights_bundle(tmp_path / "both", trusted)
    (bundle / "artifacts" / "weights.npy").write_bytes(b"a local copy")
    result = cli("bundle", "validate", bundle)
    assert result.code == 1
    line = next(x for x in result.out.splitlines() + result.err.splitlines() if "artifacts.remote[0]" in x)
    assert line.endswith(
        "error: artifacts.remote[0]: artifacts/weights.npy is also a file of the bundle and would ship in the archive; "
        "add /artifacts/weights.npy to .allorabundleignore (the image build and `run` fetch it)"
    ) and line.startswith(f"{bundle}/model.yaml:")
    (bundle / ".allorabundleignore").write_text("/artifacts/weights.npy\n")
    assert cli("bundle", "validate", bundle).code == 0


# --- build-image: the refusals stop before the builder starts (the one real build is in test_image_build_model_config.py)


@pytest.fixture(scope="module")
def trust(artifact_server, tmp_path_factory):
    return trust_bundle(artifact_server, tmp_path_factory.mktemp("trust"))


def test_build_image_with_a_wrong_sha256_fails_naming_the_path_and_builds_nothing(artifact_server, trust, tmp_path, gitops_home):
    wrong = "0" * 64
    bundle = remote_weights_bundle(tmp_path / "wrong", artifact_server, sha256=wrong)
    (bundle / ".allorabundleignore").write_text("/artifacts/weights.npy\n")
    proc = gitops("build-image", build_dir_for(bundle, tmp_path, **ALLOWING), "--base-image", "localhost/allora-test/python:3.11-slim", "--no-record", ca=trust)
    assert proc.returncode == 1
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: artifacts.remote artifacts/weights.npy: the download has sha256 ")
    assert errors[0].endswith(f", but model.yaml says {wrong}; refused")
    assert "STEP" not in proc.stderr  # refused before the builder started


def test_build_image_refuses_loopback_when_the_repository_does_not_allow_it(artifact_server, trust, tmp_path, gitops_home):
    bundle = remote_weights_bundle(tmp_path / "strict", artifact_server)
    (bundle / ".allorabundleignore").write_text("/artifacts/weights.npy\n")
    proc = gitops("build-image", build_dir_for(bundle, tmp_path), "--base-image", "localhost/allora-test/python:3.11-slim", "--no-record", ca=trust)
    assert proc.returncode == 1
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "localhost resolves to the loopback address 127.0.0.1; fetching from it is refused" in errors[0]
