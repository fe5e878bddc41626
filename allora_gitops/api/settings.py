"""The API server's configuration: one function reads it (flags, then the standard variables, then defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from allora_gitops import constants as C
from allora_gitops.errors import UsageError

REPO_ENV = "ALLORA_GITOPS_REPO"
BASE_BRANCH_ENV = "ALLORA_GITOPS_BASE_BRANCH"
MAX_UPLOAD_MB_ENV = "ALLORA_API_MAX_UPLOAD_MB"
MAX_LIVE_DEPLOYMENTS_ENV = "ALLORA_API_MAX_LIVE_DEPLOYMENTS"
UPLOAD_DIR_ENV = "ALLORA_API_UPLOAD_DIR"
# POST /api/v1/results: the cluster's ServiceAccount issuer (api/podidentity.py); unset: results reporting is off.
POD_JWKS_ENV = "ALLORA_API_POD_JWKS"  # the issuer's JWKS: https://<api-server>/openid/v1/jwks or a file
POD_ISSUER_ENV = "ALLORA_API_POD_ISSUER"  # the exact `iss` of its tokens
MODELS_NAMESPACE_ENV = "ALLORA_API_MODELS_NAMESPACE"  # where the deployments' pods run (default: allora-models)
# the pods' issuer keys (api/podidentity.py JwksFetcher): an in-cluster issuer URL with a private CA and the
# ServiceAccount token the API server asks for; how long the last good keys stay trusted while it is unreachable
POD_JWKS_CA_FILE_ENV = "ALLORA_API_POD_JWKS_CA_FILE"
POD_JWKS_TOKEN_FILE_ENV = "ALLORA_API_POD_JWKS_TOKEN_FILE"
POD_JWKS_MAX_STALE_ENV = "ALLORA_API_POD_JWKS_MAX_STALE_SECONDS"
POD_TOKEN_MAX_LIFETIME_ENV = "ALLORA_API_POD_TOKEN_MAX_LIFETIME_SECONDS"
# nothing waits while holding the database: the pool, and the deadlines of a streamed upload
DB_POOL_SIZE_ENV = "ALLORA_API_DB_POOL_SIZE"
DB_POOL_TIMEOUT_ENV = "ALLORA_API_DB_POOL_TIMEOUT_SECONDS"
UPLOAD_IDLE_ENV = "ALLORA_API_UPLOAD_IDLE_SECONDS"
UPLOAD_TOTAL_ENV = "ALLORA_API_UPLOAD_TOTAL_SECONDS"
UPLOADS_PER_USER_ENV = "ALLORA_API_UPLOADS_PER_USER"
SHUTDOWN_GRACE_ENV = "ALLORA_API_SHUTDOWN_GRACE_SECONDS"
KEEP_ALIVE_ENV = "ALLORA_API_KEEP_ALIVE_SECONDS"  # how long an idle client connection is kept open for its next request
SECURE_COOKIES_ENV = "ALLORA_API_SECURE_COOKIES"  # true: session cookies are Secure whatever the request's scheme
# POST /api/v1/logs: how long model log lines are kept, and how many of one deployment at most (db/logs.py)
LOGS_RETENTION_ENV = "ALLORA_API_LOGS_RETENTION"  # a duration: 7d, 48h
LOGS_MAX_LINES_ENV = "ALLORA_API_LOGS_MAX_LINES"
DEFAULT_LOGS_RETENTION = "7d"
DEFAULT_LOGS_MAX_LINES = 100_000
DEFAULT_MAX_LIVE_DEPLOYMENTS = 10
DEFAULT_DB_POOL_SIZE = 10
DEFAULT_DB_POOL_TIMEOUT = 5
DEFAULT_UPLOAD_IDLE_SECONDS = 30  # no byte of the body for this long: 408, the connection closed
DEFAULT_UPLOAD_TOTAL_SECONDS = 1800  # 500 MB at ~2.3 Mbit/s
DEFAULT_UPLOADS_PER_USER = 4
DEFAULT_SHUTDOWN_GRACE_SECONDS = 20  # SIGTERM: requests in flight get this long, then the server ends (≤ 30 s)
# Longer than the idle timeout of whatever keeps connections to us (ingress-nginx upstream keep-alive: 60 s; a pod's
# reporter between batches): the server must not be the side that closes first, or a request sent as it closes is
# answered by nothing ("Remote end closed connection without response", and a POST is not retried). uvicorn's own
# default, 5 s, did that to the load benchmark's browsers and pods. Idle connections are closed at once on SIGTERM.
DEFAULT_KEEP_ALIVE_SECONDS = 75
DEFAULT_POD_JWKS_MAX_STALE = 3600
DEFAULT_POD_TOKEN_MAX_LIFETIME = 24 * 3600  # the kubelet mints projected tokens valid ≤ 48 h; ours ask for 1 h


@dataclass(frozen=True)
class ApiSettings:
    """What every request needs: where the GitOps repository, the object store and the records are; the limits."""

    repo: str
    base_branch: str = C.DEFAULT_BRANCH
    store_url: Optional[str] = None  # None: the CLI's default (ALLORA_STORE_URL, else under the state directory)
    database_url: Optional[str] = None  # None: ALLORA_DATABASE_URL, else the embedded server
    max_upload_bytes: int = C.MAX_BUNDLE_BYTES
    max_live_deployments: int = DEFAULT_MAX_LIVE_DEPLOYMENTS
    upload_dir: Optional[str] = None  # where uploads are spooled (None: the system temp dir)
    pod_jwks: Optional[str] = None  # $ALLORA_API_POD_JWKS; with pod_issuer: POST /api/v1/results is served
    pod_issuer: Optional[str] = None  # $ALLORA_API_POD_ISSUER
    models_namespace: str = C.NAMESPACE  # $ALLORA_API_MODELS_NAMESPACE
    prometheus_url: Optional[str] = None  # --prometheus-url, $ALLORA_PROMETHEUS_URL; None: resources are not shown
    pod_jwks_ca_file: Optional[str] = None  # $ALLORA_API_POD_JWKS_CA_FILE: trust for an https JWKS (else $SSL_CERT_FILE / the system's)
    pod_jwks_token_file: Optional[str] = None  # $ALLORA_API_POD_JWKS_TOKEN_FILE: a bearer token sent to the JWKS URL, read per fetch
    pod_jwks_max_stale_seconds: int = DEFAULT_POD_JWKS_MAX_STALE
    pod_token_max_lifetime_seconds: int = DEFAULT_POD_TOKEN_MAX_LIFETIME  # exp - iat above this: 401
    db_pool_size: int = DEFAULT_DB_POOL_SIZE  # connections per server process
    db_pool_timeout_seconds: int = DEFAULT_DB_POOL_TIMEOUT  # a request waits this long for one, then 503
    upload_idle_seconds: int = DEFAULT_UPLOAD_IDLE_SECONDS
    upload_total_seconds: int = DEFAULT_UPLOAD_TOTAL_SECONDS
    uploads_per_user: int = DEFAULT_UPLOADS_PER_USER  # concurrent uploads of one user on one server process
    shutdown_grace_seconds: int = DEFAULT_SHUTDOWN_GRACE_SECONDS
    keep_alive_seconds: int = DEFAULT_KEEP_ALIVE_SECONDS  # $ALLORA_API_KEEP_ALIVE_SECONDS
    secure_cookies: bool = False
    logs_retention: str = DEFAULT_LOGS_RETENTION  # $ALLORA_API_LOGS_RETENTION: model log lines older than this are deleted
    logs_max_lines: int = DEFAULT_LOGS_MAX_LINES  # $ALLORA_API_LOGS_MAX_LINES: per deployment; beyond it the oldest go


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"${name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise UsageError(f"${name} must not be negative")
    return value


def load_api_settings(
    *,
    repo: Optional[str] = None,
    base_branch: Optional[str] = None,
    store_url: Optional[str] = None,
    database_url: Optional[str] = None,
    max_upload_mb: Optional[int] = None,
    max_live_deployments: Optional[int] = None,
    prometheus_url: Optional[str] = None,
) -> ApiSettings:
    """Flags first, then ``$ALLORA_GITOPS_REPO``, ``$ALLORA_STORE_URL``, ``$ALLORA_DATABASE_URL``,
    ``$ALLORA_API_MAX_UPLOAD_MB``, ``$ALLORA_API_MAX_LIVE_DEPLOYMENTS``, then the defaults; results reporting
    from ``$ALLORA_API_POD_JWKS``, ``$ALLORA_API_POD_ISSUER`` and ``$ALLORA_API_MODELS_NAMESPACE``; the Prometheus
    the resources are read from: the flag, else ``$ALLORA_PROMETHEUS_URL`` (:func:`allora_gitops.prometheus.prometheus_url_setting`);
    the pods' issuer (``$ALLORA_API_POD_JWKS_CA_FILE``, ``…_TOKEN_FILE``, ``…_MAX_STALE_SECONDS``,
    ``$ALLORA_API_POD_TOKEN_MAX_LIFETIME_SECONDS``), the pool (``$ALLORA_API_DB_POOL_SIZE``, ``…_TIMEOUT_SECONDS``),
    the uploads (``$ALLORA_API_UPLOAD_IDLE_SECONDS``, ``…_TOTAL_SECONDS``, ``$ALLORA_API_UPLOADS_PER_USER``), the
    shutdown grace (``$ALLORA_API_SHUTDOWN_GRACE_SECONDS``, ≤ 30), the idle keep-alive of client connections
    (``$ALLORA_API_KEEP_ALIVE_SECONDS``) and ``$ALLORA_API_SECURE_COOKIES``.

    The one place the server's configuration is read (repository settings files plug in here).
    Raises UsageError when no repository is given or a limit or the Prometheus URL is malformed.
    """
    from allora_gitops.prometheus import prometheus_url_setting

    repo = repo or os.environ.get(REPO_ENV, "").strip() or None
    if not repo:
        raise UsageError(f"no GitOps repository: pass --repo or set ${REPO_ENV}")
    upload_mb = max_upload_mb if max_upload_mb is not None else _int_env(MAX_UPLOAD_MB_ENV, C.MAX_BUNDLE_BYTES >> 20)
    if upload_mb <= 0 or (upload_mb << 20) > C.MAX_BUNDLE_BYTES:
        raise UsageError(f"the upload limit must be between 1 and {C.MAX_BUNDLE_BYTES >> 20} MB (the bundle size limit)")
    return ApiSettings(
        repo=repo,
        base_branch=base_branch or os.environ.get(BASE_BRANCH_ENV, "").strip() or C.DEFAULT_BRANCH,
        store_url=store_url or os.environ.get(C.STORE_URL_ENV, "").strip() or None,
        database_url=database_url or os.environ.get(C.DATABASE_URL_ENV, "").strip() or None,
        max_upload_bytes=upload_mb << 20,
        max_live_deployments=(
            max_live_deployments if max_live_deployments is not None
            else _int_env(MAX_LIVE_DEPLOYMENTS_ENV, DEFAULT_MAX_LIVE_DEPLOYMENTS)
        ),
        upload_dir=os.environ.get(UPLOAD_DIR_ENV, "").strip() or None,
        prometheus_url=prometheus_url_setting(prometheus_url),
        **_logs_settings(),
        **_pod_identity_settings(),
        **_server_settings(),
    )


def settings_environment(settings: ApiSettings) -> dict[str, str]:
    """The variables that make :func:`load_api_settings` (with no flags) return ``settings`` again: how
    ``serve --workers N`` hands the resolved settings to worker processes that build the app themselves."""
    from allora_gitops.prometheus import PROMETHEUS_URL_ENV

    env = {
        REPO_ENV: settings.repo,
        BASE_BRANCH_ENV: settings.base_branch,
        MAX_UPLOAD_MB_ENV: str(settings.max_upload_bytes >> 20),
        MAX_LIVE_DEPLOYMENTS_ENV: str(settings.max_live_deployments),
        LOGS_RETENTION_ENV: settings.logs_retention,
        LOGS_MAX_LINES_ENV: str(settings.logs_max_lines),
    }
    for name, value in (
        (C.STORE_URL_ENV, settings.store_url), (C.DATABASE_URL_ENV, settings.database_url), (UPLOAD_DIR_ENV, settings.upload_dir),
        (POD_JWKS_ENV, settings.pod_jwks), (POD_ISSUER_ENV, settings.pod_issuer), (MODELS_NAMESPACE_ENV, settings.models_namespace),
        (PROMETHEUS_URL_ENV, settings.prometheus_url), (POD_JWKS_CA_FILE_ENV, settings.pod_jwks_ca_file),
        (POD_JWKS_TOKEN_FILE_ENV, settings.pod_jwks_token_file),
    ):  # fmt: skip
        if value:
            env[name] = value
    for name, field in _SERVER_INTS:
        env[name] = str(getattr(settings, field))
    env[SECURE_COOKIES_ENV] = "true" if settings.secure_cookies else "false"
    return env


# (variable, ApiSettings field, smallest allowed value)
_SERVER_INTS = (
    (POD_JWKS_MAX_STALE_ENV, "pod_jwks_max_stale_seconds"), (POD_TOKEN_MAX_LIFETIME_ENV, "pod_token_max_lifetime_seconds"),
    (DB_POOL_SIZE_ENV, "db_pool_size"), (DB_POOL_TIMEOUT_ENV, "db_pool_timeout_seconds"),
    (UPLOAD_IDLE_ENV, "upload_idle_seconds"), (UPLOAD_TOTAL_ENV, "upload_total_seconds"),
    (UPLOADS_PER_USER_ENV, "uploads_per_user"), (SHUTDOWN_GRACE_ENV, "shutdown_grace_seconds"),
    (KEEP_ALIVE_ENV, "keep_alive_seconds"),
)  # fmt: skip


def _server_settings() -> dict:
    """The pool, deadline, cookie and pod-token settings from their variables (defaults: ApiSettings'); UsageError
    for a malformed one, a zero (each must be at least 1) or a shutdown grace over 30 s."""
    values: dict = {}
    for name, field in _SERVER_INTS:
        value = _int_env(name, ApiSettings.__dataclass_fields__[field].default)
        if value < 1:
            raise UsageError(f"${name} must be at least 1")
        values[field] = value
    if values["shutdown_grace_seconds"] > 30:
        raise UsageError(f"${SHUTDOWN_GRACE_ENV} must be at most 30 (Kubernetes' default grace period)")
    raw = os.environ.get(SECURE_COOKIES_ENV, "").strip().lower()
    if raw not in ("", "true", "false", "1", "0", "yes", "no"):
        raise UsageError(f"${SECURE_COOKIES_ENV} must be true or false, not {raw!r}")
    values["secure_cookies"] = raw in ("true", "1", "yes")
    for name, field in ((POD_JWKS_CA_FILE_ENV, "pod_jwks_ca_file"), (POD_JWKS_TOKEN_FILE_ENV, "pod_jwks_token_file")):
        values[field] = os.environ.get(name, "").strip() or None
    if values["pod_jwks_ca_file"]:  # fixed for the server's life: a wrong path is a start-up error, not a log line per fetch
        from allora_gitops.api.podidentity import JwksSettingError, jwks_ssl_context

        try:
            jwks_ssl_context(values["pod_jwks_ca_file"])
        except JwksSettingError as exc:
            raise UsageError(str(exc)) from None
    return values


def _logs_settings() -> dict:
    """$ALLORA_API_LOGS_RETENTION (a positive duration) and $ALLORA_API_LOGS_MAX_LINES (at least 1); UsageError otherwise."""
    from allora_gitops.db.retention import parse_duration

    retention = os.environ.get(LOGS_RETENTION_ENV, "").strip() or DEFAULT_LOGS_RETENTION
    parse_duration(retention, what=f"${LOGS_RETENTION_ENV}")
    max_lines = _int_env(LOGS_MAX_LINES_ENV, DEFAULT_LOGS_MAX_LINES)
    if max_lines < 1:
        raise UsageError(f"${LOGS_MAX_LINES_ENV} must be at least 1")
    return {"logs_retention": retention, "logs_max_lines": max_lines}


def _pod_identity_settings() -> dict:
    """$ALLORA_API_POD_JWKS and $ALLORA_API_POD_ISSUER go together (UsageError for one alone)."""
    jwks = os.environ.get(POD_JWKS_ENV, "").strip() or None
    issuer = os.environ.get(POD_ISSUER_ENV, "").strip() or None
    if (jwks is None) != (issuer is None):
        raise UsageError(f"${POD_JWKS_ENV} and ${POD_ISSUER_ENV} go together: set both to accept pods' results, or neither")
    return {
        "pod_jwks": jwks,
        "pod_issuer": issuer,
        "models_namespace": os.environ.get(MODELS_NAMESPACE_ENV, "").strip() or C.NAMESPACE,
    }
