"""The object store, on both backends: a real SeaweedFS (``weed mini``) and a real directory."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allora_gitops.constants import archive_object_key
from allora_gitops.errors import StorageError, UsageError
from allora_gitops.storage.objects import FileStore, S3Store, open_store
from tests.conftest import REPO_ROOT, cli_env

MB = 1024 * 1024


@pytest.fixture(scope="module")
def archive_60mb(tmp_path_factory):
    """A 60 MB incompressible "archive" and its sha256."""
    path = tmp_path_factory.mktemp("archive") / "big-model-1.0.0.tar.gz"
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(60):
            chunk = os.urandom(MB)
            digest.update(chunk)
            fh.write(chunk)
    return path, digest.hexdigest()


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'objects'}")
    return open_store(request.getfixturevalue("s3_store_url"))


def _count_requests(store) -> list[str]:
    """S3 operations this store's client makes from now on (botocore events; real traffic, nothing mocked)."""
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def _visible(store, key: str, sha256: str) -> bool:
    return store.exists(key, sha256)


def test_upload_60mb_then_second_upload_is_skipped_without_transfer(store, archive_60mb):
    path, sha = archive_60mb
    key = archive_object_key("big-model", "1.0.0", sha)
    assert not store.exists(key, sha)
    first = store.put_file(key, path, sha)
    assert first.uploaded and first.size == 60 * MB and first.sha256 == sha
    assert first.url == store.url_for(key) == f"{store.url}/{key}"
    assert store.exists(key, sha)
    if isinstance(store, S3Store):
        head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}")
        assert head["ContentLength"] == 60 * MB and head["Metadata"] == {"sha256": sha}
        calls = _count_requests(store)
        second = store.put_file(key, path, sha)
        assert calls == ["HeadObject"]  # one HEAD, no transfer
    else:
        target = store.root / key
        before = target.stat()
        second = store.put_file(key, path, sha)
        after = target.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert not second.uploaded and second.url == first.url


def test_download_is_verified(store, archive_60mb, tmp_path):
    path, sha = archive_60mb
    key = archive_object_key("big-model", "1.0.0", sha)
    store.put_file(key, path, sha)
    dest = tmp_path / "out" / "bundle.tar.gz"
    assert store.get_file(key, dest, sha) == dest
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bundle.tar.gz"]


def _corrupt(store, key: str, sha: str) -> None:
    if isinstance(store, S3Store):  # the bytes change behind our back; the metadata still claims the old sha256
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=b"not the archive" * 1000, Metadata={"sha256": sha})
    else:
        with open(store.root / key, "r+b") as fh:
            fh.seek(30 * MB)
            fh.write(b"\0" * 16)


def test_corrupted_object_is_detected_on_download(store, archive_60mb, tmp_path):
    path, sha = archive_60mb
    key = archive_object_key("big-model", "1.0.0", sha)
    store.put_file(key, path, sha)
    _corrupt(store, key, sha)
    dest = tmp_path / "out" / "bundle.tar.gz"
    with pytest.raises(StorageError) as err:
        store.get_file(key, dest, sha)
    message = str(err.value)
    assert message.startswith(f"object {store.url_for(key)} is corrupted: its sha256 is ")
    assert message.endswith(f", expected {sha}")
    assert list(dest.parent.iterdir()) == []  # no partial download left behind


def test_a_file_that_does_not_match_its_sha256_is_not_stored(store, archive_60mb):
    path, sha = archive_60mb
    wrong = "0" * 64
    key = archive_object_key("big-model", "1.0.0", wrong)
    with pytest.raises(StorageError) as err:
        store.put_file(key, path, wrong)
    assert str(err.value) == f"{path} does not match its sha256 (expected {wrong}, read {sha}); nothing was {'uploaded' if isinstance(store, S3Store) else 'stored'}"
    assert not store.exists(key, wrong)
    if isinstance(store, S3Store):
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    else:
        assert list((store.root / key).parent.iterdir()) == []


def test_small_objects_go_up_in_one_request(store, tmp_path):
    path = tmp_path / "tiny.tar.gz"
    path.write_bytes(b"tiny archive")
    sha = hashlib.sha256(b"tiny archive").hexdigest()
    key = archive_object_key("tiny", "0.1.0", sha)
    assert store.put_file(key, path, sha).uploaded
    assert store.exists(key, sha) and not store.exists(key, "f" * 64)
    store.get_file(key, tmp_path / "back", sha)
    assert (tmp_path / "back").read_bytes() == b"tiny archive"


def test_missing_object(store, tmp_path):
    key = archive_object_key("ghost", "1.0.0", "e" * 64)
    with pytest.raises(StorageError, match=rf"^no object {store.url_for(key)}$"):
        store.get_file(key, tmp_path / "x", "e" * 64)


# --- S3 faults --------------------------------------------------------------------------------------
def test_wrong_credentials_are_one_clear_line_without_the_secret(s3_store_url, archive_60mb, monkeypatch, s3_server):
    path, sha = archive_60mb
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
    store = open_store(s3_store_url)
    key = archive_object_key("big-model", "1.0.0", sha)
    with pytest.raises(StorageError) as err:
        store.put_file(key, path, sha)
    assert err.value.lines() == [
        f"error: cannot look up {store.url_for(key)}: access denied by {s3_server.endpoint} (403); "
        "check the AWS credentials and the bucket policy"
    ]
    assert "definitely-wrong-secret" not in str(err.value) and s3_server.access_key not in str(err.value)


def test_wrong_credentials_through_the_cli_style_entry_point(s3_store_url, s3_server, tmp_path):
    """A separate process, as the CLI would run it: one `error:` line on stderr, no traceback."""
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"x" * 100)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    script = (
        "import sys\n"
        "from allora_gitops.cli.app import eprint\n"
        "from allora_gitops.errors import AlloraGitopsError\n"
        "from allora_gitops.storage.objects import open_store\n"
        "try:\n"
        f"    open_store({s3_store_url!r}).put_file('bundles/a/1.0.0/{sha}.tar.gz', {str(archive)!r}, {sha!r})\n"
        "except AlloraGitopsError as exc:\n"
        "    [eprint(line) for line in exc.lines()]\n"
        "    sys.exit(exc.exit_code)\n"
    )
    env = cli_env(s3_server.env(AWS_SECRET_ACCESS_KEY="wrong-wrong-wrong"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: cannot look up {s3_store_url}/bundles/a/1.0.0/{sha}.tar.gz: access denied by {s3_server.endpoint} (403); "
        "check the AWS credentials and the bucket policy"
    ]


def test_missing_bucket(s3_env, s3_server, archive_60mb, tmp_path):
    path, sha = archive_60mb
    store = open_store("s3://no-such-bucket-here/archives")
    key = archive_object_key("big-model", "1.0.0", sha)
    with pytest.raises(StorageError) as err:
        store.put_file(key, path, sha)
    assert str(err.value) == f"cannot upload to {store.url_for(key)}: bucket no-such-bucket-here does not exist at {s3_server.endpoint}"
    with pytest.raises(StorageError) as err:
        store.get_file(key, tmp_path / "x", sha)
    assert str(err.value) == f"cannot open s3://no-such-bucket-here/archives: bucket no-such-bucket-here does not exist at {s3_server.endpoint}"
    assert "no-such-bucket-here" not in {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}


def test_unreachable_endpoint(s3_env, monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store = open_store("s3://bucket/prefix")
    with pytest.raises(StorageError) as err:
        store.exists("bundles/a/1.0.0/x.tar.gz", "a" * 64)
    assert str(err.value) == f"cannot look up s3://bucket/prefix/bundles/a/1.0.0/x.tar.gz: the S3 endpoint http://127.0.0.1:{port} is unreachable"


UPLOADER = """
import sys
from pathlib import Path
from allora_gitops.storage.objects import open_store
open_store(sys.argv[1]).put_file(sys.argv[2], Path(sys.argv[3]), sys.argv[4], progress=False)
print("finished")
"""


def test_interrupted_s3_upload_leaves_no_visible_object(s3_store_url, s3_server, archive_60mb):
    path, sha = archive_60mb
    store = open_store(s3_store_url)
    key = archive_object_key("big-model", "1.0.0", sha)
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, s3_store_url, key, str(path), sha],
                            env=cli_env(s3_server.env()), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads"):
            assert proc.poll() is None and time.monotonic() < deadline, "the upload finished before it could be interrupted"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert not store.exists(key, sha)
    assert store.client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0
    # a later run completes normally
    assert store.put_file(key, path, sha).uploaded and store.exists(key, sha)


def test_interrupted_file_write_leaves_no_visible_object(tmp_path):
    """The source is a FIFO we feed by hand, so the writer is killed mid-write, deterministically."""
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    root = tmp_path / "objects"
    sha = "d" * 64
    key = archive_object_key("m", "1.0.0", sha)
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, f"file://{root}", key, str(fifo), sha],
                            env=cli_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target_dir = root / "bundles" / "m" / "1.0.0"
    with open(fifo, "wb") as feed:
        feed.write(os.urandom(8 * MB))
        feed.flush()
        deadline = time.monotonic() + 30
        while not (target_dir.is_dir() and any(p.stat().st_size > 0 for p in target_dir.iterdir())):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (root / key).exists()
    assert [p.name.startswith(".") and p.name.endswith(".part") for p in target_dir.iterdir()] == [True]  # only a hidden temp


def test_file_write_failing_midway_leaves_nothing(tmp_path, archive_60mb):
    """The target runs out of room halfway (RLIMIT_FSIZE: EFBIG, as a full or read-only disk would fail a write)."""
    path, sha = archive_60mb
    root = tmp_path / "objects"
    key = archive_object_key("big-model", "1.0.0", sha)

    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * MB, 20 * MB))

    script = (
        "import sys\nfrom pathlib import Path\nfrom allora_gitops.errors import AlloraGitopsError\n"
        "from allora_gitops.storage.objects import open_store\n"
        "try:\n    open_store(sys.argv[1]).put_file(sys.argv[2], Path(sys.argv[3]), sys.argv[4])\n"
        "except AlloraGitopsError as exc:\n    print(*exc.lines(), sep='\\n', file=sys.stderr); sys.exit(exc.exit_code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, f"file://{root}", key, str(path), sha], capture_output=True,
                          text=True, env=cli_env(), cwd=REPO_ROOT, timeout=60, preexec_fn=limit)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: cannot write {(root / key).as_uri()}: File too large"]
    assert list((root / key).parent.iterdir()) == []


def test_read_only_target_is_a_clear_error():
    """A target directory the writer may not write to. Root ignores permissions, so as root the writer
    runs as ``nobody`` (the system Python; FileStore needs only the standard library)."""
    import pwd
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="allora-ro-"))  # outside root's private pytest dir, so nobody can reach it
    try:
        base.chmod(0o755)
        source = base / "a.tar.gz"
        source.write_bytes(b"archive bytes" * 1000)
        source.chmod(0o644)
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        root = base / "objects"
        (root / "bundles").mkdir(parents=True)
        (root / "bundles").chmod(0o555)
        key = archive_object_key("m", "1.0.0", sha)
        script = (
            "import sys\nfrom pathlib import Path\nfrom allora_gitops.errors import AlloraGitopsError\n"
            "from allora_gitops.storage.objects import open_store\n"
            "try:\n    open_store(sys.argv[1]).put_file(sys.argv[2], Path(sys.argv[3]), sys.argv[4])\n"
            "except AlloraGitopsError as exc:\n    print(*exc.lines(), sep='\\n', file=sys.stderr); sys.exit(exc.exit_code)\n"
        )
        python, drop = sys.executable, None
        if os.geteuid() == 0:
            python = "/usr/bin/python3"  # Debian's; the venv's interpreter may live under /root
            nobody = pwd.getpwnam("nobody")

            def drop():
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)

        proc = subprocess.run([python, "-c", script, f"file://{root}", key, str(source), sha], capture_output=True,
                              text=True, env=cli_env({"HOME": str(base)}), cwd=base, timeout=60, preexec_fn=drop)
        assert proc.stderr.splitlines() == [f"error: cannot write {(root / key).as_uri()}: Permission denied"]
        assert proc.returncode == 1
        assert list((root / "bundles").iterdir()) == []
    finally:
        (base / "objects" / "bundles").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# --- selection and output ---------------------------------------------------------------------------
def test_default_store_lives_under_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ALLORA_STORE_URL", raising=False)
    store = open_store(None)
    assert isinstance(store, FileStore) and store.root == (tmp_path / "home" / "objects").resolve()
    monkeypatch.setenv("ALLORA_STORE_URL", "s3://team-bucket/allora")
    s3 = open_store(None)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix, s3.url) == ("team-bucket", "allora", "s3://team-bucket/allora")
    assert s3.url_for("bundles/a/1.0.0/x.tar.gz") == "s3://team-bucket/allora/bundles/a/1.0.0/x.tar.gz"


@pytest.mark.parametrize("url", ["ftp://x/y", "s3://", "file://", "/plain/path"])
def test_bad_store_urls_are_usage_errors(url):
    with pytest.raises(UsageError):
        open_store(url)


def test_no_progress_bar_off_a_terminal(capfd, tmp_path, archive_60mb):
    path, sha = archive_60mb
    store = FileStore(tmp_path / "o")
    store.put_file(archive_object_key("m", "1.0.0", sha), path, sha)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_progress_bar_on_a_terminal(tmp_path, archive_60mb):
    """Under a pseudo-terminal the bar is drawn (and cleared: transient)."""
    import pty

    path, sha = archive_60mb
    script = (
        "import sys\nfrom pathlib import Path\nfrom allora_gitops.storage.objects import FileStore\n"
        "FileStore(Path(sys.argv[1])).put_file(sys.argv[2], Path(sys.argv[3]), sys.argv[4])\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout/stderr are the terminal
        os.chdir(REPO_ROOT)
        env = cli_env({"TERM": "xterm"})
        env.pop("NO_COLOR", None)
        os.execve(sys.executable, [sys.executable, "-c", script, str(tmp_path / "o"), archive_object_key("m", "1.0.0", sha), str(path), sha], env)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"store big-model-1.0.0.tar.gz" in output


def test_s3_objects_carry_a_server_checked_checksum(s3_store_url, tmp_path):
    """Small archives: one PUT with the file's SHA-256 (the server recomputes it); large ones: parallel parts
    with CRC32s, whose composite the server reports and put_file compared after the upload."""
    import base64

    store = open_store(s3_store_url)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(os.urandom(40 * MB))
    heads = {}
    for path in (small, large):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        key = archive_object_key(path.name, "1.0.0", sha)
        store.put_file(key, path, sha)
        heads[path.name] = (sha, store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", ChecksumMode="ENABLED"))
    sha, head = heads["small"]
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(sha)).decode()
    _, head = heads["large"]
    assert head["ChecksumCRC32"].endswith("-5") and head["ETag"].endswith('-5"')  # 40 MB in 8 MB parts


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "s3://AKIAEXAMPLE:wJalrSECRETKEY@bucket/prefix",
            "store URL 's3://AKIAEXAMPLE:***@bucket/prefix' holds credentials; "
            "give them as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
        ),
        (
            "https://AKIAEXAMPLE:wJalrSECRETKEY@s3.example.com/bucket",
            "store URL 'https://AKIAEXAMPLE:***@s3.example.com/bucket': expected file://DIR or s3://bucket/prefix",
        ),
    ],
)
def test_a_store_url_with_credentials_is_refused_without_echoing_them(url, message):
    from allora_gitops.errors import UsageError

    with pytest.raises(UsageError) as err:
        open_store(url)
    assert str(err.value) == message
    assert "wJalrSECRETKEY" not in str(err.value)
