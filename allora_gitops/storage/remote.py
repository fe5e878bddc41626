"""model.yaml ``artifacts.remote``: files too large for the archive, fetched by digest for an image build or a local run.

One fetcher for both: ``https://`` (httpx, trust from ``SSL_CERT_FILE`` when set) and ``s3://`` (boto3 with the
standard AWS environment, ``AWS_ENDPOINT_URL`` for S3-compatible stores). Credentials come from that environment
only, never from model.yaml. Every download is checked against its sha256 before it is used, is refused past
``FetchPolicy.max_bytes``, and lands in a cache keyed by the digest (``<cache>/sha256/<hex>``), so a second
build or run of the same file fetches nothing. The host a URL names is resolved once, every address is checked
(loopback, private, link-local, reserved and multicast are refused unless the repository settings allow them),
and the connection goes to the checked address, so a DNS answer cannot change between the check and the fetch.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional
from urllib.parse import urlsplit

from allora_gitops import constants as C
from allora_gitops.errors import StorageError
from allora_gitops.storage.objects import file_sha256

if TYPE_CHECKING:
    from allora_gitops.bundle.manifest import RemoteArtifact

_CHUNK = 1 << 20
MAX_REDIRECTS = 5


class RemoteArtifactError(StorageError):
    """A remote artifact could not be fetched, or is not the file model.yaml names."""


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may do: the largest file (bytes), whether non-public addresses are allowed, and the
    switch that allows them (named in the refusal: the repository's setting for builds, a flag for ``run``)."""

    max_bytes: int = C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES
    allow_private: bool = False
    allow_private_hint: str = "a GitOps repository allows it with `allora-gitops repo config remote_artifacts.allow_private_addresses true`"


def artifact_cache_dir() -> Path:
    """``<state directory>/artifacts`` (beside the cached run environments): a cache, safe to delete."""
    from allora_gitops.state import state_home

    return state_home() / "artifacts"


def cached_path(cache: Path, sha256: str) -> Path:
    return cache / "sha256" / sha256


def check_address(host: str, port: int, policy: FetchPolicy, what: str) -> str:
    """Resolve ``host`` and return the address to connect to; RemoteArtifactError when any is not public (unless allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RemoteArtifactError(f"{what}: cannot resolve {host} ({getattr(exc, 'strerror', None) or exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise RemoteArtifactError(f"{what}: {host} has no address")
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        if not policy.allow_private and not address.is_global:
            kind = (
                "loopback" if address.is_loopback else "link-local" if address.is_link_local
                else "private" if address.is_private else "non-public"
            )  # fmt: skip
            raise RemoteArtifactError(
                f"{what}: {host} resolves to the {kind} address {address}; fetching from it is refused "
                f"({policy.allow_private_hint})"
            )
    return addresses[0]


def _ssl_context():
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE", "").strip() or None
    return ssl.create_default_context(cafile=cafile)


def _download_https(url: str, out, policy: FetchPolicy, what: str) -> None:
    """Stream ``url`` into ``out`` (a binary file), to the checked address, following at most MAX_REDIRECTS https redirects."""
    import httpx

    context = _ssl_context()
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
            raise RemoteArtifactError(f"{what}: redirected to a URL that is not plain https://; refused")
        port = parts.port or 443
        address = check_address(parts.hostname, port, policy, what)
        host = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{host}:{port}").geturl()
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"}
        try:
            # trust_env=False: no proxy from the environment, so the connection goes to the address just checked
            with httpx.Client(verify=context, timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=False, trust_env=False) as client:
                with client.stream("GET", target, headers=headers, extensions={"sni_hostname": parts.hostname}) as response:
                    if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                        url = str(httpx.URL(url).join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise RemoteArtifactError(f"{what}: the server answered HTTP {response.status_code}")
                    length = response.headers.get("content-length")
                    if length and length.isdigit() and int(length) > policy.max_bytes:
                        raise RemoteArtifactError(f"{what}: {int(length)} bytes is over the limit of {policy.max_bytes} (remote_artifacts.max_bytes)")
                    written = 0
                    for chunk in response.iter_bytes(_CHUNK):
                        written += len(chunk)
                        if written > policy.max_bytes:
                            raise RemoteArtifactError(f"{what}: more than {policy.max_bytes} bytes (remote_artifacts.max_bytes); stopped")
                        out.write(chunk)
                    return
        except httpx.HTTPError as exc:
            raise RemoteArtifactError(f"{what}: {type(exc).__name__}: {exc}") from None
    raise RemoteArtifactError(f"{what}: more than {MAX_REDIRECTS} redirects")


def _download_s3(url: str, out, policy: FetchPolicy, what: str) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise RemoteArtifactError(f"{what}: an s3:// URL names a bucket and a key")
    try:
        client = boto3.session.Session().client("s3")
        endpoint = urlsplit(client.meta.endpoint_url)
        check_address(endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80), policy, what)
        head = client.head_object(Bucket=bucket, Key=key)
        if int(head.get("ContentLength") or 0) > policy.max_bytes:
            raise RemoteArtifactError(f"{what}: {head['ContentLength']} bytes is over the limit of {policy.max_bytes} (remote_artifacts.max_bytes)")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        written = 0
        for chunk in body.iter_chunks(_CHUNK):
            written += len(chunk)
            if written > policy.max_bytes:
                raise RemoteArtifactError(f"{what}: more than {policy.max_bytes} bytes (remote_artifacts.max_bytes); stopped")
            out.write(chunk)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise RemoteArtifactError(f"{what}: S3 answered {code}") from None
    except BotoCoreError as exc:
        raise RemoteArtifactError(f"{what}: {type(exc).__name__}") from None


def fetch_artifact(artifact: "RemoteArtifact", policy: FetchPolicy, cache: Optional[Path] = None, say: Callable[[str], None] = lambda _m: None) -> Path:
    """The file ``artifact`` names, from the cache or downloaded into it; checked against its sha256 either way.

    Raises RemoteArtifactError naming ``artifact.path`` (and, for a mismatch, both digests); nothing enters the
    cache that does not match.
    """
    from allora_gitops.redact import display_url

    cache = cache or artifact_cache_dir()
    target = cached_path(cache, artifact.sha256)
    what = f"artifacts.remote {artifact.path} ({display_url(artifact.url).split('?', 1)[0]})"
    if target.is_file():
        actual = file_sha256(target)
        if actual == artifact.sha256:
            return target
        target.unlink()  # a damaged cache entry: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"fetching {artifact.path} from {display_url(artifact.url).split('?', 1)[0]}")
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if artifact.url.startswith("https://"):
                _download_https(artifact.url, out, policy, what)
            elif artifact.url.startswith("s3://"):
                _download_s3(artifact.url, out, policy, what)
            else:  # model.yaml refuses other schemes; kept for callers that build a RemoteArtifact by hand
                raise RemoteArtifactError(f"{what}: only https:// and s3:// URLs are fetched")
        actual = file_sha256(Path(tmp))
        if actual != artifact.sha256:
            raise RemoteArtifactError(
                f"artifacts.remote {artifact.path}: the download has sha256 {actual}, but model.yaml says {artifact.sha256}; refused"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        tmp = ""
    except OSError as exc:
        raise RemoteArtifactError(f"{what}: cannot write the cache {cache}: {exc.strerror}") from None
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return target


def fetch_artifacts(artifacts: Iterable["RemoteArtifact"], policy: FetchPolicy, cache: Optional[Path] = None, say: Callable[[str], None] = lambda _m: None) -> dict[str, Path]:
    """``{path in the bundle: cached file}`` for every artifact; the first failure raises."""
    return {a.path: fetch_artifact(a, policy, cache, say) for a in artifacts}


def place_artifacts(fetched: dict[str, Path], root: Path) -> None:
    """Put fetched files at their bundle paths under ``root`` (a hard link when possible: no copy of large weights)."""
    import shutil

    for rel, source in fetched.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
