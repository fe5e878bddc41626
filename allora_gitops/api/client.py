"""The model developer's side of the platform API: log in, upload a bundle, ask for a deployment.

Light on purpose (part of the light install): httpx only, imported by the commands that talk to a
platform. The token comes from ``$ALLORA_PLATFORM_TOKEN`` or from the credentials file written by
``allora-bundle login`` (``$XDG_CONFIG_HOME/allora-gitops/platform.json``, mode 0600) — never from a
flag, so it stays out of shell history and process lists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from allora_gitops.atomic import write_atomic
from allora_gitops.errors import AlloraGitopsError, Problem

TOKEN_ENV = "ALLORA_PLATFORM_TOKEN"
PLATFORM_ENV = "ALLORA_PLATFORM_URL"
TIMEOUT_SECONDS = 600.0  # a deploy runs the publish pipeline (git push) before answering


class PlatformError(AlloraGitopsError):
    """The platform refused a request (its problem detail), or could not be reached."""


@dataclass(frozen=True)
class Credentials:
    platform: str
    token: str


UPLOAD_BUSY_WAIT_SECONDS = 600  # a 429 (the user's concurrent uploads at the server's cap) is retried this long


def credentials_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "allora-gitops" / "platform.json"


def save_credentials(platform: str, token: str) -> Path:
    """Write the credentials file with mode 0600 (created so, never widened afterwards), atomically."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps({"platform": platform, "token": token}).encode("utf-8"), mode=0o600)
    return path


def cleartext_warning(platform: str) -> Optional[str]:
    """A one-line warning when ``platform`` is a plain ``http://`` URL to a host other than this machine, else None.

    The API token is a bearer credential (RFC 6750 §5.3: always over TLS): over plain HTTP anyone on the
    path can read it and act as you. Loopback (``localhost``, 127.0.0.0/8, ``::1``) never leaves the machine.
    """
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(platform)
    if parts.scheme.lower() != "http":
        return None
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    if loopback:
        return None
    return f"warning: {platform} is plain http: your API token crosses the network unencrypted; use https://"


def load_credentials(platform: Optional[str] = None) -> Credentials:
    """The platform URL (flag, ``$ALLORA_PLATFORM_URL``, the login file) and the token (``$ALLORA_PLATFORM_TOKEN``, the login file).

    Raises PlatformError saying what to run when either is missing.
    """
    saved: dict = {}
    path = credentials_file()
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PlatformError(f"{path} is unreadable; run `allora-bundle login --platform URL` again") from None
    url = platform or os.environ.get(PLATFORM_ENV, "").strip() or saved.get("platform")
    if not url:
        raise PlatformError("which platform? pass --platform URL, set $ALLORA_PLATFORM_URL, or run `allora-bundle login --platform URL`")
    token = os.environ.get(TOKEN_ENV, "").strip() or (saved.get("token") if saved.get("platform") == url.rstrip("/") else None)
    if not token:
        raise PlatformError(f"no API token for {url}: run `allora-bundle login --platform {url}` or set ${TOKEN_ENV}")
    return Credentials(url.rstrip("/"), token)


def _problem_error(response) -> PlatformError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    problems = []
    for p in (body.get("problems") or []) if isinstance(body, dict) else []:
        if isinstance(p, dict):
            problems.append(Problem(p.get("message", ""), p.get("file") or p.get("field"), p.get("line"), p.get("col")))
    return PlatformError(f"the platform refused the request ({response.status_code}): {detail or response.reason_phrase}", problems)


def unreachable(platform: str, exc: Exception, doing: str = "cannot reach the platform at") -> PlatformError:
    """``cannot reach the platform at URL: why`` for an httpx transport error: which URL did not answer (the one
    requested, credentials never part of it) and why, in words (connection refused, a name that does not resolve,
    a certificate that does not verify, no answer in time), not only the exception's class."""
    import httpx

    try:
        url = str(exc.request.url.copy_with(query=None)) if isinstance(exc, httpx.RequestError) else platform  # type: ignore[attr-defined]
    except RuntimeError:  # an error raised before the request existed
        url = platform
    prefix = f"{doing} {url}" if doing != "cannot reach the platform at" else f"cannot reach the platform at {url}"
    if doing == "the upload to":
        prefix += " failed"
    return PlatformError(f"{prefix}: {_why(exc)}")


def _why(exc: Exception) -> str:
    import socket
    import ssl

    import httpx

    if isinstance(exc, httpx.TimeoutException):
        kind = {httpx.ConnectTimeout: "connecting", httpx.ReadTimeout: "waiting for its answer", httpx.WriteTimeout: "sending"}
        return f"no answer in time ({next((v for k, v in kind.items() if isinstance(exc, k)), 'timed out')}); is the server up?"
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:  # the OSError under httpcore's and httpx's wrappers
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its TLS certificate does not verify ({cause.verify_message}); set SSL_CERT_FILE to your CA bundle if it is a private CA"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve (check the URL)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens there (is the server running, and is the port right?)"
        if isinstance(cause, OSError) and cause.strerror:
            return f"{cause.strerror.lower()} ({type(cause).__name__})"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return "the host name does not resolve (check the URL)"
    if "Connection refused" in text:
        return "connection refused: nothing listens there (is the server running, and is the port right?)"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class PlatformClient:
    """A session with one platform. Every method raises PlatformError with the server's problem detail."""

    def __init__(self, credentials: Credentials):
        import httpx

        self.credentials = credentials
        self._http = httpx.Client(
            base_url=credentials.platform,
            headers={"Authorization": f"Bearer {credentials.token}", "User-Agent": "allora-bundle"},
            timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "PlatformClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, url: str, **kw):
        import httpx

        try:
            response = self._http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise unreachable(self.credentials.platform, exc) from None
        return self._answer(response)

    def _answer(self, response) -> dict | list:
        """The JSON body of a successful answer; PlatformError for a refusal, or for an answer that is not
        the platform's (an HTML page from a proxy or a wrong URL)."""
        if response.status_code >= 400:
            raise _problem_error(response)
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise PlatformError(
                f"{self.credentials.platform} answered {response.request.url.path} with {kind}, not the platform's JSON: "
                "is this the allora-gitops platform's URL?"
            ) from None

    def whoami_check(self) -> list[dict]:
        """A cheap authenticated call: the caller's bundles."""
        return self._request("GET", "/api/bundles")

    def upload(self, archive: Path, progress: Optional[Callable[[int], None]] = None) -> dict:
        """POST the archive as the multipart field ``bundle``; httpx streams it from disk in chunks."""
        import httpx

        import time

        archive = Path(archive)
        deadline = time.monotonic() + UPLOAD_BUSY_WAIT_SECONDS
        while True:
            try:
                with open(archive, "rb") as fh:
                    files = {"bundle": (archive.name, _Counting(fh, progress), "application/gzip")}
                    response = self._http.post("/api/bundles", files=files)
            except httpx.HTTPError as exc:
                raise unreachable(self.credentials.platform, exc, doing="the upload to") from None
            # 429: as many of this user's uploads as the server takes at once are in progress; wait as told
            if response.status_code != 429 or time.monotonic() > deadline:
                return self._answer(response)
            retry_after = response.headers.get("retry-after", "")
            time.sleep(min(float(retry_after) if retry_after.isdigit() else 5.0, 30.0))

    def deploy(self, request: dict) -> dict:
        return self._request("POST", "/api/deployments", json=request)

    def deployment(self, deployment_id: str) -> dict:
        return self._request("GET", f"/api/deployments/{deployment_id}")

    def logs(self, name: str, *, network: Optional[str] = None, since: Optional[str] = None, after: Optional[str] = None,
             level: Optional[str] = None, limit: int = 200) -> dict:  # fmt: skip
        """``GET /api/v1/logs``: ``{"lines": [{ts, level, event, pod, message, cursor}, ...], "cursor": …}``, oldest first."""
        params = {k: v for k, v in (("name", name), ("network", network), ("since", since), ("after", after), ("level", level)) if v}
        return self._request("GET", "/api/v1/logs", params={**params, "limit": limit}, timeout=30.0)


class _Counting:
    """A file that reports how many bytes were read from it (the upload's progress bar)."""

    def __init__(self, fh, progress: Optional[Callable[[int], None]]):
        self._fh, self._progress = fh, progress

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(n)
        if chunk and self._progress:
            self._progress(len(chunk))
        return chunk

    def fileno(self) -> int:  # lets httpx size the body (Content-Length) without reading it
        return self._fh.fileno()

    def seek(self, *args):
        return self._fh.seek(*args)

    def tell(self) -> int:
        return self._fh.tell()
