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
account issuer discovery), given here as a URL or a file; a file is read again when it changes. A URL is read by
one :class:`JwksFetcher`: never on a request's path for a known key (the last good set is refreshed in the
background, stale-while-revalidate, and trusted for a bounded time while the issuer is unreachable), one fetch in
flight at a time, a request with an unknown ``kid`` waits for it at most ~0.25 s and then fails (503, retryable).

Each deployment has its own ServiceAccount, named like its other objects: ``<bundle name>-<network>`` (the
overlay's ``nameSuffix``; ``DeploymentSpec.instance``) in the deployments' namespace. So ``sub`` names exactly one
live deployment, and a pod can write only its own results.

Errors, as the HTTP status the API answers: ``PodTokenRejected`` (401: malformed, bad signature, another key,
expired, not yet valid, wrong audience or issuer), ``PodNotAllowed`` (403: a valid token whose ServiceAccount is
not the deployment's, or no live deployment's), ``PodIdentityUnavailable`` (503: the JWKS cannot be fetched).
Messages never quote the token.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import jwt

from allora_gitops import constants as C
from allora_gitops.api.auth import TOKEN_PREFIX as API_TOKEN_PREFIX
from allora_gitops.errors import AlloraGitopsError
from allora_runtime.contract import RESULTS_TOKEN_AUDIENCE

ALGORITHMS = ("RS256", "ES256")  # what kube-apiserver signs ServiceAccount tokens with (RSA or ECDSA P-256 keys)
LEEWAY_SECONDS = 30  # clock skew tolerated on exp/nbf/iat between the node and the platform
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub")
SUBJECT_PREFIX = "system:serviceaccount:"
JWKS_MIN_INTERVAL_SECONDS = 5.0  # between two fetches: made-up kids cannot make the server hammer the issuer
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600  # exp - iat: the kubelet mints ≤ 48 h; the rendered pods ask for 1 h
log = logging.getLogger("allora_gitops.api.podidentity")


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

    def __init__(
        self, jwks: str, issuer: str, *, namespace: str = C.NAMESPACE, audience: str = RESULTS_TOKEN_AUDIENCE,
        max_lifetime: int = MAX_TOKEN_LIFETIME_SECONDS, fetcher: Optional["JwksFetcher"] = None,
    ):  # fmt: skip
        if fetcher is not None:
            self.keys: Any = fetcher
        elif jwks.startswith(("https://", "http://")):
            self.keys = JwksFetcher(jwks)
        else:
            self.keys = _FileKeys(Path(jwks))
        self.issuer = issuer
        self.namespace = namespace
        self.audience = audience
        self.max_lifetime = max_lifetime

    def start(self) -> None:
        """Begin fetching a URL's keys in the background (the server's start), so the first report need not wait."""
        if isinstance(self.keys, JwksFetcher):
            self.keys.start()

    def verify(self, token: str) -> PodIdentity:
        """The token's verified identity, or ``PodTokenRejected`` / ``PodIdentityUnavailable``."""
        try:
            key = self.keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise PodIdentityUnavailable("the cluster's ServiceAccount keys (JWKS) cannot be fetched") from None
        except jwt.PyJWKClientError:
            raise PodTokenRejected("the token is not signed by a key of the cluster's ServiceAccount issuer") from None
        except jwt.PyJWTError as exc:  # a header that is not a JWT's
            if token.startswith(API_TOKEN_PREFIX):  # the likeliest mix-up, in local runs: say what to use instead
                raise PodTokenRejected(
                    f"the token is a platform API token ({API_TOKEN_PREFIX}…), not a pod's ServiceAccount token: results are "
                    "reported with the pod's projected token (locally: allora-gitops local-issuer token)"
                ) from None
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
        lifetime = claims["exp"] - claims["iat"] if all(isinstance(claims[k], (int, float)) for k in ("exp", "iat")) else None
        if lifetime is None or lifetime > self.max_lifetime:
            raise PodTokenRejected(f"the token is valid for longer than this platform accepts ({self.max_lifetime // 3600} h at most)")
        return identity_from_claims(claims)


class JwksFetcher:
    """The signing keys of a JWKS URL, fetched so that no request waits on the issuer for a key it already knows.

    - a known ``kid`` is answered from the last good set; once that set is ``refresh_seconds`` old a refetch
      starts in the background and the set keeps serving (stale-while-revalidate) until ``max_stale_seconds``
      after its fetch; past that, nothing verifies (503) until a fetch succeeds;
    - an unknown ``kid`` starts a fetch (at most one every ``min_interval`` seconds, so made-up kids cannot make
      the server hammer the issuer) and waits for it at most ``wait_seconds``; a fetch still running then is a
      ``PyJWKClientConnectionError`` (503), not a blocked thread;
    - one fetch at a time, in a daemon thread, with a ``timeout``; a failed fetch logs its cause (status, TLS,
      connection) once per fetch, never a token.

    ``ca_file``: the CA bundle trusted for an ``https`` URL (an in-cluster issuer's private CA; default: the
    system's, ``$SSL_CERT_FILE``); ``token_file``: a bearer token sent with each fetch, read at each fetch (a
    projected ServiceAccount token rotates), for an API server that does not serve the JWKS anonymously.
    ``clock``: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, url: str, *, ca_file: Optional[str] = None, token_file: Optional[str] = None,
        refresh_seconds: float = 300.0, max_stale_seconds: float = 3600.0, min_interval: float = JWKS_MIN_INTERVAL_SECONDS,
        wait_seconds: float = 0.25, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
    ):  # fmt: skip
        self.url, self.ca_file, self.token_file = url, ca_file, token_file
        self.refresh_seconds, self.max_stale_seconds = refresh_seconds, max_stale_seconds
        self.min_interval, self.wait_seconds, self.timeout = min_interval, wait_seconds, timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: Optional[float] = None  # when the current set was fetched (clock)
        self._attempted_at: Optional[float] = None
        self._in_flight: Optional[threading.Event] = None
        self.last_error: Optional[str] = None
        self.fetches = 0

    def start(self) -> None:
        """Fetch in the background now, so the first report does not wait for it."""
        with self._lock:
            self._start_locked(self.clock())

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        now = self.clock()
        with self._lock:
            fresh = self._fetched_at is not None and now - self._fetched_at < self.max_stale_seconds
            key = self._keys.get(kid) if fresh else None
            if key is not None:
                if now - self._fetched_at >= self.refresh_seconds:
                    self._start_locked(now)  # revalidate behind the answer
                return key
            event = self._start_locked(now, unknown_kid=fresh)
        if event is not None:
            event.wait(self.wait_seconds)
        now = self.clock()
        with self._lock:
            fresh = self._fetched_at is not None and now - self._fetched_at < self.max_stale_seconds
            key = self._keys.get(kid) if fresh else None
            if key is not None:
                return key
            if fresh and (self._in_flight is None and self.last_error is None):
                raise jwt.PyJWKClientError("no key with this kid")  # the issuer answered, and has no such key
            cause = "still being fetched" if self._in_flight is not None else (self.last_error or "not fetched yet")
        raise jwt.PyJWKClientConnectionError(f"the JWKS at {self.url} is unavailable ({cause})")

    def _start_locked(self, now: float, *, unknown_kid: bool = False) -> Optional[threading.Event]:
        """The running fetch's event, or a new fetch's; None when one ran less than ``min_interval`` ago."""
        if self._in_flight is not None:
            return self._in_flight
        if self._attempted_at is not None and now - self._attempted_at < self.min_interval:
            return None
        self._attempted_at = now
        self._in_flight = event = threading.Event()
        threading.Thread(target=self._fetch, args=(event,), name="jwks-fetch", daemon=True).start()
        return event

    def _fetch(self, event: threading.Event) -> None:
        try:
            keys = self._download()
        except Exception as exc:  # noqa: BLE001 - every cause is logged and kept, the thread never dies loudly
            cause = _fetch_failure(exc)
            log.warning("cannot fetch the pods' issuer keys from %s: %s", self.url, cause)
            with self._lock:
                self.last_error, self._in_flight = cause, None
        else:
            with self._lock:
                self._keys, self._fetched_at, self.last_error, self._in_flight = keys, self.clock(), None, None
                self.fetches += 1
        finally:
            event.set()

    def _download(self) -> dict[str, jwt.PyJWK]:
        import ssl
        import urllib.request

        headers = {"Accept": "application/json", "User-Agent": "allora-gitops"}
        if self.token_file:  # the file and its setting named, never its content: "FileNotFoundError" alone said neither
            try:
                bearer = Path(self.token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise JwksSettingError(f"cannot read the bearer token file {self.token_file} ($ALLORA_API_POD_JWKS_TOKEN_FILE): "
                                       f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None  # fmt: skip
            headers["Authorization"] = f"Bearer {bearer}"
        context = jwks_ssl_context(self.ca_file) if self.url.startswith("https://") else None
        request = urllib.request.Request(self.url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:  # noqa: S310 - http(s) only
            body = response.read(1 << 20)
        found = jwt.PyJWKSet.from_json(body.decode("utf-8"))
        return {key.key_id: key for key in found.keys if key.key_id}


class JwksSettingError(Exception):
    """A file the JWKS fetch is configured with cannot be used; the message names it and its setting."""


def jwks_ssl_context(ca_file: Optional[str]):
    """The TLS context for an ``https`` JWKS URL: ``ca_file`` (``$ALLORA_API_POD_JWKS_CA_FILE``) trusted, else the
    system's. ``JwksSettingError`` naming the file when it cannot be loaded (missing, unreadable, no certificate)."""
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:  # FileNotFoundError carries no file name here; SSLError a library code
        why = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else (getattr(exc, "strerror", None) or type(exc).__name__)
        raise JwksSettingError(f"cannot load the CA bundle {ca_file} ($ALLORA_API_POD_JWKS_CA_FILE): {why}") from None


def _fetch_failure(exc: BaseException) -> str:
    """One line for why a JWKS fetch failed: the HTTP status, the TLS or connection error, the bad document."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"[:300]
    if isinstance(exc, JwksSettingError):
        return str(exc)
    if isinstance(exc, OSError) and not exc.args:
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"[:300]


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

    The ServiceAccount is ``<bundle name>-<network>`` in ``namespace``; names hold ``-``, so every split whose
    tail is one of the platform's networks (``C.NETWORKS``: publishing refuses any other) is tried — one query on
    every result post, not one per ``-`` — and exactly one live deployment must match (two would share their
    objects in the cluster, which rendering never produces; refused rather than guessed).
    """
    account = identity.service_account
    if identity.namespace != namespace:
        raise PodNotAllowed(f"ServiceAccount {identity.namespace}/{account} is not in the deployments' namespace")
    found = []
    for at in [i for i, ch in enumerate(account) if ch == "-" and account[i + 1 :] in C.NETWORKS]:
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
