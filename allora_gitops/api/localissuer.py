"""A stand-in for a cluster's ServiceAccount issuer, for local development only (``allora-gitops local-issuer``).

In a cluster, the kubelet writes each model pod a projected ServiceAccount token and the platform API verifies
it against the cluster issuer's JWKS (:mod:`allora_gitops.api.podidentity`). On a laptop there is no cluster,
hence no issuer: this module plays its part. It keeps one signing key in a directory, publishes the public half
as a JWKS file, and mints tokens with the claims and header of a projected ServiceAccount token. ``serve`` is
configured with that JWKS and issuer through the settings a cluster uses (``ALLORA_API_POD_JWKS``,
``ALLORA_API_POD_ISSUER``) and verifies these tokens exactly as it verifies a cluster's: nothing in the server
knows or trusts this module. Whoever holds the key can write any deployment's results, so a shared or
production server is configured with its cluster's JWKS, never with a local issuer.

The directory holds ``signing-key.pem`` (PKCS#8, mode 0600) and ``jwks.json``; the issuer is
:data:`LOCAL_ISSUER`. Keys are ECDSA P-256 (ES256), which kube-apiserver also signs with; the key id is
kube-apiserver's: the unpadded base64url SHA-256 of the public key's DER SubjectPublicKeyInfo
(``keyIDFromPublicKey`` in k8s.io/kubernetes pkg/serviceaccount/jwt.go).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from allora_gitops import constants as C
from allora_gitops.errors import AlloraGitopsError
from allora_runtime.contract import RESULTS_TOKEN_AUDIENCE, RESULTS_TOKEN_EXPIRATION_SECONDS

LOCAL_ISSUER = "https://local-issuer.allora-gitops.invalid"  # .invalid (RFC 2606): no real issuer has this name
KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"


class LocalIssuerError(AlloraGitopsError):
    """The local issuer's directory is missing, unreadable or holds something else."""


def key_id(public_key: Any) -> str:
    """kube-apiserver's ``kid`` for a public key: unpadded base64url of SHA-256 over its DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return "RS256" if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) else "ES256"


def public_jwks(keys: Iterable[tuple[str, Any]]) -> dict:
    """``{"keys": [...]}`` for (kid, private key) pairs, RSA or EC P-256: what ``/openid/v1/jwks`` serves."""
    import jwt

    found = []
    for kid, key in keys:
        algorithm = _algorithm(key)
        codec = jwt.algorithms.RSAAlgorithm if algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        found.append({**codec.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": algorithm})
    return {"keys": found}


def projected_token_claims(
    service_account: str,
    namespace: str = C.NAMESPACE,
    *,
    audience: Sequence[str] = (RESULTS_TOKEN_AUDIENCE,),
    issuer: str = LOCAL_ISSUER,
    issued_at: Optional[float] = None,
    lifetime: int = RESULTS_TOKEN_EXPIRATION_SECONDS,
    pod: Optional[str] = None,
) -> dict:
    """The claims the kubelet's ``serviceAccountToken`` projection carries for a pod of ``service_account``.

    ``issued_at`` in Unix seconds (default: now), ``lifetime`` in seconds; ``pod`` names the pod (default: a
    name shaped like a Deployment's pod). Shape: kubernetes.io/docs/reference/access-authn-authz/
    service-accounts-admin/#bound-service-account-token-volume.
    """
    now = int(issued_at if issued_at is not None else time.time())
    return {
        "aud": list(audience),
        "exp": now + lifetime,
        "iat": now,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "local", "uid": str(uuid.uuid4())},
            "pod": {"name": pod or f"{service_account}-5d9c7b8f4-x2x4k", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
        },
        "nbf": now,
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
    }


def sign_token(claims: dict, key: Any, kid: str) -> str:
    """A compact JWT of ``claims`` signed with ``key`` (RS256 for RSA, ES256 for EC P-256), ``kid`` in its header."""
    import jwt

    return jwt.encode(claims, key, algorithm=_algorithm(key), headers={"kid": kid})


@dataclass(frozen=True)
class LocalIssuer:
    """A signing key in ``directory`` and the JWKS of its public half; see the module docstring."""

    directory: Path
    key: Any
    kid: str

    @property
    def jwks_path(self) -> Path:
        return self.directory / JWKS_FILE

    @property
    def issuer(self) -> str:
        return LOCAL_ISSUER

    @classmethod
    def create(cls, directory: Path) -> tuple["LocalIssuer", bool]:
        """The issuer in ``directory``, made there first when it has none: (issuer, created).

        An existing key is kept (tokens minted before stay valid). Raises LocalIssuerError when the directory
        cannot be written or holds an unreadable key.
        """
        if (directory / KEY_FILE).exists():
            return cls.load(directory), False
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from allora_gitops.atomic import write_atomic

        key = ec.generate_private_key(ec.SECP256R1())
        issuer = cls(directory, key, key_id(key.public_key()))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(issuer.jwks_path, (json.dumps(public_jwks([(issuer.kid, key)]), indent=2) + "\n").encode())
            write_atomic(directory / KEY_FILE, pem, mode=0o600)  # last: a directory with a key is a complete issuer
        except OSError as exc:
            raise LocalIssuerError(f"{directory}: cannot write the local issuer ({exc.strerror})") from None
        return issuer, True

    @classmethod
    def load(cls, directory: Path) -> "LocalIssuer":
        """The issuer ``create`` made in ``directory``; LocalIssuerError naming the file when there is none."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = directory / KEY_FILE
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise LocalIssuerError(f"{path}: no local issuer here; run `allora-gitops local-issuer init {directory}` first") from None
        except (OSError, ValueError, TypeError) as exc:
            raise LocalIssuerError(f"{path}: not a readable signing key ({type(exc).__name__})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise LocalIssuerError(f"{path}: not an ECDSA P-256 key")
        return cls(directory, key, key_id(key.public_key()))

    def token(self, service_account: str, namespace: str = C.NAMESPACE, *, lifetime: int = RESULTS_TOKEN_EXPIRATION_SECONDS) -> str:
        """A projected ServiceAccount token for a pod of ``namespace/service_account``, valid ``lifetime`` seconds."""
        return sign_token(projected_token_claims(service_account, namespace, lifetime=lifetime), self.key, self.kid)
