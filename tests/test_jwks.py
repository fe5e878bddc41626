"""The pods' issuer keys (api/podidentity.py ``JwksFetcher``) against a real JWKS endpoint on loopback: known keys
never wait on the issuer, an unknown kid fails fast while it hangs, the last good keys outlive an outage for a
bounded time (a controllable clock stands in for the 10 minutes), an in-cluster HTTPS issuer with a private CA
and a bearer token, the cause of every failed fetch logged; and the maximum pod-token lifetime."""

from __future__ import annotations

import json
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from allora_gitops.api.podidentity import JwksFetcher, PodIdentityUnavailable, PodTokenRejected, PodTokenVerifier
from tests.fixtures.jwks import JwksServer, LoopbackCA
from tests.test_podidentity import ISSUER, NAMESPACE, SA_A, jwks, projected_token


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def verifier_for(fetcher: JwksFetcher) -> PodTokenVerifier:
    return PodTokenVerifier(fetcher.url, ISSUER, namespace=NAMESPACE, fetcher=fetcher)


def test_a_hanging_issuer_never_holds_a_known_key_and_unknown_kids_fail_within_a_second(key, other_key, caplog):
    server = JwksServer(json.dumps(jwks(("cluster-key", key))))
    try:
        fetcher = JwksFetcher(server.url, timeout=3, min_interval=0)
        verifier = verifier_for(fetcher)
        assert verifier.verify(projected_token(key, "cluster-key")).service_account == SA_A
        server.mode = "hang"
        unknown = projected_token(other_key, "rotated-key")
        for _ in range(3):  # the first starts the one fetch; the others find it in flight
            started = time.monotonic()
            with pytest.raises(PodIdentityUnavailable, match="cannot be fetched"):
                verifier.verify(unknown)
            assert time.monotonic() - started <= 1.0
        known = [time.monotonic()]
        for _ in range(20):
            assert verifier.verify(projected_token(key, "cluster-key")).service_account == SA_A
        assert time.monotonic() - known[0] < 1.0  # 20 verifications, none waited on the hanging issuer
        assert server.requests == 2  # the first fetch, and one (hanging) fetch for all the unknown kids
        with caplog.at_level(logging.WARNING, logger="allora_gitops.api.podidentity"):
            wait_for(lambda: fetcher.last_error is not None, timeout=6)
        assert f"cannot fetch the pods' issuer keys from {server.url}: " in caplog.text and "timed out" in caplog.text
    finally:
        server.stop()


def test_the_last_good_keys_verify_through_a_ten_minute_outage_and_stop_after_the_bound(key, other_key, caplog):
    clock = Clock()
    server = JwksServer(json.dumps(jwks(("cluster-key", key))))
    fetcher = JwksFetcher(server.url, clock=clock, refresh_seconds=300, max_stale_seconds=3600, min_interval=10)
    verifier = verifier_for(fetcher)
    token = projected_token(key, "cluster-key")
    assert verifier.verify(token).service_account == SA_A
    server.stop()  # the issuer is down from here on
    with caplog.at_level(logging.WARNING, logger="allora_gitops.api.podidentity"):
        for minute in range(1, 11):
            clock.now += 60
            assert verifier.verify(token).service_account == SA_A  # answered at once; a refetch runs behind it
            wait_for(lambda: fetcher._in_flight is None)
    assert fetcher.fetches == 1 and fetcher.last_error is not None and "ConnectionRefusedError" in fetcher.last_error
    assert f"cannot fetch the pods' issuer keys from {server.url}: ConnectionRefusedError" in caplog.text
    with pytest.raises(PodIdentityUnavailable):  # an unknown kid cannot be checked while the issuer is down
        verifier.verify(projected_token(other_key, "rotated-key"))
    clock.now += 3600  # past the bound: nothing verifies until a fetch succeeds
    with pytest.raises(PodIdentityUnavailable):
        verifier.verify(token)


def test_an_in_cluster_https_issuer_with_a_private_ca_and_a_bearer_token_file(tmp_path, key, caplog):
    ca = LoopbackCA.create(tmp_path / "pki")
    token_file = tmp_path / "sa-token"
    token_file.write_text("in-cluster-sa-token\n")
    server = JwksServer(json.dumps(jwks(("cluster-key", key))), tls=ca, bearer="in-cluster-sa-token")
    token = projected_token(key, "cluster-key")
    try:
        good = verifier_for(JwksFetcher(server.url, ca_file=str(ca.ca_file), token_file=str(token_file)))
        assert good.verify(token).service_account == SA_A
        assert server.authorizations[-1] == "Bearer in-cluster-sa-token"
        with caplog.at_level(logging.WARNING, logger="allora_gitops.api.podidentity"):
            untrusted = JwksFetcher(server.url, token_file=str(token_file))  # the system's trust: not the test CA
            with pytest.raises(PodIdentityUnavailable):
                verifier_for(untrusted).verify(token)
            wait_for(lambda: untrusted.last_error is not None)
            anonymous = JwksFetcher(server.url, ca_file=str(ca.ca_file))
            with pytest.raises(PodIdentityUnavailable):
                verifier_for(anonymous).verify(token)
            wait_for(lambda: anonymous.last_error is not None)
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.last_error and untrusted.last_error in caplog.text
        assert anonymous.last_error == "HTTP 401 Unauthorized" and f"{server.url}: HTTP 401 Unauthorized" in caplog.text
        # a token file that is not there (yet): the log names the file and its setting, not a bare FileNotFoundError
        missing = JwksFetcher(server.url, ca_file=str(ca.ca_file), token_file=str(tmp_path / "no-token"))
        with pytest.raises(PodIdentityUnavailable):
            verifier_for(missing).verify(token)
        wait_for(lambda: missing.last_error is not None)
        assert missing.last_error == (
            f"cannot read the bearer token file {tmp_path / 'no-token'} ($ALLORA_API_POD_JWKS_TOKEN_FILE): No such file or directory"
        )
        assert "in-cluster-sa-token" not in caplog.text
    finally:
        server.stop()


def test_the_options_reach_the_server_through_its_settings(tmp_path, key, monkeypatch):
    from allora_gitops.api.app import create_app
    from allora_gitops.api.settings import load_api_settings

    ca = LoopbackCA.create(tmp_path / "pki")
    (tmp_path / "sa-token").write_text("tok")
    server = JwksServer(json.dumps(jwks(("cluster-key", key))), tls=ca, bearer="tok")
    try:
        for name, value in {
            "ALLORA_API_POD_JWKS": server.url, "ALLORA_API_POD_ISSUER": ISSUER, "ALLORA_API_POD_JWKS_CA_FILE": str(ca.ca_file),
            "ALLORA_API_POD_JWKS_TOKEN_FILE": str(tmp_path / "sa-token"), "ALLORA_API_POD_JWKS_MAX_STALE_SECONDS": "120",
            "ALLORA_API_POD_TOKEN_MAX_LIFETIME_SECONDS": "7200",
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        verifier = create_app(load_api_settings(repo=str(tmp_path))).state.pod_verifier
        assert (verifier.keys.max_stale_seconds, verifier.max_lifetime) == (120, 7200)
        assert verifier.verify(projected_token(key, "cluster-key", lifetime=7200)).service_account == SA_A
        with pytest.raises(PodTokenRejected, match=r"^the token is valid for longer than this platform accepts \(2 h at most\)$"):
            verifier.verify(projected_token(key, "cluster-key", lifetime=7201))
    finally:
        server.stop()


def test_a_pod_token_valid_for_longer_than_a_day_is_refused_by_default(tmp_path, key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("cluster-key", key))))
    verifier = PodTokenVerifier(str(path), ISSUER, namespace=NAMESPACE)
    assert verifier.verify(projected_token(key, "cluster-key", lifetime=24 * 3600)).service_account == SA_A
    ten_years = projected_token(key, "cluster-key", lifetime=10 * 365 * 24 * 3600)
    with pytest.raises(PodTokenRejected, match=r"^the token is valid for longer than this platform accepts \(24 h at most\)$"):
        verifier.verify(ten_years)
