"""Which deployment is calling: a model pod's projected ServiceAccount token, verified and mapped to its record.

The rendered Deployment mounts a token the kubelet requests for the pod's own ServiceAccount
(``serviceAccountToken`` projection, audience ``allora-platform``, rotated before it expires), and the runtime
sends it as ``Authorization: Bearer`` with its results. The token is a JWT the cluster's ServiceAccount issuer
signs (RS256 or ES256); its claims look like::

    {"aud": ["allora-platform"], "exp": 1767229200, "iat": 1767225600, "nbf": 1767225600,
     "iss": "https://kubernetes.default.svc.cluster.local",
     "sub": "system:serviceaccount:allora-models:my-model-testnet",
     "kubernetes.io": {"namespace": "allora-models",
                       "pod": {"name": "my-model-testnet-5d9c7b-x2x4k", "uid": "…"},
                       "serviceaccount": {"name": "my-model-testnet", "uid": "…"}}}

(https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume,
https://kubernetes.io/docs/concepts/storage/projected-volumes/#serviceaccounttoken). The signature is checked
against the issuer's public keys, a JWKS served by the API server at ``{issuer}/openid/v1/jwks`` (service
account issuer discovery), given here as a URL or a file; keys are cached and fetched again for an unknown
``kid`` (PyJWT's ``PyJWKClient``, at most every 30 s); a file is read again when it changes.

Each deployment has its own ServiceAccount, named like its other objects: ``<bundle name>-<network>`` (the
overlay's ``nameSuffix``; ``DeploymentSpec.instance``) in the deployments' namespace. So ``sub`` names exactly one
live deployment, and a pod can write only its own results.

Errors, as the HTTP status the API answers: ``PodTokenRejected`` (401: malformed, bad signature, another key,
expired, not yet valid, wrong audience or issuer), ``PodNotAllowed`` (403: a valid token whose ServiceAccount is
not the deployment's, or no live deployment's), ``PodIdentityUnavailable`` (503: the JWKS cannot be fetched).
Messages never quote the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jwt

from allora_gitops import constants as C
from allora_gitops.errors import AlloraGitopsError
from allora_runtime.contract import RESULTS_TOKEN_AUDIENCE

ALGORITHMS = ("RS256", "ES256")  # what kube-apiserver signs ServiceAccount tokens with (RSA or ECDSA P-256 keys)
LEEWAY_SECONDS = 30  # clock skew tolerated on exp/nbf/iat between the node and the platform
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub")
SUBJECT_PREFIX = "system:serviceaccount:"


class PodIdentityError(AlloraGitopsError):
    """A request with a pod token that cannot be accepted; ``status_code`` is the HTTP answer."""

    status_code = 401


class PodTokenRejected(PodIdentityError):
    """Not a valid token for this platform: who is calling is unknown."""

    status_code = 401


class PodNotAllowed(PodIdentityError):
    """A valid token, for a ServiceAccount that may not do this (another deployment's, or none)."""

    status_code = 403


class PodIdentityUnavailable(PodIdentityError):
    """The issuer's keys cannot be fetched: nothing can be verified now (try again later)."""

    status_code = 503


@dataclass(frozen=True)
class PodIdentity:
    """A verified token's subject: the pod's namespace and ServiceAccount (and the pod's name when the token says)."""

    namespace: str
    service_account: str
    pod: Optional[str] = None


class PodTokenVerifier:
    """Verifies projected ServiceAccount tokens of one cluster.

    ``jwks``: the issuer's JWKS as an ``https://``/``http://`` URL or a file path (``kubectl get --raw
    /openid/v1/jwks > jwks.json``); ``issuer``: the exact ``iss`` the cluster writes (``kubectl get --raw
    /.well-known/openid-configuration``); ``namespace``: where the platform's deployments run.
    """

    def __init__(self, jwks: str, issuer: str, *, namespace: str = C.NAMESPACE, audience: str = RESULTS_TOKEN_AUDIENCE):
        if jwks.startswith(("https://", "http://")):
            self._keys: Any = jwt.PyJWKClient(jwks, cache_jwk_set=True, lifespan=300, timeout=10)
        else:
            self._keys = _FileKeys(Path(jwks))
        self.issuer = issuer
        self.namespace = namespace
        self.audience = audience

    def verify(self, token: str) -> PodIdentity:
        """The token's verified identity, or ``PodTokenRejected`` / ``PodIdentityUnavailable``."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise PodIdentityUnavailable("the cluster's ServiceAccount keys (JWKS) cannot be fetched") from None
        except jwt.PyJWKClientError:
            raise PodTokenRejected("the token is not signed by a key of the cluster's ServiceAccount issuer") from None
        except jwt.PyJWTError as exc:  # a header that is not a JWT's
            raise PodTokenRejected(f"the token is malformed ({type(exc).__name__})") from None
        try:
            claims = jwt.decode(
                token, key=key, algorithms=list(ALGORITHMS), audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": list(REQUIRED_CLAIMS)},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise PodTokenRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise PodTokenRejected("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise PodTokenRejected(f"the token's audience is not {self.audience}") from None
        except jwt.InvalidIssuerError:
            raise PodTokenRejected("the token's issuer is not the cluster's") from None
        except jwt.MissingRequiredClaimError as exc:
            raise PodTokenRejected(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise PodTokenRejected("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise PodTokenRejected(f"the token is not valid ({type(exc).__name__})") from None
        return identity_from_claims(claims)


class _FileKeys:
    """A JWKS file, read again when it changes (a rotated key is a new file); the lookup ``PyJWKClient`` offers."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: Optional[tuple[int, int]] = None
        self._set: Optional[jwt.PyJWKSet] = None
        self._load()  # a missing or broken file is found when the server starts, not at the first request

    def _load(self) -> jwt.PyJWKSet:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._set is None or stamp != self._stamp:
                self._set, self._stamp = jwt.PyJWKSet.from_json(self.path.read_text(encoding="utf-8")), stamp
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise PodIdentityUnavailable(f"{self.path}: not a readable JWKS ({type(exc).__name__}: {exc})"[:300]) from None
        return self._set

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._load().keys:
            if key.key_id == kid:
                return key
        raise jwt.PyJWKClientError("no key with this kid")


def identity_from_claims(claims: dict[str, Any]) -> PodIdentity:
    """``sub`` = ``system:serviceaccount:<namespace>:<name>``; the ``kubernetes.io`` claim, when there, must agree."""
    sub = claims.get("sub")
    parts = sub[len(SUBJECT_PREFIX) :].split(":") if isinstance(sub, str) and sub.startswith(SUBJECT_PREFIX) else []
    if len(parts) != 2 or not all(parts):
        raise PodNotAllowed("the token is not a ServiceAccount's")
    namespace, name = parts
    pod = None
    k8s = claims.get("kubernetes.io")
    if k8s is not None:
        account = k8s.get("serviceaccount") if isinstance(k8s, dict) else None
        if not isinstance(account, dict) or k8s.get("namespace") != namespace or account.get("name") != name:
            raise PodTokenRejected("the token's kubernetes.io claim does not match its subject")
        pod_claim = k8s.get("pod")
        pod = pod_claim.get("name") if isinstance(pod_claim, dict) else None
    return PodIdentity(namespace=namespace, service_account=name, pod=pod)


def deployment_for_pod(records: Any, identity: PodIdentity, namespace: str) -> Any:
    """The one live deployment whose ServiceAccount this is (a ``DeploymentRecord``), else ``PodNotAllowed``.

    The ServiceAccount is ``<bundle name>-<network>`` in ``namespace``; names and networks may hold ``-``, so
    every split is tried and exactly one live deployment must match (two would share their objects in the
    cluster, which rendering never produces; refused rather than guessed).
    """
    account = identity.service_account
    if identity.namespace != namespace:
        raise PodNotAllowed(f"ServiceAccount {identity.namespace}/{account} is not in the deployments' namespace")
    found = []
    for at in [i for i, ch in enumerate(account) if ch == "-"]:
        deployment = records.current_deployment(account[:at], account[at + 1 :])
        if deployment is not None:
            found.append(deployment)
    if len(found) != 1:
        why = "belongs to no live deployment" if not found else f"matches {len(found)} live deployments"
        raise PodNotAllowed(f"ServiceAccount {identity.namespace}/{account} {why}")
    return found[0]


def authorize_pod(verifier: PodTokenVerifier, records: Any, token: str, deployment_id: Optional[str] = None) -> Any:
    """Verify ``token`` and return the caller's deployment; ``PodNotAllowed`` when ``deployment_id`` is another one."""
    deployment = deployment_for_pod(records, verifier.verify(token), verifier.namespace)
    if deployment_id is not None and str(deployment.id) != str(deployment_id):
        raise PodNotAllowed("this token may write only its own deployment's results")
    return deployment
