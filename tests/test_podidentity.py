"""Pod identity: projected ServiceAccount tokens signed by keys the test generates, verified against their JWKS
(a file, or a URL on loopback), and mapped to exactly one deployment of a real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from allora_gitops.api.localissuer import projected_token_claims, public_jwks, sign_token
from allora_gitops.api.podidentity import (
    PodIdentity,
    PodIdentityUnavailable,
    PodNotAllowed,
    PodTokenRejected,
    PodTokenVerifier,
    authorize_pod,
    deployment_for_pod,
)
from tests.fixtures.runtime import free_port
from tests.test_db_records import bundle_args, deployment_args

ISSUER = "https://kubernetes.default.svc.cluster.local"
NAMESPACE = "allora-models"
SA_A = "linear-forecaster-testnet"  # <bundle name>-<network>, as the overlay's nameSuffix makes it


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def jwks(*pairs) -> dict:
    return public_jwks(pairs)


def projected_token(key, kid: str, *, sa: str = SA_A, namespace: str = NAMESPACE, aud=("allora-platform",),
                    iss: str = ISSUER, issued: float | None = None, lifetime: int = 3600) -> str:  # fmt: skip
    """The claims and header of a token the kubelet requests for a serviceAccountToken projection."""
    claims = projected_token_claims(sa, namespace, audience=aud, issuer=iss, issued_at=issued, lifetime=lifetime)
    return sign_token(claims, key, kid)


@pytest.fixture
def verifier(tmp_path, rsa_key, ec_key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("rsa-1", rsa_key), ("ec-1", ec_key))))
    return PodTokenVerifier(str(path), ISSUER, namespace=NAMESPACE)


@pytest.fixture
def two_deployments(records):
    return create_two_deployments(records)


def create_two_deployments(records):
    """linear-forecaster and mean-reverter, live on testnet: ServiceAccounts ``<name>-testnet``."""
    a = records.create_deployment(**deployment_args(records.register_bundle(**bundle_args()).id))
    base = bundle_args()
    other = bundle_args(
        name="mean-reverter", archive_url=base["archive_url"].replace("linear-forecaster", "mean-reverter"),
        manifest={**base["manifest"], "name": "mean-reverter"},
    )  # fmt: skip
    b = records.create_deployment(**deployment_args(records.register_bundle(**other).id, wallet_secret_name="mr-wallet"))
    return a, b


def rejected(verifier, token: str) -> PodTokenRejected:
    with pytest.raises(PodTokenRejected) as caught:
        verifier.verify(token)
    assert caught.value.status_code == 401
    assert token not in str(caught.value) and token.split(".")[-1] not in str(caught.value)
    return caught.value


def test_the_pods_own_token_names_its_deployment(verifier, records, two_deployments, rsa_key, ec_key):
    a, _ = two_deployments
    identity = verifier.verify(projected_token(rsa_key, "rsa-1"))
    assert identity == PodIdentity(namespace=NAMESPACE, service_account=SA_A, pod=f"{SA_A}-5d9c7b8f4-x2x4k")
    assert deployment_for_pod(records, identity, NAMESPACE).id == a.id
    assert authorize_pod(verifier, records, projected_token(ec_key, "ec-1"), a.id).id == a.id  # ES256 keys too


def test_expired_wrong_audience_wrong_issuer_and_other_keys_are_401(verifier, rsa_key):
    long_ago = time.time() - 7200
    assert str(rejected(verifier, projected_token(rsa_key, "rsa-1", issued=long_ago))) == "the token has expired"
    assert str(rejected(verifier, projected_token(rsa_key, "rsa-1", issued=time.time() + 600))) == "the token is not valid yet"
    wrong_aud = projected_token(rsa_key, "rsa-1", aud=("https://kubernetes.default.svc.cluster.local",))
    assert str(rejected(verifier, wrong_aud)) == "the token's audience is not allora-platform"
    assert str(rejected(verifier, projected_token(rsa_key, "rsa-1", iss="https://evil.example"))) == "the token's issuer is not the cluster's"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert str(rejected(verifier, projected_token(stranger, "rsa-1"))) == "the token's signature does not verify"  # same kid
    unknown = projected_token(stranger, "rsa-2")
    assert str(rejected(verifier, unknown)) == "the token is not signed by a key of the cluster's ServiceAccount issuer"
    assert str(rejected(verifier, "not-a-jwt")).startswith("the token is malformed")
    # a user's API token in ALLORA_RESULTS_TOKEN_FILE (an easy mix-up locally) says so, without quoting it
    api_token = "agp_0123abcd_" + "x" * 43
    assert str(rejected(verifier, api_token)) == (
        "the token is a platform API token (agp_…), not a pod's ServiceAccount token: results are reported with the "
        "pod's projected token (locally: allora-gitops local-issuer token)"
    )
    # HS256 with the public key as the secret (algorithm confusion) is refused
    header_swapped = jwt.encode({"sub": f"system:serviceaccount:{NAMESPACE}:{SA_A}"}, "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"})
    rejected(verifier, header_swapped)


def test_a_token_for_a_cannot_write_b_and_other_service_accounts_are_403(verifier, records, two_deployments, rsa_key):
    a, b = two_deployments
    token_a = projected_token(rsa_key, "rsa-1")
    with pytest.raises(PodNotAllowed) as caught:
        authorize_pod(verifier, records, token_a, b.id)
    assert caught.value.status_code == 403
    assert str(caught.value) == "this token may write only its own deployment's results"
    with pytest.raises(PodNotAllowed, match=r"^ServiceAccount allora-models/default belongs to no live deployment$"):
        authorize_pod(verifier, records, projected_token(rsa_key, "rsa-1", sa="default"))
    with pytest.raises(PodNotAllowed, match=r"^ServiceAccount kube-system/linear-forecaster-testnet is not in the deployments' namespace$"):
        authorize_pod(verifier, records, projected_token(rsa_key, "rsa-1", namespace="kube-system"))
    records.set_deployment_status(a.id, "retired")  # a retired deployment's pod writes nothing any more
    with pytest.raises(PodNotAllowed, match="belongs to no live deployment"):
        authorize_pod(verifier, records, token_a)


def test_a_subject_that_disagrees_with_the_kubernetes_claim_is_401(verifier, rsa_key):
    now = int(time.time())
    claims = {
        "aud": ["allora-platform"], "exp": now + 600, "iat": now, "nbf": now, "iss": ISSUER,
        "sub": f"system:serviceaccount:{NAMESPACE}:{SA_A}",
        "kubernetes.io": {"namespace": NAMESPACE, "serviceaccount": {"name": "mean-reverter-testnet", "uid": "u"}},
    }  # fmt: skip
    token = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert str(rejected(verifier, token)) == "the token's kubernetes.io claim does not match its subject"


def test_keys_from_a_jwks_url_and_503_when_it_cannot_be_fetched(rsa_key):
    body = json.dumps(jwks(("rsa-1", rsa_key))).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verifier = PodTokenVerifier(f"http://127.0.0.1:{server.server_address[1]}/openid/v1/jwks", ISSUER)
        assert verifier.verify(projected_token(rsa_key, "rsa-1")).service_account == SA_A
    finally:
        server.shutdown()
        server.server_close()
    down = PodTokenVerifier(f"http://127.0.0.1:{free_port()}/openid/v1/jwks", ISSUER)
    with pytest.raises(PodIdentityUnavailable) as caught:
        down.verify(projected_token(rsa_key, "rsa-1"))
    assert caught.value.status_code == 503
