"""S3-compatible stores that refuse checksum trailers: a real SeaweedFS behind a loopback TLS front that answers 501.

botocore sends CRC32 trailers (``aws-chunked``) only over HTTPS, so the front speaks TLS
(a throwaway self-signed certificate, trusted through ``AWS_CA_BUNDLE``) and forwards every
other request, unchanged (Host included, so the signatures hold), to the real server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from allora_gitops.errors import StorageError, UsageError
from allora_gitops.storage.objects import MULTIPART_THRESHOLD, open_store

NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented</Message></Error>"
)
HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive"}


class TrailerRefusingFront:
    """HTTPS on 127.0.0.1:<free port> in front of ``upstream``; 501 to any request that announces a trailer."""

    def __init__(self, upstream: str, directory: Path):
        self.refused = 0
        self.forwarded = 0
        self.cert = directory / "front.pem"
        key = directory / "front.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(self.cert),
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        target = urlparse(upstream)
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                if "x-amz-trailer" in self.headers or "aws-chunked" in self.headers.get("Content-Encoding", ""):
                    front.refused += 1
                    self._drain()  # read what was sent, so the client sees the answer rather than a reset
                    self.send_response(501)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(NOT_IMPLEMENTED)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(NOT_IMPLEMENTED)
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                upstream_conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        upstream_conn.putheader(name, value)
                upstream_conn.endheaders(body if body else None)
                response = upstream_conn.getresponse()
                data = response.read()
                front.forwarded += 1
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", response.getheader("Content-Length") or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream_conn.close()

            def _drain(self) -> None:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        self.rfile.read(size + 2)
                        if size == 0:
                            break
                else:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def front(s3_server, s3_env, tmp_path, monkeypatch):
    proxy = TrailerRefusingFront(s3_server.endpoint, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(proxy.cert))
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION", raising=False)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "bundle.tar.gz"
    path.write_bytes(os.urandom(MULTIPART_THRESHOLD + 3 * 1024 * 1024))  # three parts
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _roundtrip(store, big_file, tmp_path) -> Path:
    path, sha = big_file
    result = store.put_file("bundles/x/1.0.0/big.tar.gz", path, sha, progress=False)
    assert result.uploaded
    back = store.get_file("bundles/x/1.0.0/big.tar.gz", tmp_path / "back.tar.gz", sha, progress=False)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == sha
    return back


def test_multipart_upload_through_a_front_refusing_trailers_works_with_when_required(front, s3_bucket, big_file, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    _roundtrip(open_store(f"s3://{s3_bucket}/archives"), big_file, tmp_path)
    assert front.refused == 0 and front.forwarded > 5


def test_the_store_setting_does_the_same_without_the_variable(front, s3_bucket, big_file, tmp_path):
    _roundtrip(open_store(f"s3://{s3_bucket}/archives?request_checksum_calculation=when_required"), big_file, tmp_path)
    assert front.refused == 0


def test_by_default_part_uploads_send_trailers_and_such_a_store_refuses_them(front, s3_bucket, big_file, tmp_path):
    """The control: the front really refuses what boto3 >= 1.36 sends by default."""
    path, sha = big_file
    with pytest.raises(StorageError, match="NotImplemented"):
        open_store(f"s3://{s3_bucket}/archives").put_file("bundles/x/1.0.0/big.tar.gz", path, sha, progress=False)
    assert front.refused >= 1


def test_a_bad_store_setting_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match=r"request_checksum_calculation must be when_supported or when_required, got 'never'"):
        open_store("s3://bucket/prefix?request_checksum_calculation=never")
    with pytest.raises(UsageError, match=r"unknown setting 'checksum'"):
        open_store("s3://bucket/prefix?checksum=off")
